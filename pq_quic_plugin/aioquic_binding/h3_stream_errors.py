"""aioquic's client HTTP/3 connection, with a malformed response costing one request only.

aioquic's ``H3Connection`` handles every H3_MESSAGE_ERROR by closing the QUIC connection, which
fails every other request on it. Two cases made that a way for one request to take service away
from others on a shared connection (the tunnel's connector keeps one per origin):

* a ``HEAD`` request, or a ``204``/``304`` answer, whose ``Content-Length`` is (rightly, RFC 9110
  8.6) the size of a body that does not follow: aioquic compares it with the bytes received
  regardless of the request method and status, and calls it a mismatch;
* a response head that breaks one of RFC 9114's header rules, or a body that really does not
  match its length.

RFC 9114 section 4.1.2 makes a malformed message a *stream* error. So in
:class:`StreamScopedH3Connection` the length comparison is left to the caller (which knows the
request method and the status; :class:`pq_quic_plugin.message_framing.BodyFraming`), and a
malformed response head is reported as a :class:`MalformedResponse` event for its stream, whose
later frames are dropped, so the caller can reset that stream; the connection carries on.
Errors of the connection itself (QPACK, control streams, unexpected frames) still close it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from aioquic.h3.connection import H3Connection, H3Stream, MessageError
from aioquic.h3.events import H3Event

__all__ = ["MalformedResponse", "StreamScopedH3Connection"]


@dataclass
class MalformedResponse(H3Event):
    """The response on ``stream_id`` broke HTTP/3's message rules; nothing more of it will be
    delivered. The caller resets the stream (H3_MESSAGE_ERROR)."""

    stream_id: int
    reason: str


class StreamScopedH3Connection(H3Connection):
    """A client ``H3Connection`` whose message errors are per stream (see the module doc).

    For the client side only: a server must keep aioquic's own handling of malformed requests.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Streams whose response was malformed: their frames are dropped as they arrive.
        self.discarding: weakref.WeakSet[H3Stream] = weakref.WeakSet()

    def _check_content_length(self, stream: H3Stream) -> None:
        """Left to the caller: only it knows whether the response can have a body."""
        return None

    def _handle_request_or_push_frame(
        self,
        frame_type: int,
        frame_data: bytes | None,
        stream: H3Stream,
        stream_ended: bool,
    ) -> list[H3Event]:
        if stream in self.discarding:
            return []
        try:
            return super()._handle_request_or_push_frame(
                frame_type, frame_data, stream, stream_ended
            )
        except MessageError as exc:
            if stream.push_id is not None:
                raise  # server push is not used; keep aioquic's rule there
            self.discarding.add(stream)
            return [MalformedResponse(stream_id=stream.stream_id, reason=exc.reason_phrase)]

    def _receive_request_or_push_data(
        self, stream: H3Stream, data: bytes, stream_ended: bool
    ) -> list[H3Event]:
        if stream in self.discarding:
            stream.buffer = b""  # never held: the caller has reset the stream
            if stream_ended:
                stream.receiving_ended = True
            return []
        return super()._receive_request_or_push_data(stream, data, stream_ended)
