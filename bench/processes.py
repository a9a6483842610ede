"""CPU time and memory of processes, read from /proc.

The benchmarks run client and servers on the same few cores, so a server's requests/s alone
says little: what each side spent in CPU (and what *other* processes took meanwhile) is what
makes two runs comparable. Linux only; elsewhere the readings come back empty or NaN.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, session id, utime + stime in clock ticks) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[0] is field 3 (state): ppid is field 4, session 6, utime 14, stime 15
        table[int(entry)] = (int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]))
    return table


def process_tree(
    roots: Iterable[int],
    table: dict[int, tuple[int, int, int]] | None = None,
) -> list[int]:
    """The ``roots`` and all their living descendants (workers, sshd's per-connection child)."""
    table = proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds used so far by the processes below ``roots`` (exited children not counted)."""
    table = proc_table()
    return sum(table[pid][2] for pid in process_tree(roots, table)) / CLK_TCK


def session_cpu_seconds(session: int) -> float:
    """CPU seconds used so far by every living process of one session (a server's workers)."""
    return sum(cpu for _, sid, cpu in proc_table().values() if sid == session) / CLK_TCK


def _runtime_seconds(pid: int) -> float | None:
    """On-CPU time of every thread of ``pid`` from /proc/PID/task/*/sched (the scheduler's
    ``se.sum_exec_runtime``, ns precision), or None where the kernel does not expose it."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/sched", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("se.sum_exec_runtime"):
                        total += float(line.split(":", 1)[1]) / 1000  # ms
                        break
                else:
                    return None
        except OSError:
            continue  # the thread ended meanwhile
    return total


def session_runtime_seconds(session: int) -> float:
    """Like :func:`session_cpu_seconds`, to the nanosecond instead of the 10 ms clock tick.

    Ticks are too coarse for a slice that costs a server a few hundred ms; the scheduler's own
    count is exact where /proc/PID/sched exists (CONFIG_SCHED_DEBUG), else ticks it is.
    """
    pids = [pid for pid, (_, sid, _) in proc_table().items() if sid == session]
    precise = [_runtime_seconds(pid) for pid in pids]
    if any(p is None for p in precise):
        return session_cpu_seconds(session)
    return sum(p for p in precise if p is not None)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of one process in MB (``VmHWM`` for the peak), from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def other_share(busy: float, ours: float, wall: float) -> float:
    """Share of all cores that processes other than ours kept busy over ``wall`` seconds.

    ``busy`` is the change of :func:`system_busy_seconds` over that time, ``ours`` the CPU
    seconds the measured processes used. Near 0 on a quiet machine; a shared CI box or a
    concurrent test run shows up here, which says how far to trust the numbers beside it.
    """
    return max(busy - ours, 0.0) / (wall * (os.cpu_count() or 1))


class OtherLoad:
    """:func:`other_share` of a ``with`` block where this process is the one measured."""

    def __enter__(self) -> OtherLoad:
        self._busy, self._own = system_busy_seconds(), time.process_time()
        self._wall = time.perf_counter()
        self.share = float("nan")
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self._wall
        self.share = round(
            other_share(system_busy_seconds() - self._busy, time.process_time() - self._own, wall),
            3,
        )
        print(f"  other processes used {100 * self.share:.0f}% of the cores meanwhile", flush=True)
