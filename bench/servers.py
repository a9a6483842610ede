"""Server subprocesses for the serving benchmarks: one per variant, each in its own session.

hypercorn forks its workers, so a server's CPU time is that of its whole session, read from
/proc (to the nanosecond where the kernel allows); the session also lets :meth:`Server.stop`
end the workers with the parent.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tools import loopback

from . import ROOT
from .processes import session_runtime_seconds


class Server:
    """One server subprocess in its own session (so its workers can be found and stopped)."""

    def __init__(self, label: str, argv: list[str], port: int, log: Path) -> None:
        self.label, self.argv, self.port, self.log_path = label, argv, port, log
        self.process: loopback.Process | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until its port takes TCP connections.

        Not its log: hypercorn-pq names "(QUIC)" before it serves. The UDP socket is bound
        with the TCP one, so a QUIC client's first datagram waits in the kernel if it is early.
        """
        self.process = loopback.start(self.argv, self.log_path, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.label} did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """On-CPU time of every process in the server's session (hypercorn forks workers)."""
        assert self.process is not None
        return session_runtime_seconds(self.process.proc.pid)

    def stop(self) -> None:
        if self.process is not None:
            loopback.stop(self.process.proc)


def stop_all(servers: dict[str, Server], tail: int = 2000) -> dict[str, str]:
    """Stop every server; the end of each one's log, by label, for the results file (what a
    reader needs when a figure looks wrong)."""
    for server in servers.values():
        server.stop()
    return {label: server.log()[-tail:] for label, server in servers.items()}


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free for TCP and UDP on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < count:
        port = loopback.free_port()
        if port not in ports:
            ports.append(port)
    return ports


def two_ports() -> tuple[int, int]:
    """Two distinct ports free for TCP and UDP on 127.0.0.1."""
    p1, p2 = free_ports(2)
    return p1, p2
