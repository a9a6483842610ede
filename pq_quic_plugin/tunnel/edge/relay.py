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
from collections.abc import Callable
from enum import Enum

from ...asgi.types import Receive, Send
from ..wire import FrameType, StreamReset, TunnelStream
from .idle import IdleTimer

__all__ = ["VISITOR_WRITE", "UploadEnd", "pump_request", "relay_response"]

#: The most response body the edge joins into one message for the visitor's connection (one
#: TLS write), from tunnel DATA frames that are already in.
VISITOR_WRITE = 256 * 1024


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

    Runs in the request's own task (no task per response): the idle timer resets the stream
    and cancels this task, and the cancellation that the timer caused is turned into False
    here. DATA frames that arrived together go to the visitor as one body message (up to
    :data:`VISITOR_WRITE` bytes, never waiting for more), so a bulk response costs one TLS write
    per TCP read from the connector, not one per tunnel frame.
    """
    task = asyncio.current_task()

    def on_idle() -> None:
        channel.reset()
        if task is not None:
            task.cancel()

    timer = IdleTimer(idle_seconds, on_idle)
    ready = getattr(channel, "read_ready", None)  # transports that can say what is in already
    try:
        while (frame := await channel.read()) is not None:
            timer.progress()
            if frame[0] != FrameType.DATA or not frame[1]:
                continue
            body = frame[1] if ready is None else _joined(frame[1], ready)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            timer.progress()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not timer.fired:
            raise
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: this one is handled
        if uncancel is not None:
            uncancel()
        return False
    finally:
        timer.stop()
    return True


def _joined(first: bytes, ready: Callable[[], tuple[FrameType, bytes] | None]) -> bytes:
    """``first`` plus the DATA payloads already received after it, up to
    :data:`VISITOR_WRITE` bytes (other frames in between are skipped, as in the loop)."""
    parts: list[bytes] | None = None
    size = len(first)
    while size < VISITOR_WRITE and (frame := ready()) is not None:
        if frame[0] == FrameType.DATA and frame[1]:
            if parts is None:
                parts = [first]
            parts.append(frame[1])
            size += len(frame[1])
    return first if parts is None else b"".join(parts)
