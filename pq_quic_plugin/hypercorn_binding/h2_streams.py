"""hypercorn's HTTP/2: reset a response the application left unfinished.

When an ASGI app returns or raises in the middle of a response body, hypercorn 0.18's HTTP/2
protocol forgets the stream without ending it: the client (a browser on the edge's TCP side,
for one) waits for the rest of the body for as long as the connection lives, or until its own
timeout. For a proxy such as the tunnel's edge, whose origin can break off mid-body, that turns
an origin failure into a hang. Here such a stream is reset with INTERNAL_ERROR, which every
client reports as an incomplete response. Installed per connection by :mod:`.hooks`; hypercorn
is not edited.
"""

from __future__ import annotations

import logging
from typing import Any

import h2.errors
import h2.exceptions
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.http_stream import HTTPStream

logger = logging.getLogger("pq_quic_plugin.hypercorn")


def harden_h2(protocol: H2Protocol) -> None:
    """Give one hypercorn ``H2Protocol`` the reset-on-unfinished-response rule."""
    stock_stream_send = protocol.stream_send

    async def stream_send(event: Any) -> None:
        if isinstance(event, StreamClosed):
            await _reset_if_unfinished(protocol, event.stream_id)
        await stock_stream_send(event)

    protocol.stream_send = stream_send  # type: ignore[method-assign]


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
