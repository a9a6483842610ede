"""Several pq-tunnel edges sharing one Redis on loopback (issue 16): the cluster tests and the
relay benchmark start exactly these processes.

``cluster_edge_config`` writes an edge's ``edge.yaml`` with ``store: redis://...``, its own
``edge-id`` and a ``cluster`` section (relay address, the shared secret file, a short
registry TTL); ``start_cluster_edge`` starts it and returns once its public, connector and
relay listeners all answer. ``redis_process`` is a throw-away ``redis-server`` (no
persistence) for the benchmark; the tests have a fuller one (tests/redis_util.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pq_quic_plugin.devcert import DevPKI

from .loopback import start_edge, write_edge_config
from .processes import Process, free_port, start, stop
from .readiness import quic_answers, tcp_accepts, wait_ready

__all__ = [
    "ClusterEdge",
    "cluster_edge_config",
    "cluster_secret",
    "redis_process",
    "start_cluster_edge",
]


@dataclass
class ClusterEdge:
    """One edge of a loopback cluster: its config file and the ports it listens on."""

    name: str
    config: Path
    public: int
    connectors: int
    metrics: int
    relay: int
    process: Process | None = None

    @property
    def edge_id(self) -> str:
        return f"edge-{self.name}"


def cluster_secret(directory: Path, name: str = "cluster.key") -> Path:
    """A cluster secret file (32 random bytes, mode 0600), made once per directory."""
    path = directory / name
    if not path.exists():
        path.write_bytes(os.urandom(32))
        path.chmod(0o600)
    return path


def cluster_edge_config(
    directory: Path,
    pki: DevPKI,
    store: str,
    name: str,
    *,
    secret: Path | None = None,
    ttl: float = 3.0,
    relay_protocol: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ClusterEdge:
    """Write ``edge-NAME.yaml``: loopback listeners on fresh ports, ``store``, ``edge-id``
    ``edge-NAME`` and a ``cluster`` section; ``secret`` defaults to :func:`cluster_secret`,
    ``relay_protocol`` sets ``cluster.protocol`` (the transport of its relay links)."""
    public, connectors, metrics, relay = (free_port() for _ in range(4))
    path = write_edge_config(directory, pki, public, connectors, metrics, name=f"edge-{name}.yaml")
    conf: dict[str, Any] = json.loads(path.read_text())
    conf.update(
        {
            "store": store,
            "edge-id": f"edge-{name}",
            "cluster": {
                "relay": f"127.0.0.1:{relay}",
                "secret-file": str(secret or cluster_secret(directory)),
                "registry-ttl": f"{ttl:g}s",
                **({"protocol": relay_protocol} if relay_protocol else {}),
            },
            **(extra or {}),
        }
    )
    path.write_text(json.dumps(conf, indent=2))
    return ClusterEdge(name, path, public, connectors, metrics, relay)


def start_cluster_edge(edge: ClusterEdge, directory: Path, timeout: float = 30.0) -> Process:
    """Start the edge; return once its relay listener answers on UDP and TCP too."""
    process = start_edge(edge.config, directory / f"edge-{edge.name}.log", directory, timeout)
    try:
        wait_ready(
            process,
            lambda: quic_answers("127.0.0.1", edge.relay) and tcp_accepts("127.0.0.1", edge.relay),
            f"the relay listener on udp and tcp 127.0.0.1:{edge.relay}",
            timeout,
        )
    except BaseException:
        stop(process.proc)
        raise
    edge.process = process
    return process


@contextlib.contextmanager
def redis_process(directory: Path, timeout: float = 10.0) -> Iterator[str]:
    """A ``redis-server`` on a free loopback port, no persistence; yields its URL."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("needs redis-server (apt-get install redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(directory)]
    process = start(cmd, directory / "redis.log", cwd=directory)
    try:
        deadline = time.monotonic() + timeout
        while not _pong(port):
            if process.exited() or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{process.log_tail()}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process.proc)


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
