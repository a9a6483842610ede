"""A TLS echo server in its own process, and the client that handshakes with it over loopback.

``python -m bench.tls_echo CERT KEY`` listens on 127.0.0.1 with one asyncio TLS listener per
server context of :data:`SERVER_CONTEXTS`, prints their ports as one JSON line, and answers
``cpu`` on stdin with its own ``time.process_time_ns()``. Every connection is a handshake, one
byte each way, and a close. The server runs apart from the client so that each side's CPU is
its own, and asks itself for its CPU time because /proc's clock ticks (10 ms) are too coarse
for a batch of millisecond handshakes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import ROOT

SERVER_CONTEXTS = ("prefer", "require", "x25519", "off")
"""``ssl_context`` policies of the listeners (``x25519``: ``prefer``, ``groups=["x25519"]``)."""


def server_context(name: str, cert: Path | str, key: Path | str) -> ssl.SSLContext:
    """One of :data:`SERVER_CONTEXTS`, made by ``pq_quic_plugin.ssl_context``."""
    from pq_quic_plugin import ssl_context

    groups = ["x25519"] if name == "x25519" else None
    policy = "prefer" if name == "x25519" else name
    return ssl_context(policy, groups, server_side=True, certfile=cert, keyfile=key)


# --- the server process ----------------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        if await reader.read(1):
            writer.write(b"!")
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def _answer_cpu_queries() -> None:
    """Reply to each ``cpu`` line on stdin; the benchmark reads before and after a batch."""
    for line in sys.stdin:
        if line.strip() == "cpu":
            print(time.process_time_ns(), flush=True)


async def _serve(cert: str, key: str) -> None:
    logging.getLogger("pq_quic_plugin").setLevel(logging.ERROR)
    ports = {}
    for name in SERVER_CONTEXTS:
        server = await asyncio.start_server(
            _echo, "127.0.0.1", 0, ssl=server_context(name, cert, key)
        )
        ports[name] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    watcher = threading.Thread(target=_answer_cpu_queries, daemon=True)
    watcher.start()
    await asyncio.get_running_loop().run_in_executor(None, watcher.join)  # until stdin closes


# --- the benchmark's side --------------------------------------------------------------------


class EchoServer:
    """The server process seen from the benchmark: its ports and its CPU time."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.tls_echo", str(cert), str(key)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the TLS echo server exited ({self.process.wait()})")
        self.ports: dict[str, int] = json.loads(line)

    def cpu_ns(self) -> int:
        """The server process's CPU time so far, in ns."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("cpu\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # ends the server's stdin loop, and so the server
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


async def handshakes(port: int, client: ssl.SSLContext, count: int) -> Any:
    """``count`` connections one after another: connect, handshake, one byte each way, close.

    Returns the last connection's TLS object (closed, but it still says what was negotiated)
    so that the caller can check the variant is what it claims.
    """
    last = None
    for _ in range(count):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        writer.write(b"?")
        if await reader.read(1) != b"!":
            raise RuntimeError("the TLS echo server did not answer")
        last = writer.get_extra_info("ssl_object")
        writer.close()
        await writer.wait_closed()
    return last


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
