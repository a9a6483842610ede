"""``PQ_TUNNEL_PROFILE=PATH``: a cProfile of a whole ``pq-tunnel edge`` or ``pq-tunnel run``.

Where the tunnel's CPU goes is a question of the running processes under real traffic (the
benchmark's, or a reproduction of a slow path), not of a unit test, so the two long-running
programs can profile themselves: with the variable set, the program runs under
:mod:`cProfile` and writes the statistics to ``PATH`` when it exits (a normal stop: SIGINT or
SIGTERM, as ``tools.processes.stop`` sends). ``{role}`` and ``{pid}`` in ``PATH`` are replaced
by ``edge`` or ``connector`` and the process ID, so one variable serves a whole chain started
from one shell. Read the file with ``python -m pstats PATH`` (docs/benchmarks.md, "Profiling
the tunnel"). Unset (the default), nothing is imported and nothing changes.

The clock is the process's CPU time, not the wall clock: on a loaded machine a wall-clock
profile charges a ``socket.send`` with the time the process sat descheduled after waking its
peer, which is not what it costs. ``PQ_TUNNEL_PROFILE_CLOCK=wall`` gives the wall clock (where
the time goes while waiting matters, say for latency).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = ["CLOCK_ENV", "PROFILE_ENV", "profile_path", "profiled"]

PROFILE_ENV = "PQ_TUNNEL_PROFILE"
CLOCK_ENV = "PQ_TUNNEL_PROFILE_CLOCK"

logger = logging.getLogger("pq_quic_plugin.tunnel")


def profile_path(role: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Where this process writes its profile (``None``: the variable is unset or empty)."""
    template = environ.get(PROFILE_ENV, "")
    if not template:
        return None
    return template.replace("{role}", role).replace("{pid}", str(os.getpid()))


@contextlib.contextmanager
def profiled(role: str) -> Iterator[None]:
    """Run the block under cProfile when :data:`PROFILE_ENV` is set; write the file on exit,
    whether the block returns or raises."""
    path = profile_path(role)
    if path is None:
        yield
        return
    import cProfile
    import time

    wall = os.environ.get(CLOCK_ENV, "").lower() == "wall"
    profile = cProfile.Profile(time.perf_counter if wall else time.process_time)
    clock = "wall" if wall else "CPU"
    logger.info("profiling this %s into %s (%s, %s clock)", role, path, PROFILE_ENV, clock)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        try:
            profile.dump_stats(path)
        except OSError as exc:
            logger.warning("%s: cannot write %s: %s", PROFILE_ENV, path, exc.strerror or exc)
