"""Closed-loop request load over HTTP/3, and the summary of what it achieved.

A closed loop keeps a fixed number of requests in flight, issuing the next as soon as one
finishes; bounded both in time and in request count so that a quick run stays quick. The two
HTTP/3 load shapes (a new connection per request; a few connections with streams in flight)
are shared by the serving and the tunnel benchmarks so that their numbers mean the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .stats import summarize


async def closed_loop(
    workers: Sequence[Callable[[], Awaitable[bool]]], duration: float, limit: int
) -> tuple[list[float], int, float]:
    """Run each worker's request back to back until ``duration`` s or ``limit`` requests.

    A closed loop: as many requests in flight as there are workers, a new one as soon as one
    finishes. A request that returns False or raises is an error, the run goes on. Returns the
    latencies in ms of the successful requests, the error count and the elapsed seconds.
    """
    latencies: list[float] = []
    errors = issued = 0
    deadline = time.perf_counter() + duration

    async def worker(request: Callable[[], Awaitable[bool]]) -> None:
        nonlocal errors, issued
        while time.perf_counter() < deadline and issued < limit:
            issued += 1
            t0 = time.perf_counter()
            try:
                ok = await request()
            except Exception:  # noqa: BLE001 - counted, the run goes on
                ok = False
            if ok:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in workers))
    return latencies, errors, time.perf_counter() - started


def load_summary(slices: Sequence[dict[str, Any]], cpu: Sequence[str]) -> dict[str, Any]:
    """Totals of closed-loop slices (``latencies``, ``errors``, ``elapsed``, CPU seconds under
    each key in ``cpu``): requests/s, latency percentiles, CPU ms per request."""
    latencies = [x for s in slices for x in s["latencies"]]
    n = len(latencies)
    elapsed = sum(s["elapsed"] for s in slices)
    return {
        "slices": len(slices),
        "requests_ok": n,
        "errors": sum(s["errors"] for s in slices),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(n / elapsed, 1) if elapsed else 0.0,
        "requests_per_s_each_slice": [
            round(len(s["latencies"]) / s["elapsed"], 1) for s in slices if s["elapsed"]
        ],
        "latency_ms": summarize(latencies, 2),
        **{
            f"{key}_ms_per_request": round(sum(s[key] for s in slices) * 1000 / n, 3) if n else None
            for key in cpu
        },
    }


class BackgroundCloses:
    """Connection closes left running while the measured code goes on.

    aioquic's close lingers three PTOs in the closing state; a browser would not wait for it, so
    neither does a latency sample. Call :meth:`wait` before the event loop ends.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def close(self, connection: Any) -> None:
        """Start leaving the ``async with`` context ``connection`` (aioquic's ``connect()``)."""
        task = asyncio.create_task(connection.__aexit__(None, None, None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout: float = 10) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)


async def new_connection_per_request(
    url: str, config: Any, workers: int, duration: float, limit: int
) -> tuple[list[float], int, float]:
    """``workers`` clients in a closed loop, each request on a fresh connection (a handshake)."""
    from pq_quic_plugin.http3 import open_session

    closes = BackgroundCloses()

    async def one() -> bool:
        cm = open_session(url, config)
        session = await cm.__aenter__()
        try:
            return (await session.request("GET", "/", timeout=10)).status == 200
        finally:
            closes.close(cm)

    result = await closed_loop([one] * workers, duration, limit)
    await closes.wait()
    return result


async def reused_connections(
    url: str,
    config: Any,
    connections: int,
    streams: int,
    duration: float,
    limit: int,
    path: str = "/",
) -> tuple[list[float], int, float]:
    """``connections`` HTTP/3 connections with ``streams`` requests for ``path`` in flight on
    each; the first request on each connection (its warm-up) is not measured."""
    from pq_quic_plugin.http3 import open_session

    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(open_session(url, config)) for _ in range(connections)
        ]
        for s in sessions:
            await s.request("GET", path)

        def request(session: Any) -> Callable[[], Awaitable[bool]]:
            async def one() -> bool:
                return (await session.request("GET", path, timeout=10)).status == 200

            return one

        return await closed_loop(
            [request(s) for s in sessions for _ in range(streams)], duration, limit
        )
