"""HTTP/3 sessions: one QUIC connection, many requests, one request path.

The request methods of :class:`HTTP3Session` differ only in what they hand back, so they take
one set of parameters (:class:`_Request`, written once) and share one path:
:meth:`~HTTP3Session.open_stream` sends the head, starts the upload and waits for the response
head; :meth:`~HTTP3Session.stream` wraps that in a context manager; :meth:`~HTTP3Session.request`
is :meth:`~HTTP3Session.stream` plus reading the body to the end. So every style shares every
rule: 1xx heads skipped, flow control, upload backpressure, cancellation, and a reset stream or a
closed connection failing the request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

from aioquic.asyncio import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from ..aioquic_binding import configure
from ..aioquic_binding.facade import can_open_request_stream, quic_of
from ..groups.base import Group
from ..policy import Policy
from .errors import ReadTimeout, RemoteProtocolError, TimeoutException
from .protocol import H3ClientProtocol
from .response import Response, ResponseBody, StreamedResponse
from .upload import send_body

__all__ = [
    "HEAD_TIMEOUT",
    "REQUEST_TIMEOUT",
    "HTTP3Session",
    "client_configuration",
    "fetch",
    "open_session",
]

Headers = Sequence[tuple[bytes, bytes]]
#: A request body: all at once, produced chunk by chunk (sent with backpressure), or none.
Body = bytes | AsyncIterable[bytes] | None

#: The default ``timeout`` of the streaming methods: the wait for the response head.
HEAD_TIMEOUT = 60.0
#: The default ``timeout`` of :meth:`HTTP3Session.request`: the whole exchange.
REQUEST_TIMEOUT = 30.0

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Request:
    """The parameters every request method takes, written once so the methods cannot drift.

    ``timeout`` None stands for the method's own default (:data:`HEAD_TIMEOUT` or
    :data:`REQUEST_TIMEOUT`).
    """

    method: str
    path: str
    headers: Headers = ()
    body: Body = None
    timeout: float | None = None

    def timeout_or(self, default: float) -> float:
        return default if self.timeout is None else self.timeout


def _called_with(
    spec: Callable[_P, _T],
) -> Callable[[Callable[[HTTP3Session, _T], _R]], Callable[Concatenate[HTTP3Session, _P], _R]]:
    """Let a method be called with ``spec``'s parameters (type-checked against them) and
    receive them as one ``spec`` object, so that methods sharing parameters declare them once."""

    def decorate(
        method: Callable[[HTTP3Session, _T], _R],
    ) -> Callable[Concatenate[HTTP3Session, _P], _R]:
        @functools.wraps(method)
        def call(self: HTTP3Session, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            return method(self, spec(*args, **kwargs))

        return call

    return decorate


async def _within(awaitable: Awaitable[_T], timeout: float, what: str) -> _T:
    """``awaitable``'s result, or :class:`ReadTimeout` when ``what`` takes over ``timeout``;
    our own timeouts from inside (a stalled upload's :class:`WriteTimeout`) pass unchanged."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutException:
        raise
    except asyncio.TimeoutError:
        raise ReadTimeout(f"no {what} within {timeout:g}s") from None


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
    """One QUIC connection; several requests (also concurrent) can share it.

    Every request method takes ``(method, path, headers=(), body=None, timeout=None)``
    (:class:`_Request`): a ``host`` header becomes ``:authority``; an iterable ``body`` is sent
    by its own task, concurrently with the response, and paced by the server's
    acknowledgements (:mod:`.upload`), ``bytes`` are sent at once; ``timeout`` None means the
    method's default.
    """

    def __init__(self, protocol: H3ClientProtocol, authority: str) -> None:
        self._protocol = protocol
        self.authority = authority

    @property
    def group(self) -> Group | None:
        """The key-exchange group the connection negotiated."""
        return self._protocol.group

    @property
    def protocol(self) -> H3ClientProtocol:
        """The QUIC connection's protocol, for what ``pq_quic_plugin``'s fact functions read
        (``negotiated_signature_scheme``, ``post_quantum_auth``)."""
        return self._protocol

    @property
    def closed(self) -> bool:
        return self._protocol.terminated is not None

    @property
    def has_room(self) -> bool:
        """Whether a request sent now goes out at once (the peer's stream limit allows another
        stream) rather than waiting for other requests on this connection to end."""
        return not self.closed and can_open_request_stream(quic_of(self._protocol))

    @property
    def requests(self) -> int:
        """How many requests on this connection are in flight (their streams not released)."""
        return len(self._protocol.streams)

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

    async def _open(self, request: _Request, timeout: float) -> StreamedResponse:
        """The one request path (see :meth:`open_stream`), with the timeout resolved."""
        protocol = self._protocol
        body = request.body
        if isinstance(body, (bytes, bytearray, memoryview)):
            whole, chunks = bytes(body), None
        else:
            whole, chunks = b"", body
        stream = protocol.open_request(
            self._head(request.method, request.path, request.headers),
            end_stream=not whole and chunks is None,
        )
        try:
            if whole:
                protocol.send_data(stream.stream_id, whole, end_stream=True)
            elif chunks is not None:
                upload = asyncio.ensure_future(send_body(protocol, stream, chunks, timeout))
                stream.upload = upload
                # the clock starts when the body is sent
                await asyncio.wait((stream.head, upload), return_when=asyncio.FIRST_COMPLETED)
            head = await _within(asyncio.shield(stream.head), timeout, "response head")
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
    async def _stream(self, request: _Request, timeout: float) -> AsyncIterator[StreamedResponse]:
        response = await self._open(request, timeout)
        try:
            yield response
        finally:
            await response.aclose()

    @_called_with(_Request)
    async def open_stream(self, request: _Request) -> StreamedResponse:
        """Send a request and return once the response head is in; the body streams.

        The caller must read the body to the end or ``aclose()`` it (:meth:`stream` does that
        for you). ``timeout`` (default :data:`HEAD_TIMEOUT`) bounds the wait for the response
        head once the request body has been sent (a long upload does not count) and any stall
        of the upload; it raises :class:`ReadTimeout` or :class:`WriteTimeout`. On any failure
        the stream is cancelled. If ``body`` raises, that exception is raised here or from the
        response body.
        """
        return await self._open(request, request.timeout_or(HEAD_TIMEOUT))

    @_called_with(_Request)
    def stream(self, request: _Request) -> contextlib.AbstractAsyncContextManager[StreamedResponse]:
        """``async with session.stream("GET", "/big") as response: async for chunk in
        response.body: ...``; :meth:`open_stream`'s rules, and leaving the block early cancels
        the request."""
        return self._stream(request, request.timeout_or(HEAD_TIMEOUT))

    @_called_with(_Request)
    async def stream_request(
        self, request: _Request
    ) -> tuple[int, list[tuple[bytes, bytes]], ResponseBody]:
        """:meth:`open_stream` as a tuple ``(status, headers, body)``, for callers that hand
        the body on; the same rules, and the same duty to read or ``aclose()`` the body."""
        response = await self._open(request, request.timeout_or(HEAD_TIMEOUT))
        return response.status, response.headers, response.body

    @_called_with(_Request)
    async def request(self, request: _Request) -> Response:
        """One request, its whole response read into memory (:meth:`stream` plus reading).

        ``timeout`` (default :data:`REQUEST_TIMEOUT`) bounds the whole exchange
        (:class:`ReadTimeout`); a reset stream or a closed connection fails it at once, as for
        :meth:`stream`.
        """
        timeout = request.timeout_or(REQUEST_TIMEOUT)

        async def whole() -> Response:
            async with self._stream(request, timeout) as response:
                content = await response.aread()
            return Response(response.status, response.headers, content, response.group)

        return await _within(whole(), timeout, "complete response")

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
        return await session.request(method, path, headers, body, timeout=timeout)
