"""Child processes on loopback: start one with its output in a log file, stop its whole group.

Every server the demo, the tests and the benchmarks run is a real process whose output goes to a
file, so a failure can show what the process said; each runs in its own session so that stopping
it also stops the workers it spawned.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: How many log lines a readiness or exit error shows.
LOG_TAIL_LINES = 40


#: Where :func:`free_port` looks when the kernel's ephemeral range cannot be read.
_DEFAULT_EPHEMERAL = (32768, 60999)
#: The lowest port :func:`free_port` hands out (well clear of the registered services below it).
_LOWEST_PORT = 10000
#: Ports this process has handed out, never handed out twice (a server may not have bound yet).
_handed_out: set[int] = set()
_random = random.Random(os.getpid() ^ time.monotonic_ns())


def _ephemeral_range() -> tuple[int, int]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(part) for part in text.split())
        return low, high
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def _bindable(port: int) -> bool:
    """Whether TCP and UDP can both bind ``port`` on 127.0.0.1 (HTTP/3 shares the TCP port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1, chosen *below* the ephemeral range.

    Why not "bind port 0 and close": the kernel hands that same range to every outgoing
    connection and every port-0 bind on the machine, so between our close and the server's bind
    a client socket of another test can take it. CI once failed exactly so ("address already in
    use" for an edge's port). Below the ephemeral range the kernel never assigns a port by
    itself; this process never hands one out twice; the choice is random, so two processes
    picking at once almost never meet.
    """
    low, _ = _ephemeral_range()
    if low - 1 > _LOWEST_PORT:
        for _ in range(500):
            port = _random.randint(_LOWEST_PORT, low - 1)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    for _ in range(50):  # no room below the ephemeral range: the kernel's choice, still unique
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port")


@dataclass
class Process:
    """A running child process and the file its stdout and stderr go to."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of the log, for error messages (a whole log can be megabytes)."""
        tail = self.log().splitlines()[-lines:]
        return "\n".join(tail) if tail else "(the log is empty)"

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Wait until ``text`` appears in the log.

        For tests about what a process *says* (a refusal is logged, a report was sent); whether
        a process is ready to serve is probed instead (:mod:`tools.readiness`).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.exited():
                raise RuntimeError(
                    f"process exited ({self.proc.returncode}) before logging {text!r}; "
                    f"its log ends:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise TimeoutError(
            f"{text!r} not logged within {timeout:.0f}s; the log ends:\n{self.log_tail()}"
        )


def start(
    cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Process:
    """Start ``cmd`` in its own session, stdout and stderr to ``log``, unbuffered."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
    return Process(proc, log)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGINT to the process group (a graceful shutdown), SIGKILL if that takes too long."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
