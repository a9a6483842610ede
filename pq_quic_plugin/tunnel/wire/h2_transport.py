"""The tunnel over HTTP/2 on TLS over TCP: one connection between an edge and a connector
(docs/protocol.md, "The HTTP/2 transport"), with the surface of the QUIC
:class:`~.channel.TunnelConnection` (:class:`~.transport.TunnelLink`).

As in cloudflared's http2 transport, the connector dials (it is the TLS client) but is the
HTTP/2 *server*, and the edge is the HTTP/2 *client*: only a client opens streams, and it is the
edge that opens a stream per visitor request. The edge's first stream is the control stream
(``:path /pq-tunnel/control``); the connector's registration runs on it exactly as on QUIC's
stream 0, and it is ``channels[0]`` here too. Every other stream is one request
(``:path /pq-tunnel/stream``); its DATA is the tunnel's frame stream, END_STREAM is QUIC's FIN,
RST_STREAM with the tunnel's error codes is QUIC's RESET_STREAM + STOP_SENDING, and GOAWAY with
the code and the reason (UTF-8 debug data) is QUIC's CONNECTION_CLOSE.

Speed: the HTTP/2 state machine is the ``h2`` library; what this class adds is kept off the
per-byte path: frames queued by many streams in one turn of the event loop leave in one
``transport.write`` (or at once when :data:`FLUSH_BYTES` are waiting), no task per chunk, large
DATA frames (:data:`MAX_FRAME_SIZE`), and the connection window reopened as data arrives (each
stream's own window bounds memory, and one slow reader never stalls the others).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from ... import negotiated_group
from ...groups.base import Group
from .frames import CONTROL_STREAM_ID, ERROR_CANCELLED, ERROR_SHUTDOWN, StreamReset
from .h2_channel import H2Channel
from .h2_writer import FLUSH_BYTES, H2Writer
from .link_base import STREAMS_PER_CONNECTION, LinkBase

__all__ = [
    "CONNECTION_WINDOW",
    "CONTROL_PATH",
    "FLUSH_BYTES",
    "H2_ALPN",
    "IDLE_TIMEOUT",
    "KEEPALIVE",
    "MAX_CONCURRENT_STREAMS",
    "MAX_FRAME_SIZE",
    "STREAM_PATH",
    "STREAM_WINDOW",
    "H2StreamHandler",
    "H2TunnelConnection",
]

logger = logging.getLogger("pq_quic_plugin.tunnel")

#: The TLS ALPN of the HTTP/2 transport (the QUIC transport's is ``pq-tunnel/1``).
H2_ALPN = "pq-tunnel-h2/1"
CONTROL_PATH = b"/pq-tunnel/control"
STREAM_PATH = b"/pq-tunnel/stream"
_CONTROL_H2_ID = 1  # a client's first stream

#: Per-stream receive window: one largest tunnel frame (a 1 MiB WebSocket message) plus room,
#: so such a frame always fits while the reader waits for it.
STREAM_WINDOW = (1 << 20) + 64 * 1024
#: Connection receive window; reopened as data arrives (per-stream windows bound memory).
CONNECTION_WINDOW = 16 << 20
#: Largest HTTP/2 frame either side accepts (SETTINGS_MAX_FRAME_SIZE); the default is 16 KiB.
MAX_FRAME_SIZE = 256 * 1024
#: Streams the edge may have open on one connection at once (the connector's setting).
MAX_CONCURRENT_STREAMS = STREAMS_PER_CONNECTION
#: Send a PING after this long without hearing from the peer...
KEEPALIVE = 1.0
#: ... and close the connection ("Idle timeout", as QUIC says) after this long.
IDLE_TIMEOUT = 5.0
_DEFAULT_WINDOW = 65535

_H2_PROTOCOL_ERROR = 0x1

H2StreamHandler = Callable[[H2Channel], Awaitable[None]]


def _request_headers(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"pq-tunnel"),
        (b":path", path),
    )


_CONTROL_HEADERS = _request_headers(CONTROL_PATH)
_STREAM_HEADERS = _request_headers(STREAM_PATH)


class H2TunnelConnection(LinkBase[H2Channel], asyncio.Protocol):
    """One edge-connector connection over HTTP/2 whose streams are :class:`H2Channel` objects.

    ``role`` is the tunnel role: the ``"edge"`` (TLS server, HTTP/2 client: opens the control
    stream and one stream per request with :meth:`open_channel`) or the ``"connector"`` (TLS
    client, HTTP/2 server: its :meth:`open_channel` returns the control stream once; request
    streams go to ``stream_handler``, each in its own task). The edge's control stream goes to
    its ``stream_handler`` too, as QUIC's stream 0 does. ``close_code`` is the GOAWAY's error
    code (ours or the peer's); None while open, and for a connection that ended without one
    (TCP reset, EOF, a dead peer).
    """

    transport_name = "tcp"
    protocol_name = "http2"
    #: The GOAWAY code of a connection refused with :meth:`refuse_soon`.
    REFUSAL_CODE: ClassVar[int] = ERROR_SHUTDOWN

    def __init__(
        self,
        role: Literal["edge", "connector"],
        *,
        stream_handler: H2StreamHandler | None = None,
        keepalive: float = KEEPALIVE,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        super().__init__()
        self.role = role
        self.stream_handler = stream_handler
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout
        # The only headers we send are the constant ones below (:func:`_request_headers`,
        # ``:status 200``): checking and normalising them again per stream is work for
        # nothing. What the peer sends is still checked.
        config = h2.config.H2Configuration(
            client_side=role == "edge",
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config)
        self._by_h2: dict[int, H2Channel] = {}
        self._lost = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        #: The outgoing side; :class:`H2Channel` writes through it.
        self.writer = H2Writer(self.h2)
        self._control_taken = False
        self._control_seen = False
        self._conn_unacked = 0
        self._last_heard = 0.0
        self._pinged = False
        self._ping_count = 0
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ facts

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The TLS transport's facts (``ssl_object``, ``peername``, ...), so that
        ``pq_quic_plugin.negotiated_group(link)`` works on this link as on QUIC's."""
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    @property
    def group(self) -> Group | None:
        """The key-exchange group the TLS handshake agreed on (None under policy ``off``)."""
        return negotiated_group(self)

    def peer_address(self) -> tuple[str, int]:
        peer = self.get_extra_info("peername") or ("?", 0)
        return str(peer[0]), int(peer[1])

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The TLS handshake is done (asyncio calls this only afterwards): start HTTP/2."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.writer.transport = transport
        if self.closed:  # closed while its handshake ran: nothing to start
            transport.close()
            return
        self.handshake_done = True
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        self.h2.initiate_connection()
        settings: dict[h2.settings.SettingCodes | int, int] = {
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: (
                MAX_CONCURRENT_STREAMS if self.role == "connector" else 0
            ),
        }
        if self.role == "edge":
            settings[h2.settings.SettingCodes.ENABLE_PUSH] = 0
        self.h2.update_settings(settings)
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        if alpn != H2_ALPN:
            self.close(_H2_PROTOCOL_ERROR, f"peer did not negotiate ALPN {H2_ALPN} ({alpn!r})")
            return
        if self._refusal is not None:
            self._refuse()
            return
        if self.role == "edge":
            self._open_control()
        self.flush()
        self._timer = loop.call_later(self.keepalive, self._tick)

    def data_received(self, data: bytes) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        self._pinged = False
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued its GOAWAY: send it, then go.
            self.flush()
            code = int(getattr(exc, "error_code", _H2_PROTOCOL_ERROR) or _H2_PROTOCOL_ERROR)
            self._terminate(code, f"HTTP/2 protocol error from the peer: {exc}")
            self._close_transport()
            return
        for event in events:
            handler = self._dispatch.get(type(event))
            if handler is not None:
                handler(self, event)
            if self.closed:
                return
        self.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost.set()
        if not self.closed:
            reason = f"connection lost: {exc}" if exc else "connection lost: the peer closed TCP"
            self._terminate(None, reason)

    def pause_writing(self) -> None:
        self.writer.pause()

    def resume_writing(self) -> None:
        self.writer.resume()

    # ------------------------------------------------------------------ HTTP/2 events

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        """The edge opened a stream (we are the connector)."""
        fields = dict(event.headers or [])
        sid = event.stream_id
        is_post = fields.get(b":method") == b"POST"
        path = fields.get(b":path")
        if sid == _CONTROL_H2_ID:
            if not is_post or path != CONTROL_PATH:
                self.close(_H2_PROTOCOL_ERROR, "the edge's first stream is not the control stream")
                return
            channel = self.channels.get(CONTROL_STREAM_ID)
            if channel is None:
                channel = self._new_channel(sid, CONTROL_STREAM_ID, opened=True)
            self._by_h2[sid] = channel
            self._control_seen = True
            channel.mark_open()
        elif not self._control_seen:
            self.close(_H2_PROTOCOL_ERROR, "the edge opened a request before the control stream")
        elif is_post and path == STREAM_PATH:
            channel = self._new_channel(sid, sid, opened=True)
            self._by_h2[sid] = channel
            self._spawn(channel)
        else:
            self.writer.reset(sid, ERROR_CANCELLED)

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        """The connector answered a stream we opened (we are the edge)."""
        channel = self._by_h2.get(event.stream_id)
        status = dict(event.headers or []).get(b":status")
        if channel is not None and status != b"200":
            channel.fail(StreamReset(f"the connector refused the stream (status {status!r})"))
            channel.reset(ERROR_CANCELLED)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        length = event.flow_controlled_length or 0
        self._conn_unacked += length
        if self._conn_unacked >= CONNECTION_WINDOW // 4:
            self.h2.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0
        channel = self._by_h2.get(event.stream_id or 0)
        if channel is None:
            return  # a stream we are done with: nobody reads it (h2 resets it)
        data = event.data or b""
        channel.feed(data)
        if length > len(data):
            channel.padding(length - len(data))

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        channel = self._by_h2.get(event.stream_id or 0)
        if channel is not None:
            channel.feed(b"", end=True)

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        channel = self._by_h2.get(event.stream_id or 0)
        if channel is not None:
            channel.ended = True
            channel.fail(StreamReset("reset by peer", int(event.error_code or 0)))

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id:
            self.writer.wake_writer(event.stream_id)
        else:
            self.writer.wake_all_writers()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self.writer.wake_all_writers()  # the initial window or the frame size may have grown

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        code = int(event.error_code or 0)
        reason = (event.additional_data or b"").decode("utf-8", "replace")[:500]
        self._terminate(code, reason or f"error 0x{code:X}")
        self._close_transport()

    _dispatch: dict[type, Callable[[H2TunnelConnection, Any], None]] = {
        h2.events.RequestReceived: _on_request,
        h2.events.ResponseReceived: _on_response,
        h2.events.DataReceived: _on_data,
        h2.events.StreamEnded: _on_stream_ended,
        h2.events.StreamReset: _on_stream_reset,
        h2.events.WindowUpdated: _on_window,
        h2.events.RemoteSettingsChanged: _on_settings,
        h2.events.ConnectionTerminated: _on_goaway,
    }

    # ------------------------------------------------------------------ streams

    def _new_channel(self, h2_id: int, stream_id: int, *, opened: bool) -> H2Channel:
        channel = H2Channel(self, h2_id, stream_id, opened=opened, window=STREAM_WINDOW)
        channel.head_pending = self.role == "connector"
        self.channels[stream_id] = channel
        return channel

    def _open_control(self) -> None:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, _CONTROL_HEADERS)
        channel = self._new_channel(sid, CONTROL_STREAM_ID, opened=True)
        self._by_h2[sid] = channel
        self._spawn(channel)

    def open_channel(self) -> H2Channel:
        """Edge: a new request stream. Connector: the control stream (once: over HTTP/2 only
        the edge opens streams, and the connector never needs another)."""
        if self.closed:
            raise StreamReset(f"tunnel connection closed: {self.close_reason}")
        if self.role == "connector":
            if self._control_taken:
                raise StreamReset("over http2 only the edge opens streams")
            self._control_taken = True
            channel = self.channels.get(CONTROL_STREAM_ID)
            if channel is None:  # the edge's HEADERS for it are still on their way
                channel = self._new_channel(_CONTROL_H2_ID, CONTROL_STREAM_ID, opened=False)
            return channel
        limit = self.h2.remote_settings.max_concurrent_streams
        if self.h2.open_outbound_streams >= limit:
            raise StreamReset(f"the connector allows {limit} concurrent streams")
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, _STREAM_HEADERS)
        channel = self._new_channel(sid, sid, opened=True)
        self._by_h2[sid] = channel
        self.writer.queued(64)
        return channel

    def _forgotten(self, channel: H2Channel) -> None:
        """Reset a stream done with if either side is still open (an HTTP/2 stream that is
        never closed holds one of the connector's stream slots)."""
        self._by_h2.pop(channel.h2_stream_id, None)
        self.writer.wake_writer(channel.h2_stream_id)
        stream = self.h2.streams.get(channel.h2_stream_id)
        if stream is not None and not stream.closed:
            self.writer.reset(channel.h2_stream_id, ERROR_CANCELLED)

    def flush(self) -> None:
        """Write everything HTTP/2 has queued now (QUIC's ``transmit``)."""
        self.writer.flush()

    transmit = flush

    async def wait_flushed(self, timeout: float, stopped: Callable[[], bool] | None = None) -> int:
        """Wait up to ``timeout`` until the TLS transport holds nothing unsent; returns what is
        still waiting (0 when all went out). A graceful close sends the rest anyway, unless the
        peer is gone."""
        return await self.writer.wait_flushed(timeout, stopped)

    # ------------------------------------------------------------------ closing

    def close(self, error_code: int = 0, reason_phrase: str = "") -> None:
        """GOAWAY with ``error_code`` and ``reason_phrase``, then close TLS and TCP (what was
        written, GOAWAY included, still goes out first)."""
        if self.closed:
            return
        if self._transport is not None:
            try:
                self.h2.close_connection(error_code, reason_phrase.encode()[:1000] or None)
            except h2.exceptions.ProtocolError:
                pass
            self.flush()
        self._terminate(error_code, reason_phrase or f"error 0x{error_code:X}")
        self._close_transport()

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()
        else:
            self._lost.set()

    async def wait_closed(self) -> None:
        await self._lost.wait()

    def _terminate(self, code: int | None, reason: str) -> None:
        """Mark closed (once): fail every stream, wake every waiter, tell ``on_close``."""
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._mark_closed(code, reason)

    def _streams_failed(self) -> None:
        self.writer.shut()

    def _tick(self) -> None:
        """Keepalive: PING when the peer has been quiet; give up after ``idle_timeout``."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last_heard
        if quiet >= self.idle_timeout:
            logger.info("tunnel connection idle for %.1fs: closing", quiet)
            self._terminate(0, "Idle timeout")
            if self._transport is not None:
                self._transport.abort()
            return
        if quiet >= self.keepalive and not self._pinged:
            self._pinged = True
            self._ping_count += 1
            self.h2.ping(self._ping_count.to_bytes(8, "big"))
            self.flush()
        self._timer = loop.call_later(self.keepalive, self._tick)
