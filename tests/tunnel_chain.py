"""Three real processes on loopback: origin (hypercorn-pq + example app), edge, connector."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from servers import EXAMPLE_APP_DIR, Process, free_port, hypercorn_pq, stop

from pq_quic_plugin.devcert import DevPKI, make_dev_pki

TUNNEL_HOST = "localhost"  # the tunnel's public hostname; the edge's own pages use 127.0.0.1


def start(cmd: list[str], log: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> Process:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                start_new_session=True)
    return Process(proc, log)


def tunnel_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pq_quic_plugin.tunnel", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


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
            "metrics": f"127.0.0.1:{self.connector_metrics}",
            "grace-period": "10s",
            "ingress": [
                {"hostname": TUNNEL_HOST, "service": f"https://127.0.0.1:{self.origin_port}",
                 "origin-ca-file": str(self.pki.ca_cert), "origin-server-name": "localhost"},
                {"service": "http_status:404"},
            ],
        }
        lines.update({k.replace("_", "-"): v for k, v in overrides.items()})
        path = self.dir / name
        path.write_text(json.dumps(lines, indent=2))  # JSON is YAML
        return path

    def start_connector(self, *extra: str, config: Path | None = None,
                        wait: str | None = "registered connIndex=0") -> Process:
        config = config or self.connector_config()
        proc = start([sys.executable, "-m", "pq_quic_plugin.tunnel", "run", "--config",
                      str(config), *extra], self.dir / f"connector-{time.monotonic_ns()}.log",
                     cwd=self.dir)
        if wait:
            proc.wait_for_log(wait, 30)
        return proc


def write_edge_config(directory: Path, pki: DevPKI, public: int, connectors: int, metrics: int,
                      connector_policy: str = "prefer", groups: list[str] | None = None,
                      name: str = "edge.yaml") -> Path:
    conf: dict[str, object] = {
        "public": {"bind": f"127.0.0.1:{public}", "certfile": str(pki.cert),
                   "keyfile": str(pki.key), "pq": "prefer"},
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
def running_chain(directory: Path, connector: bool = True,
                  connector_policy: str = "prefer") -> Iterator[Chain]:
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_dev_pki(directory / "pki", hostnames=("localhost",))
    ports = [free_port() for _ in range(5)]
    origin_port, public, conn_port, edge_metrics, conn_metrics = ports
    edge_yaml = write_edge_config(directory, pki, public, conn_port, edge_metrics,
                                  connector_policy)
    created = tunnel_cli("create", "demo", "--hostname", TUNNEL_HOST, "--config", str(edge_yaml),
                         "--credentials-file", "creds.json", cwd=directory)
    assert created.returncode == 0, created.stderr
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(hypercorn_pq(
            ["--pq", "--certfile", str(pki.cert), "--keyfile", str(pki.key),
             "-b", f"127.0.0.1:{origin_port}", "app:app"],
            directory, origin_port, cwd=EXAMPLE_APP_DIR))
        edge = start([sys.executable, "-m", "pq_quic_plugin.tunnel", "edge", "--config",
                      str(edge_yaml)], directory / "edge.log", cwd=directory)
        stack.callback(stop, edge.proc)
        edge.wait_for_log("Running on", 30)
        chain = Chain(directory, pki, origin_port, public, conn_port, edge_metrics, conn_metrics,
                      edge, origin=origin)
        if connector:
            chain.connector = chain.start_connector()
            stack.callback(lambda: chain.connector and stop(chain.connector.proc))
        stack.callback(lambda: [stop(p.proc) for p in chain.extra])
        yield chain
