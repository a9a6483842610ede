"""Send backpressure: one rule for every writer of a QUIC stream we own.

aioquic accepts any amount of stream data at once and keeps what the peer has not acknowledged
in memory, so a writer that produces faster than the peer reads (a 100 MB download to a slow
client) would buffer the whole body. Every writer of ours (the HTTP/3 client's uploads, tunnel
channels in both directions, hypercorn-pq's responses) therefore waits while more than
:data:`SEND_BUFFER_HIGH` bytes of its stream are unacknowledged. The writers differ only in how
they can wait: our own protocols see every datagram arrive (:class:`ProgressSignal`),
hypercorn's worker (asyncio or trio) only offers a sleep. Both go through
:func:`wait_for_send_room`.

Acknowledged bytes are not the whole story: a peer whose reader is slow keeps the stream's
flow-control window shut, and aioquic would go on buffering what the writer gives it (up to
:data:`SEND_BUFFER_HIGH`) without sending any of it. A relay (the connector between an origin
and the edge) would then take half a megabyte from the origin for each stalled stream. So a
writer also waits while more than :data:`SEND_BLOCKED_HIGH` bytes are beyond the peer's
window: the QUIC counterpart of TCP's ``TCP_NOTSENT_LOWAT``. Bytes the congestion window holds
back do not count, so a fast reader's throughput is unchanged.

A writer whose reader stopped (a visitor that never reads its download) may wait for minutes,
and a tunnel connection can carry dozens of them. Waiting must then cost nothing: a
:class:`ProgressSignal` checks each waiter's own condition when a datagram arrives and wakes
only the writers whose stream has room again (or ended), not every writer on every
acknowledgement; and the safety-net timeouts, and a sleeping writer's polls, back off to
:data:`_IDLE_WAIT` while nothing moves, so a stalled stream costs a few wake-ups a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aioquic.quic.connection import QuicConnection

from .facade import SendState, send_state, unacked_send_bytes

__all__ = [
    "SEND_BLOCKED_HIGH",
    "SEND_BUFFER_HIGH",
    "ProgressSignal",
    "SendStalled",
    "wait_for_all_acked",
    "wait_for_send_room",
]

#: Unacknowledged bytes per stream above which a writer waits (two 256 KiB windows in flight).
SEND_BUFFER_HIGH = 512 * 1024
#: Bytes written beyond the peer's stream window (MAX_STREAM_DATA) above which a writer waits:
#: enough to fill the window's next step the moment it opens (a quarter of a 64 KiB start
#: window is 16 KiB).
SEND_BLOCKED_HIGH = 32 * 1024

#: The longest wait between two checks while the stream makes progress (acknowledgements
#: usually wake a :class:`ProgressSignal` waiter sooner).
_MAX_WAIT = 0.02
#: The longest wait between two checks once nothing moved for a while (a stalled reader): a
#: sleeping writer notices the stall ending at most this late; a signalled one at once.
_IDLE_WAIT = 0.25


class SendStalled(Exception):
    """The peer acknowledged nothing for longer than the caller's stall timeout."""


class ProgressSignal:
    """Wakes writers when a datagram gave them what they wait for.

    A protocol calls :meth:`notify` from ``datagram_received``: each waiter registered a cheap
    ``ready()`` check (its stream has room again) and only waiters whose check passes are
    woken. Waking every writer on every acknowledgement would cost, with 40 stalled streams,
    40 task switches per datagram for nothing. Events that end waits without a datagram saying
    so (a stream failed or reset locally, the connection closed) call :meth:`wake_all`.
    :meth:`wait` also returns after ``timeout``, a safety net.
    """

    def __init__(self) -> None:
        self._waiters: dict[asyncio.Future[None], Callable[[], bool] | None] = {}

    def notify(self) -> None:
        """Something arrived: wake the waiters whose ``ready()`` now holds (all without one)."""
        if not self._waiters:
            return
        for waiter, ready in list(self._waiters.items()):
            if ready is None or ready():
                del self._waiters[waiter]
                _wake(waiter)

    def wake_all(self) -> None:
        """Wake every waiter (a stream or the connection ended: they re-check why they wait)."""
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters:
            _wake(waiter)

    async def wait(self, timeout: float, ready: Callable[[], bool] | None = None) -> None:
        """Until a :meth:`notify` after which ``ready()`` holds (any :meth:`notify` without
        ``ready``), a :meth:`wake_all`, or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters[waiter] = ready
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.pop(waiter, None)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def wait_for_send_room(
    quic: QuicConnection,
    stream_id: int,
    wait: ProgressSignal | Callable[[float], Awaitable[object]],
    *,
    stopped: Callable[[], bool] | None = None,
    stall_timeout: float | None = None,
) -> bool:
    """Wait until ``stream_id`` has at most :data:`SEND_BUFFER_HIGH` bytes unacknowledged and
    at most :data:`SEND_BLOCKED_HIGH` bytes beyond the peer's window.

    ``wait`` is how the caller waits between checks: a :class:`ProgressSignal` (woken when a
    datagram gives this stream room; the caller calls its ``wake_all`` when the stream fails
    locally) or the worker's sleep. The interval between checks grows
    from 1 ms to 20 ms while bytes are being acknowledged, and to :data:`_IDLE_WAIT` while
    none are. Returns True when there is room, False when the stream can no longer be written
    (reset, gone, connection closing, or ``stopped()`` says so). Raises :class:`SendStalled`
    when no byte was acknowledged (and the window did not open) for ``stall_timeout`` seconds.
    """

    def over() -> bool:
        return send_state(quic, stream_id) in (SendState.GONE, SendState.RESET) or (
            stopped is not None and stopped()
        )

    def has_room() -> bool:  # runs for every datagram while waiting: keep it this cheap
        return _queued(quic, stream_id) is None

    delay = 0.001
    queued = _queued(quic, stream_id)
    since = time.monotonic()
    while queued is not None:
        if over():
            return False
        if isinstance(wait, ProgressSignal):
            await wait.wait(delay, has_room)
        else:
            await wait(delay)
        now = _queued(quic, stream_id)
        if now is None or now < queued:  # acknowledged, or the window opened
            since = time.monotonic()
            delay = min(delay * 2, _MAX_WAIT)
        else:
            idle = time.monotonic() - since
            if stall_timeout is not None and idle > stall_timeout:
                raise SendStalled(f"the peer acknowledged nothing for {stall_timeout:g}s")
            delay = min(delay * 2, _MAX_WAIT if idle < _IDLE_WAIT else _IDLE_WAIT)
            if stall_timeout is not None:
                delay = min(delay, max(0.001, stall_timeout - idle))
        queued = now
    return not over()


def _queued(quic: QuicConnection, stream_id: int) -> tuple[int, int] | None:
    """None when a writer of ``stream_id`` may go on; else what holds it back, as the
    (unacknowledged bytes, bytes beyond the peer's window) pair, which shrinks as it moves."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return None
    buffered = len(stream.sender._buffer)
    blocked = stream.sender._buffer_stop - stream.max_stream_data_remote
    if buffered <= SEND_BUFFER_HIGH and blocked <= SEND_BLOCKED_HIGH:
        return None
    return buffered, blocked


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
