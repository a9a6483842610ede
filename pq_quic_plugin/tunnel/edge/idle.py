"""An idle timer for one body in flight: no byte for ``seconds``, and it is cancelled.

A visitor that stops reading a response (or stops sending its request body) leaves the edge's
write (or read) waiting forever, and with it a tunnel stream that other visitors need. Timing
each write with ``asyncio.wait_for`` would cost a task per chunk on a bulk transfer; instead
:class:`IdleTimer` keeps one timer handle, and progress only records the time. When the timer
fires it re-arms itself for the last progress plus ``seconds``, or, if there was none, calls
``on_idle`` once (which resets the stream and cancels the task that was stuck).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["IdleTimer"]


class IdleTimer:
    """Calls ``on_idle`` once when :meth:`progress` has not been called for ``seconds``.

    Armed from construction until :meth:`stop`; ``fired`` says whether it went off.
    """

    def __init__(self, seconds: float, on_idle: Callable[[], None]) -> None:
        self.seconds = seconds
        self.fired = False
        self._on_idle = on_idle
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            self._last + seconds, self._check
        )

    def progress(self) -> None:
        """Bytes moved: the body is not idle."""
        self._last = self._loop.time()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        due = self._last + self.seconds
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self.fired = True
        self._on_idle()
