"""Sending a request body with backpressure, beside the response.

The upload runs as its own task so a server that answers while still reading (an echo) cannot
deadlock against a client that would only read after writing. It takes the next chunk from the
caller only while less than :data:`SEND_BUFFER_HIGH` bytes of the stream wait unacknowledged,
so a fast producer and a slow server do not fill the client's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

from ..aioquic_binding.send_backpressure import SEND_BUFFER_HIGH, SendStalled, wait_for_send_room
from .errors import WriteTimeout
from .protocol import H3ClientProtocol, RequestStream

__all__ = ["SEND_BUFFER_HIGH", "send_body"]


async def send_body(
    protocol: H3ClientProtocol,
    stream: RequestStream,
    body: AsyncIterable[bytes],
    stall_timeout: float,
) -> None:
    """Write ``body`` to the request stream, then end it.

    Stops quietly when the request is over for another reason (the server reset it, stopped
    reading, or the connection closed). If the server takes no bytes for ``stall_timeout``
    seconds, or ``body`` raises, the request is cancelled on the wire and fails with
    :class:`WriteTimeout` or with the body's own exception.
    """
    stream_id = stream.stream_id

    def stopped() -> bool:
        return protocol.terminated is not None or stream.error is not None or stream.upload_stopped

    try:
        async for chunk in body:
            if stopped():
                return
            if not chunk:
                continue
            protocol.send_data(stream_id, bytes(chunk), end_stream=False)
            try:
                room = await wait_for_send_room(
                    protocol.quic,
                    stream_id,
                    protocol.progress,
                    stopped=stopped,
                    stall_timeout=stall_timeout,
                )
            except SendStalled:
                protocol.cancel(stream_id)
                protocol.fail(
                    stream, WriteTimeout(f"the server took no request body for {stall_timeout:g}s")
                )
                return
            if not room:
                return
        if not stopped():
            protocol.send_data(stream_id, b"", end_stream=True)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the caller's body failed: cancel the request
        if stopped():
            return  # the stream was already over; nothing to report
        protocol.cancel(stream_id)
        protocol.fail(stream, exc)
