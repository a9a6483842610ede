"""Moving one HTTP request's bodies between a visitor and a tunnel stream, with idle limits.

Both directions stream without holding a whole body. Each has an :class:`IdleTimer`: a body
that moves no byte for the public listener's ``body-idle-timeout`` is cancelled and its tunnel
stream reset, so a visitor that stops reading (or stops sending) frees the stream other
visitors need instead of holding it until the connection dies. The request side also holds the
visitor to the ``Content-Length`` it declared: a body longer or shorter than that is never
passed on as if it were complete.
"""

from __future__ import annotations

import asyncio
from enum import Enum

from ...asgi.types import Receive, Send
from ..wire import FrameType, StreamReset, TunnelStream
from .idle import IdleTimer

__all__ = ["UploadEnd", "pump_request", "relay_response"]


class UploadEnd(Enum):
    """How the visitor's side of a request ended."""

    DISCONNECT = "disconnect"  # the visitor went away
    IDLE = "idle"  # the request body stopped moving
    LENGTH = "length"  # the body did not match its Content-Length
    RESET = "reset"  # the tunnel stream was reset


async def pump_request(
    receive: Receive, channel: TunnelStream, declared: int | None, idle_seconds: float
) -> UploadEnd:
    """The visitor's body into DATA frames, then wait for a disconnect (which cancels the
    request). Runs as its own task; returns why it stopped (it is cancelled otherwise)."""
    task = asyncio.current_task()

    def on_idle() -> None:
        if task is not None:
            task.cancel()  # the stream is reset below, once this task has stopped

    timer = IdleTimer(idle_seconds, on_idle)
    received = 0
    try:
        while True:
            message = await receive()
            timer.progress()
            if message["type"] == "http.disconnect":
                channel.reset()
                return UploadEnd.DISCONNECT
            if message["type"] != "http.request":
                continue
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            received += len(body)
            if declared is not None and (received > declared or (not more and received < declared)):
                channel.reset()
                return UploadEnd.LENGTH
            if body:
                await channel.send_data(body, end=not more)
                timer.progress()
            elif not more:
                await channel.end()
            if not more:
                break
    except asyncio.CancelledError:
        if timer.fired:
            # Reset only now: the request's reader wakes up to find this task done and says
            # 408, not a tunnel failure.
            channel.reset()
            return UploadEnd.IDLE
        raise
    except StreamReset:
        return UploadEnd.RESET
    finally:
        timer.stop()
    # Keep listening: a disconnect after the upload still cancels the request.
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            channel.reset()
            return UploadEnd.DISCONNECT


async def relay_response(channel: TunnelStream, send: Send, idle_seconds: float) -> bool:
    """The tunnel's DATA frames to the visitor, then the end of the body.

    True when the body went out whole; False when it sat idle for ``idle_seconds`` and was
    cancelled (the caller returns without ending the body, so the server aborts the response).
    A reset stream raises :class:`StreamReset`.
    """

    async def copy() -> None:
        while (frame := await channel.read()) is not None:
            timer.progress()
            if frame[0] == FrameType.DATA and frame[1]:
                await send({"type": "http.response.body", "body": frame[1], "more_body": True})
                timer.progress()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    task = asyncio.ensure_future(copy())

    def on_idle() -> None:
        channel.reset()
        task.cancel()

    timer = IdleTimer(idle_seconds, on_idle)
    try:
        await asyncio.wait({task})
    finally:
        timer.stop()
        task.cancel()
    if timer.fired:
        return False
    task.result()
    return True
