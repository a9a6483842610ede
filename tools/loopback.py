"""Real processes on loopback: hypercorn-pq, and a whole pq-tunnel chain.

The demo, the tests and the benchmarks start exactly the same processes through this module, so
what ``make demo`` shows is what the tests check.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pq_quic_plugin.devcert import DevPKI, make_dev_pki

ROOT = Path(__file__).resolve().parent.parent  # the repository (examples/ lives there)
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
    handle = start(cmd, log, cwd=cwd, env=env)
    proc = handle.proc
    try:
        if port is not None:
            _wait_tcp(port, proc, log, timeout)
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


# ---------------------------------------------------------------- a pq-tunnel chain

TUNNEL_HOST = "localhost"  # the tunnel's public hostname; the edge's own pages use 127.0.0.1


def start(
    cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Process:
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


def tunnel_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pq_quic_plugin.tunnel", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Chain:
    dir: Path
    pki: DevPKI
    origin_port: int
    public_port: int
    connector_port: int
    edge_metrics: int
    connector_metrics: int
    edge: Process
    connector: Process | None = None
    origin: Process | None = None
    extra: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{TUNNEL_HOST}:{self.public_port}"

    def connector_config(self, name: str = "config.yml", **overrides: object) -> Path:
        lines = {
            "tunnel": "demo",
            "credentials-file": "creds.json",
            "edge": [f"127.0.0.1:{self.connector_port}"],
            "post-quantum": True,
            "ha-connections": 2,
            "ca-file": str(self.pki.ca_cert),
            "edge-server-name": "localhost",
            "metrics": f"127.0.0.1:{self.connector_metrics if name == 'config.yml' else 0}",
            "grace-period": "10s",
            "ingress": [
                {
                    "hostname": TUNNEL_HOST,
                    "service": f"https://127.0.0.1:{self.origin_port}",
                    "origin-ca-file": str(self.pki.ca_cert),
                    "origin-server-name": "localhost",
                },
                {"service": "http_status:404"},
            ],
        }
        lines.update({k.replace("_", "-"): v for k, v in overrides.items()})
        path = self.dir / name
        path.write_text(json.dumps(lines, indent=2))  # JSON is YAML
        return path

    def start_connector(
        self, *extra: str, config: Path | None = None, wait: str | None = "registered connIndex=0"
    ) -> Process:
        config = config or self.connector_config()
        proc = start(
            [sys.executable, "-m", "pq_quic_plugin.tunnel", "run", "--config", str(config), *extra],
            self.dir / f"connector-{time.monotonic_ns()}.log",
            cwd=self.dir,
        )
        if wait:
            proc.wait_for_log(wait, 30)
        return proc


def write_edge_config(
    directory: Path,
    pki: DevPKI,
    public: int,
    connectors: int,
    metrics: int,
    connector_policy: str = "prefer",
    groups: list[str] | None = None,
    name: str = "edge.yaml",
) -> Path:
    conf: dict[str, object] = {
        "public": {
            "bind": f"127.0.0.1:{public}",
            "certfile": str(pki.cert),
            "keyfile": str(pki.key),
            "pq": "prefer",
        },
        "connectors": {"bind": f"127.0.0.1:{connectors}", "post-quantum": connector_policy},
        "store": "tunnels.db",
        "metrics": f"127.0.0.1:{metrics}",
        "grace-period": "5s",
        "location": "test-loopback",
    }
    if groups:
        conf["connectors"]["groups"] = groups  # type: ignore[index]
    path = directory / name
    path.write_text(json.dumps(conf, indent=2))
    return path


@contextlib.contextmanager
def running_chain(
    directory: Path, connector: bool = True, connector_policy: str = "prefer"
) -> Iterator[Chain]:
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_dev_pki(directory / "pki", hostnames=("localhost",))
    ports = [free_port() for _ in range(5)]
    origin_port, public, conn_port, edge_metrics, conn_metrics = ports
    edge_yaml = write_edge_config(directory, pki, public, conn_port, edge_metrics, connector_policy)
    created = tunnel_cli(
        "create",
        "demo",
        "--hostname",
        TUNNEL_HOST,
        "--config",
        str(edge_yaml),
        "--credentials-file",
        "creds.json",
        cwd=directory,
    )
    assert created.returncode == 0, created.stderr
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(
            hypercorn_pq(
                [
                    "--pq",
                    "--certfile",
                    str(pki.cert),
                    "--keyfile",
                    str(pki.key),
                    "-b",
                    f"127.0.0.1:{origin_port}",
                    "app:app",
                ],
                directory,
                origin_port,
                cwd=EXAMPLE_APP_DIR,
            )
        )
        edge = start(
            [sys.executable, "-m", "pq_quic_plugin.tunnel", "edge", "--config", str(edge_yaml)],
            directory / "edge.log",
            cwd=directory,
        )
        stack.callback(stop, edge.proc)
        edge.wait_for_log("Running on", 30)
        chain = Chain(
            directory,
            pki,
            origin_port,
            public,
            conn_port,
            edge_metrics,
            conn_metrics,
            edge,
            origin=origin,
        )
        if connector:
            chain.connector = chain.start_connector()
            stack.callback(_stop_connector, chain)
        stack.callback(_stop_all, chain.extra)
        yield chain


def _stop_connector(chain: Chain) -> None:
    if chain.connector is not None:
        stop(chain.connector.proc)


def _stop_all(processes: list[Process]) -> None:
    for process in processes:
        stop(process.proc)
