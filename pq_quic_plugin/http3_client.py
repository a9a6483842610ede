"""A small HTTP/3 client on aioquic with a post-quantum policy, for the demo, tests and tunnel.

It exists because every hop that this project makes post-quantum needs a client that can say
which group it negotiated; general-purpose HTTP/3 clients do not expose that.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from .aioquic_binding import configure, negotiated_group
from .groups.base import Group
from .policy import Policy

SEND_BUFFER_HIGH = 512 * 1024  # bytes queued per stream before an upload waits


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    group: Group | None
    http_version: str = "3"

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None


@dataclass
class _Pending:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    done: asyncio.Future[None] | None = None
    queue: asyncio.Queue[bytes | None] | None = None
    upload: asyncio.Task[None] | None = None
    ended: bool = False


class HTTP3Error(ConnectionError):
    """The connection ended before a response; carries the peer's reason when there was one."""


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.pending: dict[int, _Pending] = {}
        self.terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            for p in self.pending.values():
                if p.done is not None and not p.done.done():
                    p.done.set_exception(HTTP3Error(event.reason_phrase or "connection closed"))
                if p.queue is not None:
                    p.queue.put_nowait(None)
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        pending = self.pending.get(getattr(event, "stream_id", -1))
        if pending is None:
            return
        if isinstance(event, HeadersReceived):
            if not pending.headers:
                pending.headers = list(event.headers)
                if pending.done is not None and pending.queue is not None:
                    pending.done.set_result(None)  # streaming: headers are enough
        elif isinstance(event, DataReceived):
            if pending.queue is not None:
                pending.queue.put_nowait(event.data)
            else:
                pending.body += event.data
        if getattr(event, "stream_ended", False):
            pending.ended = True
            if pending.queue is not None:
                pending.queue.put_nowait(None)
            if pending.done is not None and not pending.done.done():
                pending.done.set_result(None)


def client_configuration(
    policy: Policy | str = Policy.PREFER,
    groups: Sequence[str] | None = None,
    cafile: str | None = None,
    server_name: str | None = None,
    verify: bool = True,
) -> QuicConfiguration:
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

    def __init__(self, protocol: _Protocol, authority: str) -> None:
        self._protocol = protocol
        self.authority = authority

    @property
    def group(self) -> Group | None:
        return negotiated_group(self._protocol)

    @property
    def closed(self) -> bool:
        return self._protocol.terminated is not None

    def _send_request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        more_body: bool = False,
    ) -> int:
        quic = self._protocol._quic
        stream_id = quic.get_next_available_stream_id()
        authority = self.authority.encode()
        rest = []
        for k, v in headers:  # HTTP/3 carries the host in :authority
            if k.lower() == b"host":
                authority = v
            else:
                rest.append((k, v))
        self._protocol.h3.send_headers(
            stream_id,
            [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority),
                (b":path", path.encode()),
                *rest,
            ],
            end_stream=not body and not more_body,
        )
        if body:
            self._protocol.h3.send_data(stream_id, body, end_stream=True)
        self._protocol.transmit()
        return stream_id

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> Response:
        loop = asyncio.get_running_loop()
        pending = _Pending(done=loop.create_future())
        stream_id = self._send_request(method, path, headers, body)
        self._protocol.pending[stream_id] = pending
        try:
            assert pending.done is not None
            await asyncio.wait_for(pending.done, timeout)
        finally:
            self._protocol.pending.pop(stream_id, None)
        status = int(dict(pending.headers).get(b":status", b"0"))
        headers_out = [(k, v) for k, v in pending.headers if not k.startswith(b":")]
        return Response(status, headers_out, bytes(pending.body), self.group)

    async def stream(
        self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
        """Start a request and return the response head plus an iterator over the body."""
        return await self.stream_request(method, path, headers, None)

    async def stream_request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterator[bytes] | None,
        timeout: float = 60.0,
    ) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
        """Stream a request body (with backpressure) and the response body, concurrently.

        The upload runs in its own task so an origin that answers while still reading (an
        echo) cannot deadlock against us.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(done=loop.create_future(), queue=asyncio.Queue())
        stream_id = self._send_request(method, path, headers, None, more_body=body is not None)
        self._protocol.pending[stream_id] = pending
        upload: asyncio.Task[None] | None = None
        if body is not None:
            upload = asyncio.ensure_future(self._upload(stream_id, body))
            pending.upload = upload
        assert pending.done is not None
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), timeout)
        except BaseException:
            if upload is not None:
                upload.cancel()
            self._protocol.pending.pop(stream_id, None)
            raise

        async def chunks() -> AsyncIterator[bytes]:
            assert pending.queue is not None
            try:
                while (chunk := await pending.queue.get()) is not None:
                    yield chunk
                if self._protocol.terminated is not None and not pending.ended:
                    raise HTTP3Error("connection closed before the response ended")
            finally:
                self._protocol.pending.pop(stream_id, None)
                if upload is not None and not upload.done():
                    upload.cancel()

        status = int(dict(pending.headers).get(b":status", b"0"))
        return status, [(k, v) for k, v in pending.headers if not k.startswith(b":")], chunks()


    async def _upload(self, stream_id: int, body: AsyncIterator[bytes]) -> None:
        quic = self._protocol._quic
        async for chunk in body:
            if not chunk:
                continue
            self._protocol.h3.send_data(stream_id, chunk, end_stream=False)
            self._protocol.transmit()
            stream = quic._streams.get(stream_id)
            while stream is not None and len(stream.sender._buffer) > SEND_BUFFER_HIGH:
                if self._protocol.terminated is not None:
                    return
                await asyncio.sleep(0.002)
        self._protocol.h3.send_data(stream_id, b"", end_stream=True)
        self._protocol.transmit()

    def cancel(self, stream_id: int) -> None:
        """Abort a request in both directions."""
        quic = self._protocol._quic
        for action in (quic.reset_stream, quic.stop_stream):
            try:
                action(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            except Exception:  # noqa: BLE001 - already finished
                pass
        self._protocol.transmit()


class open_session:  # noqa: N801 - used as ``async with open_session(...)``
    """``async with open_session(url, configuration) as session: ...``"""

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
            self._host, self._port, configuration=self._configuration, create_protocol=_Protocol
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
    headers: Sequence[tuple[bytes, bytes]] = (),
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
