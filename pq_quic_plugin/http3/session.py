"""HTTP/3 sessions: one QUIC connection, many requests, one request path.

Every request goes through :meth:`HTTP3Session.open_stream` (send the head, start the upload,
wait for the response head). :meth:`~HTTP3Session.stream` wraps it in a context manager and
:meth:`~HTTP3Session.request` reads the body to the end, so the two styles share every rule:
1xx heads skipped, flow control, upload backpressure, cancellation, and a reset stream or a
closed connection failing the request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from ..aioquic_binding import configure
from ..groups.base import Group
from ..policy import Policy
from .errors import ReadTimeout, RemoteProtocolError, TimeoutException
from .protocol import H3ClientProtocol
from .response import Response, ResponseBody, StreamedResponse
from .upload import send_body

__all__ = ["HTTP3Session", "client_configuration", "fetch", "open_session"]

Headers = Sequence[tuple[bytes, bytes]]
#: A request body: all at once, produced chunk by chunk (sent with backpressure), or none.
Body = bytes | AsyncIterable[bytes] | None


def client_configuration(
    policy: Policy | str = Policy.PREFER,
    groups: Sequence[str] | None = None,
    cafile: str | None = None,
    server_name: str | None = None,
    verify: bool = True,
) -> QuicConfiguration:
    """A client QUIC configuration for HTTP/3 with the post-quantum ``policy`` applied."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    if cafile:
        config.load_verify_locations(cafile)
    if not verify:
        config.verify_mode = ssl.CERT_NONE
    if Policy.parse(policy) is not Policy.OFF:
        configure(config, policy, groups=groups)
    return config


class HTTP3Session:
    """One QUIC connection; several requests (also concurrent) can share it."""

    def __init__(self, protocol: H3ClientProtocol, authority: str) -> None:
        self._protocol = protocol
        self.authority = authority

    @property
    def group(self) -> Group | None:
        """The key-exchange group the connection negotiated."""
        return self._protocol.group

    @property
    def closed(self) -> bool:
        return self._protocol.terminated is not None

    def _head(self, method: str, path: str, headers: Headers) -> list[tuple[bytes, bytes]]:
        authority = self.authority.encode()
        rest = []
        for k, v in headers:  # HTTP/3 carries the host in :authority
            if k.lower() == b"host":
                authority = v
            else:
                rest.append((k, v))
        return [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority),
            (b":path", path.encode()),
            *rest,
        ]

    async def open_stream(
        self,
        method: str,
        path: str,
        headers: Headers = (),
        body: Body = None,
        *,
        timeout: float = 60.0,
    ) -> StreamedResponse:
        """Send a request and return once the response head is in; the body streams.

        The caller must read the body to the end or ``aclose()`` it (:meth:`stream` does that
        for you). A ``host`` header becomes ``:authority``. An iterable ``body`` is sent by
        its own task, concurrently with the response, and paced by the server's
        acknowledgements (:mod:`.upload`); ``bytes`` are sent at once. ``timeout`` bounds the
        wait for the response head once the request body has been sent (a long upload does
        not count) and any stall of the upload; it raises :class:`ReadTimeout` or
        :class:`WriteTimeout`. On any failure the stream is cancelled. If ``body`` raises, that
        exception is raised here or from the response body.
        """
        protocol = self._protocol
        if isinstance(body, (bytes, bytearray, memoryview)):
            whole, chunks = bytes(body), None
        else:
            whole, chunks = b"", body
        stream = protocol.open_request(
            self._head(method, path, headers), end_stream=not whole and chunks is None
        )
        try:
            if whole:
                protocol.send_data(stream.stream_id, whole, end_stream=True)
            elif chunks is not None:
                upload = asyncio.ensure_future(send_body(protocol, stream, chunks, timeout))
                stream.upload = upload
                # the clock starts when the body is sent
                await asyncio.wait((stream.head, upload), return_when=asyncio.FIRST_COMPLETED)
            try:
                head = await asyncio.wait_for(asyncio.shield(stream.head), timeout)
            except TimeoutException:
                raise
            except asyncio.TimeoutError:
                raise ReadTimeout(f"no response head within {timeout:g}s") from None
            status = _status(head)
        except BaseException:
            protocol.release(stream)
            raise
        return StreamedResponse(
            status,
            [(k, v) for k, v in head if not k.startswith(b":")],
            ResponseBody(protocol, stream),
            self.group,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        headers: Headers = (),
        body: Body = None,
        *,
        timeout: float = 60.0,
    ) -> AsyncIterator[StreamedResponse]:
        """``async with session.stream("GET", "/big") as response: async for chunk in
        response.body: ...``; leaving the block early cancels the request."""
        response = await self.open_stream(method, path, headers, body, timeout=timeout)
        try:
            yield response
        finally:
            await response.aclose()

    async def stream_request(
        self,
        method: str,
        path: str,
        headers: Headers = (),
        body: Body = None,
        timeout: float = 60.0,
    ) -> tuple[int, list[tuple[bytes, bytes]], ResponseBody]:
        """:meth:`open_stream` as a tuple ``(status, headers, body)``, for callers that hand
        the body on; the same rules, and the same duty to read or ``aclose()`` the body."""
        response = await self.open_stream(method, path, headers, body, timeout=timeout)
        return response.status, response.headers, response.body

    async def request(
        self,
        method: str,
        path: str,
        headers: Headers = (),
        body: Body = None,
        timeout: float = 30.0,
    ) -> Response:
        """One request, its whole response read into memory.

        ``timeout`` bounds the whole exchange (:class:`ReadTimeout`); a reset stream or a
        closed connection fails it at once, as for :meth:`stream`.
        """

        async def whole() -> Response:
            async with self.stream(method, path, headers, body, timeout=timeout) as response:
                content = await response.aread()
            return Response(response.status, response.headers, content, response.group)

        try:
            return await asyncio.wait_for(whole(), timeout)
        except TimeoutException:
            raise
        except asyncio.TimeoutError:
            raise ReadTimeout(f"no complete response within {timeout:g}s") from None

    def cancel(self, stream_id: int) -> None:
        """Abort a request in both directions."""
        self._protocol.cancel(stream_id)


def _status(head: Sequence[tuple[bytes, bytes]]) -> int:
    value = dict(head).get(b":status", b"")
    if len(value) != 3 or not value.isdigit():
        raise RemoteProtocolError(f"the response head has no valid :status ({value!r})")
    return int(value)


class open_session:  # noqa: N801 - used as ``async with open_session(...)``
    """``async with open_session(url, configuration) as session: ...``

    Entering connects and completes the handshake (:class:`~.errors.HandshakeError` when it
    is refused, for instance by the post-quantum policy); leaving closes the connection.
    """

    def __init__(self, url: str, configuration: QuicConfiguration) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ValueError(f"HTTP/3 needs an https:// URL, got {url!r}")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 443
        self._authority = parts.netloc
        if configuration.server_name is None:
            configuration.server_name = self._host
        self._configuration = configuration
        self._cm: Any = None

    async def __aenter__(self) -> HTTP3Session:
        self._cm = connect(
            self._host,
            self._port,
            configuration=self._configuration,
            create_protocol=H3ClientProtocol,
        )
        protocol = await self._cm.__aenter__()
        return HTTP3Session(protocol, self._authority)

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)


async def fetch(
    url: str,
    policy: Policy | str = Policy.PREFER,
    groups: Sequence[str] | None = None,
    cafile: str | None = None,
    method: str = "GET",
    headers: Headers = (),
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Response:
    """One request on a new connection; returns the response and the negotiated group."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    config = client_configuration(policy, groups, cafile, server_name=parts.hostname)
    async with open_session(url, config) as session:
        return await session.request(method, path, headers, body, timeout)
