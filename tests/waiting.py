"""Wait for a condition instead of sleeping a fixed time.

A fixed sleep is either too short on a busy machine (a flaky test) or too long everywhere (a slow
one). These poll a predicate and fail with what was awaited, so a timeout reads as a finding
("the server's close never came") rather than as an unexplained assertion further down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``predicate`` until it is true; return the seconds it took.

    Raises ``AssertionError("timed out after ...s waiting for WHAT")`` after ``timeout``.
    """
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


async def wait_until_async(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.01
) -> float:
    """:func:`wait_until` for a running event loop: other tasks run while it polls."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def wait_until_steady_async(
    value: Callable[[], float], quiet: float, timeout: float, what: str, interval: float = 0.05
) -> float:
    """Wait until ``value()`` has not changed for ``quiet`` seconds; return its last value.

    For "it stops by itself" scenarios, e.g. an upload that flow control holds back: the
    condition is that the byte count stops growing, however long that takes on this machine.
    """
    started = time.monotonic()
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what} (still changing: {last})"
            )
        await asyncio.sleep(interval)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
    return last
