"""Child processes on loopback: start one with its output in a log file, stop its whole group.

Every server the demo, the tests and the benchmarks run is a real process whose output goes to a
file, so a failure can show what the process said; each runs in its own session so that stopping
it also stops the workers it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: How many log lines a readiness or exit error shows.
LOG_TAIL_LINES = 40


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (HTTP/3 shares the TCP port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
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
