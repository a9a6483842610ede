"""hypercorn's HTTP/2: reset a response the application left unfinished, and stop buffering
responses a client does not read.

When an ASGI app returns or raises in the middle of a response body, hypercorn 0.18's HTTP/2
protocol forgets the stream without ending it: the client (a browser on the edge's TCP side,
for one) waits for the rest of the body for as long as the connection lives, or until its own
timeout. For a proxy such as the tunnel's edge, whose origin can break off mid-body, that turns
an origin failure into a hang. Here such a stream is reset with INTERNAL_ERROR, which every
client reports as an incomplete response.

hypercorn parks an app's ``send()`` of a response chunk while the stream's buffer holds more
than two frames, and releases it when a ``pop`` takes less than one frame. But when the client's
flow-control window is closed, hypercorn pops with a length of 0, gets nothing, and that empty
pop counts as "less than one frame": the app is released at once, again and again, and the whole
response piles up in the server's memory (measured: 512 MB for a client that uploads to an echo
endpoint and never reads). Here the buffer releases the app only when what is *left* in it is
below one frame, so the app waits for the client's window as it does over HTTP/1.1 and HTTP/3.

After ``keep_alive_max_requests`` requests (1,000 by default) hypercorn ends an HTTP/2
connection with a GOAWAY at once, and h2 sends nothing after its GOAWAY: the responses still in
flight on that connection were never sent, and their clients waited for the keep-alive timeout
(5 s) to learn the connection was gone (a proxy such as the tunnel's connector then retried;
a browser shows an error). Sending that GOAWAY only when no response is in flight does not
help: under steady load the client's next requests are already on the wire, above the GOAWAY's
last stream, and httpx (for one) fails them instead of retrying; RFC 9113's graceful two-step
GOAWAY is not possible with h2, which sends nothing after its first. So hypercorn-pq does not
end HTTP/2 connections after a number of requests; idle ones still close after the keep-alive
timeout, and HTTP/1.1 keeps the limit (there it is a clean ``Connection: close``).

Installed per connection by :mod:`.hooks`; hypercorn is not edited.
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any

import h2.errors
import h2.exceptions
from hypercorn.protocol.events import Body, Data, StreamClosed
from hypercorn.protocol.h2 import BUFFER_LOW_WATER, H2Protocol, StreamBuffer
from hypercorn.protocol.http_stream import HTTPStream

logger = logging.getLogger("pq_quic_plugin.hypercorn")


def harden_h2(protocol: H2Protocol) -> None:
    """Give one hypercorn ``H2Protocol`` the reset-on-unfinished-response rule and bounded
    response buffers."""
    stock_stream_send = protocol.stream_send
    bounded: set[int] = set()  # HTTP/2 never reuses a stream id
    config = copy.copy(protocol.config)
    config.keep_alive_max_requests = sys.maxsize  # hypercorn's own GOAWAY strands responses
    protocol.config = config

    async def stream_send(event: Any) -> None:
        if isinstance(event, (Body, Data)) and event.stream_id not in bounded:
            buffer = protocol.stream_buffers.get(event.stream_id)
            if buffer is not None:
                buffer.pop = _watermark_pop(buffer)  # type: ignore[method-assign]
                bounded.add(event.stream_id)
        if isinstance(event, StreamClosed):
            bounded.discard(event.stream_id)
            await _reset_if_unfinished(protocol, event.stream_id)
        await stock_stream_send(event)

    protocol.stream_send = stream_send  # type: ignore[method-assign]


def _watermark_pop(buffer: StreamBuffer) -> Any:
    """``StreamBuffer.pop`` that resumes the app's ``send()`` only once less than one frame is
    left to send (stock: whenever a pop returned less than one frame, even nothing at all)."""

    async def pop(max_length: int) -> bytes:
        length = min(len(buffer.buffer), max_length)
        data = bytes(buffer.buffer[:length])
        del buffer.buffer[:length]
        if len(buffer.buffer) < BUFFER_LOW_WATER:
            await buffer._paused.set()
        if not buffer.buffer:
            await buffer._is_empty.set()
        return data

    return pop


async def _reset_if_unfinished(protocol: H2Protocol, stream_id: int) -> None:
    buffer = protocol.stream_buffers.get(stream_id)
    if (
        buffer is None
        or buffer._complete
        or not isinstance(protocol.streams.get(stream_id), HTTPStream)
    ):
        return  # a complete response (its end is queued), or not an HTTP response at all
    try:
        protocol.connection.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
        await protocol._flush()
    except h2.exceptions.ProtocolError:  # the stream is already closed
        pass
    await buffer.close()
    protocol.stream_buffers.pop(stream_id, None)
    try:
        protocol.priority.remove_stream(stream_id)
    except Exception:  # noqa: BLE001 - priority.MissingStreamError: already gone
        pass
