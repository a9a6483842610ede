"""Real server processes for end-to-end tests: start, wait until they listen, stop cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP_DIR = ROOT / "examples" / "asgi_app"


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (HTTP/3 shares the TCP port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@dataclass
class Process:
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited ({self.proc.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not seen in log:\n{self.log()}")


def _wait_tcp(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}:\n{log.read_text()}")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


@contextlib.contextmanager
def hypercorn_pq(
    args: Sequence[str],
    log_dir: Path,
    port: int | None = None,
    cwd: Path = EXAMPLE_APP_DIR,
    env: dict[str, str] | None = None,
    wait_quic: bool = True,
    timeout: float = 30.0,
) -> Iterator[Process]:
    """Run ``hypercorn-pq ARGS`` (as ``python -m``), wait for TCP (and the QUIC log line)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"hypercorn-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "pq_quic_plugin.hypercorn_binding", *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
    try:
        if port is not None:
            _wait_tcp(port, proc, log, timeout)
        handle = Process(proc, log)
        if wait_quic:
            handle.wait_for_log("(QUIC)", timeout)
        yield handle
    finally:
        stop(proc)


def run_cli(
    args: Sequence[str], cwd: Path = EXAMPLE_APP_DIR, timeout: float = 60.0
) -> subprocess.CompletedProcess:
    """Run ``hypercorn-pq ARGS`` expecting it to exit by itself (help, errors)."""
    return subprocess.run(
        [sys.executable, "-m", "pq_quic_plugin.hypercorn_binding", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
