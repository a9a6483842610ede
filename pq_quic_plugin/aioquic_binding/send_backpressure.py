"""Send backpressure: one rule for every writer of a QUIC stream we own.

aioquic accepts any amount of stream data at once and keeps what the peer has not acknowledged
in memory, so a writer that produces faster than the peer reads (a 100 MB download to a slow
client) would buffer the whole body. Every writer of ours (the HTTP/3 client's uploads, tunnel
channels in both directions, hypercorn-pq's responses) therefore waits while more than
:data:`SEND_BUFFER_HIGH` bytes of its stream are unacknowledged. The writers differ only in how
they can wait: our own protocols are woken by the next datagram (:class:`ProgressSignal`),
hypercorn's worker (asyncio or trio) only offers a sleep. Both go through
:func:`wait_for_send_room`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aioquic.quic.connection import QuicConnection

from .facade import SendState, send_buffered, send_state, unacked_send_bytes

__all__ = [
    "SEND_BUFFER_HIGH",
    "ProgressSignal",
    "SendStalled",
    "wait_for_all_acked",
    "wait_for_send_room",
]

#: Unacknowledged bytes per stream above which a writer waits (two 256 KiB windows in flight).
SEND_BUFFER_HIGH = 512 * 1024

#: The longest single wait between two checks; acknowledgements usually wake us sooner.
_MAX_WAIT = 0.02


class SendStalled(Exception):
    """The peer acknowledged nothing for longer than the caller's stall timeout."""


class ProgressSignal:
    """Wakes writers when a datagram arrives (it may carry acknowledgements or credit).

    A protocol calls :meth:`notify` from ``datagram_received``; :meth:`wait` returns at the
    next notification or after ``timeout``, whichever is first. Cheaper and quicker than a
    fixed polling interval: writers wake exactly when something may have changed.
    """

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


async def wait_for_send_room(
    quic: QuicConnection,
    stream_id: int,
    wait: Callable[[float], Awaitable[object]],
    *,
    stopped: Callable[[], bool] | None = None,
    stall_timeout: float | None = None,
) -> bool:
    """Wait until ``stream_id`` has at most :data:`SEND_BUFFER_HIGH` bytes unacknowledged.

    ``wait(seconds)`` is how the caller waits between checks (a :class:`ProgressSignal` or
    the worker's sleep); the interval grows from 1 ms to 20 ms. Returns True when there is
    room, False when the stream can no longer be written (reset, gone, connection closing, or
    ``stopped()`` says so). Raises :class:`SendStalled` when no byte was acknowledged for
    ``stall_timeout`` seconds.
    """
    delay = 0.001
    buffered = send_buffered(quic, stream_id)
    since = time.monotonic()
    while buffered > SEND_BUFFER_HIGH:
        if send_state(quic, stream_id) in (SendState.GONE, SendState.RESET):
            return False
        if stopped is not None and stopped():
            return False
        await wait(delay)
        delay = min(delay * 2, _MAX_WAIT)
        now = send_buffered(quic, stream_id)
        if now < buffered:
            since = time.monotonic()
        elif stall_timeout is not None and time.monotonic() - since > stall_timeout:
            raise SendStalled(f"the peer acknowledged nothing for {stall_timeout:g}s")
        buffered = now
    return send_state(quic, stream_id) not in (SendState.GONE, SendState.RESET) and not (
        stopped is not None and stopped()
    )


async def wait_for_all_acked(
    quic: QuicConnection,
    wait: Callable[[float], Awaitable[object]],
    timeout: float,
    *,
    stopped: Callable[[], bool] | None = None,
) -> int:
    """Wait up to ``timeout`` seconds until the peer acknowledged every byte written to any
    stream of ``quic`` (see :func:`.facade.unacked_send_bytes`), for a drain that must not cut
    a response whose writer already finished. Returns what is still unacknowledged (0: all).
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    left = unacked_send_bytes(quic)
    while left and not (stopped is not None and stopped()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await wait(min(delay, remaining))
        delay = min(delay * 2, _MAX_WAIT)
        left = unacked_send_bytes(quic)
    return left
