"""The aioquic side of the client: QUIC and HTTP/3 events become per-request stream state.

Everything that can end a request arrives here as an event - the final response head, the end
of the body, a RESET_STREAM or STOP_SENDING from the server, the connection closing - and is
recorded on that request's :class:`RequestStream` the moment it arrives. The session and the
response body only wait on that state, so whichever way a request was made (whole body or
streamed) it fails at once, with the same error, when the server gives up on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.h3.connection import ErrorCode
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection

from ..aioquic_binding import negotiated_group
from ..aioquic_binding.facade import quic_of
from ..aioquic_binding.flow_control import tune_windows
from ..aioquic_binding.h3_stream_errors import MalformedResponse, StreamScopedH3Connection
from ..aioquic_binding.send_backpressure import ProgressSignal
from ..groups.base import Group
from ..message_framing import BodyFraming
from .errors import (
    ConnectionClosedError,
    RemoteProtocolError,
    StreamResetError,
    connect_error,
)

__all__ = ["H3ClientProtocol", "RequestStream"]

Headers = list[tuple[bytes, bytes]]


@dataclass(eq=False)
class RequestStream:
    """One request's stream: what the server has sent on it so far, and how it ended.

    ``head`` resolves with the final (non-1xx) response head, or fails with the request's
    error. ``chunks`` carries body bytes for the reader and ``None`` once the stream is over;
    then ``error`` is None only for a complete body (the server's FIN).
    """

    stream_id: int
    head: asyncio.Future[Headers]
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    ended: bool = False
    error: BaseException | None = None
    #: The server wants no more request body (it has what it needs, or gave up).
    upload_stopped: bool = False
    upload: asyncio.Task[None] | None = None
    #: Whether the body matches the head (HEAD, 204 and 304 have none, whatever the length).
    framing: BodyFraming = field(default_factory=lambda: BodyFraming("GET"))

    @property
    def over(self) -> bool:
        """The response will not change any more: complete, or failed."""
        return self.ended or self.error is not None


class H3ClientProtocol(QuicConnectionProtocol):
    """One client QUIC connection speaking HTTP/3, with its requests in :attr:`streams`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A malformed response (say, a body that does not match its length) resets its own
        # stream; aioquic's H3Connection would close the connection and every request on it.
        self.h3 = StreamScopedH3Connection(self.quic)
        self.streams: dict[int, RequestStream] = {}
        self.terminated: events.ConnectionTerminated | None = None
        # Response bodies get windows that open as the reader takes chunks, so a slow reader
        # of a fast response holds at most one window in memory; windows start small and grow
        # while the reader keeps up (flow_control.tune_windows).
        self.credit = tune_windows(self.quic)
        self.progress = ProgressSignal()
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def quic(self) -> QuicConnection:
        return quic_of(self)

    @property
    def group(self) -> Group | None:
        """The key-exchange group the handshake negotiated."""
        return negotiated_group(self)

    # -- the handshake

    async def wait_connected(self) -> None:
        """Wait for the handshake; raise :class:`ConnectError` or :class:`HandshakeError`.

        This replaces aioquic's own waiter, which fails with a bare ``ConnectionError`` and,
        when the wait is abandoned (say by a timeout), fails later with nobody listening, so
        that asyncio reports an exception that was never retrieved.
        """
        await asyncio.shield(self._handshake)

    # -- requests

    def open_request(
        self, headers: Sequence[tuple[bytes, bytes]], end_stream: bool
    ) -> RequestStream:
        """Send a request head on a new stream and start tracking the stream."""
        if self.terminated is not None:
            raise ConnectionClosedError(
                f"the connection is closed: {self.terminated.reason_phrase or 'no reason given'}",
                self.terminated.error_code,
            )
        stream_id = self.quic.get_next_available_stream_id()
        self.h3.send_headers(stream_id, list(headers), end_stream=end_stream)
        stream = RequestStream(stream_id, asyncio.get_running_loop().create_future())
        stream.framing = BodyFraming(dict(headers).get(b":method", b"GET"))
        self.streams[stream_id] = stream
        self.credit.track(stream_id)
        self.transmit()
        return stream

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.h3.send_data(stream_id, data, end_stream=end_stream)
        self.transmit()

    def consumed(self, stream_id: int, size: int) -> None:
        """The reader took ``size`` bytes of a response body: grant credit when due."""
        if self.credit.consumed(stream_id, size) and self.terminated is None:
            self.transmit()  # writes MAX_STREAM_DATA

    def cancel(self, stream_id: int, code: int = ErrorCode.H3_REQUEST_CANCELLED) -> None:
        """Abort a request in both directions (RESET_STREAM and STOP_SENDING)."""
        if self.terminated is not None:
            return
        for action in (self.quic.reset_stream, self.quic.stop_stream):
            try:
                action(stream_id, code)
            except Exception:  # noqa: BLE001 - that direction had already finished
                pass
        self.transmit()

    def fail(self, stream: RequestStream, error: BaseException) -> None:
        """End a request with ``error``: raised by the head wait, or by the body reader."""
        if stream.over:
            return
        stream.error = error
        if not stream.head.done():
            stream.head.set_exception(error)
            stream.head.exception()  # retrieved: no "never retrieved" warning if unused
        stream.chunks.put_nowait(None)
        self.progress.wake_all()  # an upload waiting for room stops now, not at its timeout

    def release(self, stream: RequestStream) -> None:
        """Forget a request; cancel it on the wire unless both directions completed."""
        if self.streams.pop(stream.stream_id, None) is None:
            return
        self.credit.release(stream.stream_id)
        upload = stream.upload
        uploading = upload is not None and not upload.done()
        if upload is not None and uploading:
            upload.cancel()
        if not stream.ended or uploading:
            self.cancel(stream.stream_id)

    # -- waiting for the network

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        self.progress.notify()

    # -- events

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            if not self._handshake.done():
                self._handshake.set_result(None)
        elif isinstance(event, events.ConnectionTerminated):
            self._terminated(event)
        elif isinstance(event, events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self.fail(
                    stream,
                    StreamResetError(
                        event.stream_id, event.error_code, "the server reset the stream"
                    ),
                )
        elif isinstance(event, events.StopSendingReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._stop_sending(stream, event.error_code)
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _terminated(self, event: events.ConnectionTerminated) -> None:
        self.terminated = event
        if not self._handshake.done():
            self._handshake.set_exception(connect_error(event))
            self._handshake.exception()  # retrieved even if the wait was abandoned
        reason = event.reason_phrase or "connection closed"
        for stream in list(self.streams.values()):
            self.fail(
                stream,
                ConnectionClosedError(
                    f"connection closed before the response ended: {reason}", event.error_code
                ),
            )
        self.progress.wake_all()

    def _stop_sending(self, stream: RequestStream, error_code: int) -> None:
        """The server will read no more of the request body.

        With H3_NO_ERROR that only means "I have what I need" (RFC 9114, 4.1.1): the upload
        stops and the response carries on. Any other code abandons the request; it fails
        unless a complete response arrives in the same datagram (checked once the datagram's
        remaining frames have been handled).
        """
        stream.upload_stopped = True
        self.progress.wake_all()
        if error_code == ErrorCode.H3_NO_ERROR:
            return

        def abandon() -> None:
            self.fail(
                stream,
                StreamResetError(
                    stream.stream_id,
                    error_code,
                    "the server stopped reading the request (STOP_SENDING)",
                ),
            )

        asyncio.get_running_loop().call_soon(abandon)

    def _h3_event(self, event: H3Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", -1))
        if stream is None or stream.over:
            return
        broken: str | None = None
        if isinstance(event, MalformedResponse):
            broken = event.reason
        elif isinstance(event, HeadersReceived):
            if not stream.head.done() and not _informational(event.headers):
                head = list(event.headers)
                broken = stream.framing.head(
                    int(dict(head)[b":status"]), [v for k, v in head if k == b"content-length"]
                )
                if broken is None:
                    stream.head.set_result(head)
            # 1xx heads are skipped (the final head follows); later HEADERS are trailers
        elif isinstance(event, DataReceived) and event.data:
            self.credit.delivered(event.stream_id, len(event.data))
            broken = stream.framing.data(len(event.data))
            if broken is None:
                stream.chunks.put_nowait(event.data)
        if broken is None and getattr(event, "stream_ended", False):
            if not stream.head.done():
                self.fail(stream, RemoteProtocolError("the stream ended without a response head"))
                return
            broken = stream.framing.end()
            if broken is None:
                stream.ended = True
                stream.chunks.put_nowait(None)
        if broken is not None:
            # A stream error (RFC 9114 4.1.2): this request fails, the connection carries on.
            self.cancel(stream.stream_id, ErrorCode.H3_MESSAGE_ERROR)
            self.fail(stream, RemoteProtocolError(f"malformed response: {broken}"))


def _informational(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    status = dict(headers).get(b":status", b"")
    return len(status) == 3 and status.startswith(b"1")
