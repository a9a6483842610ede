"""WebSockets to the origin over HTTP/1.1 (wsproto).

``http://`` services get ``ws://``; ``https://`` services get TLS over TCP (``wss://``) on the
same host and port, through the same post-quantum TLS client as HTTP requests (:mod:`.tls`):
verified against the rule's origin CA, and the hop reports the group the handshake agreed on.
WebSockets over HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220) are out of scope: hypercorn's HTTP/3
stack does not offer them, and HTTP/1.1 reaches every origin that has WebSockets at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

from ..config import Service
from ..headers import find, forwardable
from ..hostnames import format_hostport
from .errors import OriginError, plain
from .framing import wire_headers
from .request import OriginHop, OriginRequest
from .sockets import READ_CHUNK, connect_limit, open_stream, plain_hop
from .tls import ALPN_FOR, TLSConnector

__all__ = ["OriginWebSocket", "WEBSOCKET_OWN", "open_websocket"]

logger = logging.getLogger("pq_quic_plugin.tunnel.origin")

#: Headers the WebSocket handshake makes itself.
WEBSOCKET_OWN = frozenset(
    {
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
#: The most of a refusal's body that is kept.
REFUSAL_BODY = 65536
#: The default largest message (bytes; text counted as UTF-8) taken from the origin. A larger
#: one closes the WebSocket with 1009 "message too big" instead of being buffered whole.
MAX_MESSAGE = 1 << 20
#: WebSocket close code for a message over the limit (RFC 6455 7.4.1).
MESSAGE_TOO_BIG = int(CloseReason.MESSAGE_TOO_BIG)


async def open_websocket(
    service: Service,
    request: OriginRequest,
    subprotocols: Sequence[str],
    connect_timeout: float,
    tls: TLSConnector,
    max_message: int = MAX_MESSAGE,
) -> OriginWebSocket:
    """Connect and run the opening handshake; see :meth:`OriginClient.websocket`."""
    if service.tls:
        opened = await tls.connect(service, request, ALPN_FOR["http1"])
        reader, writer, hop = opened.reader, opened.writer, opened.hop
    else:
        reader, writer = await open_stream(service, connect_limit(request, connect_timeout))
        hop = plain_hop(service)
    chosen = request.headers_with(hop)
    host = (
        request.host_header
        or find(chosen, "host")
        or ("localhost" if service.is_unix else format_hostport(service.host, service.port))
    )
    try:
        extra = wire_headers(forwardable(chosen, drop=WEBSOCKET_OWN), lower=False)
    except OriginError:
        writer.close()
        raise
    opening = Request(
        host=host,
        target=request.target(service),
        subprotocols=list(subprotocols),
        extra_headers=extra,
    )
    origin = OriginWebSocket(
        WSConnection(ConnectionType.CLIENT), reader, writer, hop, service, max_message
    )
    await origin.open(opening, request.timeout)
    return origin


class OriginWebSocket:
    """A WebSocket to the origin: whole messages in, whole messages out.

    ``receive()`` returns ``str`` or ``bytes`` messages and ``None`` once the connection is
    closed (then ``close_code``/``close_reason`` say how; 1006 when it just dropped). At most
    :attr:`QUEUE` messages wait unread: after that the socket is not read, so a slow consumer
    slows the origin down instead of filling memory. A message from the origin larger than
    ``max_message`` bytes is not buffered: the WebSocket is closed with 1009 ("message too
    big", also the ``close_code`` the reader sees). Messages sent after the close are dropped.
    Pings are answered automatically.
    """

    QUEUE = 16

    def __init__(
        self,
        ws: WSConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hop: OriginHop,
        service: Service,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self._ws, self._reader, self._writer = ws, reader, writer
        self.max_message = max_message
        self._size = 0  # bytes of the message being assembled
        self._service = service
        self.hop = hop
        self.status = 0
        self.subprotocol: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""  # the refusal's body (status != 101), at most REFUSAL_BODY bytes
        self.close_code: int | None = None
        self.close_reason = ""
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue(self.QUEUE)
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self._pump: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._finished = False  # None queued for the reader
        self._eof = False  # the reader got None
        self._rejecting = False  # reading a refusal's body

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def open(self, opening: Request, timeout: float) -> None:
        """Send the opening handshake and read the answer (101, or a refusal and its body).

        Any failure drops the connection and raises :class:`OriginError` (504 for a timeout).
        """
        name = self._service.text
        try:
            self._writer.write(self._ws.send(opening))
            await asyncio.wait_for(self._handshake(), timeout)
        except asyncio.TimeoutError:
            self.abort()
            raise OriginError(
                504, f"origin {name} did not answer the WebSocket handshake within {timeout:g}s"
            ) from None
        except OriginError:
            self.abort()
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, wsproto protocol errors
            self.abort()
            raise OriginError(
                502, f"origin {name}: WebSocket handshake failed: {plain(exc)}"
            ) from None

    async def _handshake(self) -> None:
        await self._writer.drain()
        pending: list[Any] = []
        while self.status == 0 or (self.status != 101 and self._rejecting):
            data = await self._reader.read(READ_CHUNK)
            if not data:
                if self.status:
                    break  # a refusal whose body ends with the connection
                raise OriginError(
                    502,
                    f"origin {self._service.text} closed the connection during the WebSocket "
                    "handshake",
                )
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    self.status, self.subprotocol = 101, event.subprotocol
                    self.headers = _decoded(event.extra_headers)
                elif isinstance(event, RejectConnection):
                    self.status = event.status_code
                    self.headers = _decoded(event.headers)
                    self._rejecting = event.has_body
                elif isinstance(event, RejectData):
                    if len(self.body) < REFUSAL_BODY:
                        self.body += bytes(event.data)[: REFUSAL_BODY - len(self.body)]
                    if event.body_finished:
                        self._rejecting = False
                elif self.status == 101:
                    pending.append(event)  # a message in the same read as the 101
        if self.status != 101:
            self._closed.set()
            self._finish()
            return
        for event in pending:
            await self._handle(event)
        self._pump = asyncio.ensure_future(self._read_loop())

    async def _handle(self, event: Any) -> None:
        if self._closed.is_set():
            return
        if isinstance(event, (TextMessage, BytesMessage)):
            data = event.data
            self._size += len(data.encode()) if isinstance(data, str) else len(data)
            if self._size > self.max_message:
                self._too_big()
                return
            if event.message_finished:
                self._size = 0
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                await self._queue.put("".join(self._text))
                self._text.clear()
        elif isinstance(event, BytesMessage):
            self._bytes.append(bytes(event.data))
            if event.message_finished:
                await self._queue.put(b"".join(self._bytes))
                self._bytes.clear()
        elif isinstance(event, Ping):
            self._write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self.close_code is None:
                self.close_code, self.close_reason = event.code, event.reason or ""
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                self._write(self._ws.send(event.response()))
            self._closed.set()

    def _too_big(self) -> None:
        """Drop the message being assembled and close with 1009 (the origin and the reader)."""
        self._text.clear()
        self._bytes.clear()
        reason = f"message too big (over {self.max_message} bytes)"
        logger.info("origin %s: WebSocket closed: %s", self._service.text, reason)
        if self._ws.state is ConnectionState.OPEN:
            self._write(self._ws.send(CloseConnection(code=MESSAGE_TOO_BIG, reason=reason)))
        if self.close_code is None:
            self.close_code, self.close_reason = MESSAGE_TOO_BIG, reason
        self._closed.set()

    async def _read_loop(self) -> None:
        try:
            while not self._closed.is_set():
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                self._ws.receive_data(data)
                for event in self._ws.events():
                    await self._handle(event)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # noqa: BLE001 - a protocol violation by the origin
            logger.warning("origin %s: WebSocket error: %s", self._service.text, exc)
            if self.close_code is None:
                self.close_code = 1002
        finally:
            if self.close_code is None:
                self.close_code = 1006  # closed without a close frame
            self._closed.set()
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(Exception):
            self._writer.close()
        # The reader gets None after the queued messages (from the queue, or, when the queue
        # is full, from ``receive`` once it is empty: no task left waiting to put it).
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def _write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def abort(self) -> None:
        """Drop the connection without a close frame (the reader still gets what is queued)."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        with contextlib.suppress(Exception):
            self._writer.close()

    async def send(self, message: str | bytes) -> None:
        """Send one message (waits while the origin is not reading: TCP backpressure)."""
        if self._ws.state is not ConnectionState.OPEN or self._writer.is_closing():
            return
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        self._write(self._ws.send(event))
        with contextlib.suppress(OSError):
            await self._writer.drain()

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the WebSocket is closed."""
        if self._eof or (self._finished and self._queue.empty()):
            self._eof = True
            return None
        message = await self._queue.get()
        if message is None:
            self._eof = True
        return message

    async def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> None:
        """Close with ``code``; waits (up to ``timeout``) for the origin's close frame."""
        if self._ws.state is ConnectionState.OPEN and not self._writer.is_closing():
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
            with contextlib.suppress(OSError):
                await self._writer.drain()
            if self.close_code is None:
                self.close_code, self.close_reason = code, reason
            if self._pump is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), timeout)
        self.abort()
        self._closed.set()
        self._finish()


def _decoded(headers: Any) -> list[tuple[str, str]]:
    return [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in headers or []]
