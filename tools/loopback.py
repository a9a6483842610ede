"""Real processes on loopback: hypercorn-pq, and a whole pq-tunnel chain.

The demo, the tests and the benchmarks start exactly the same processes through this module, so
what ``make demo`` shows is what the tests check. A process counts as started when its sockets
answer (:mod:`tools.readiness`), never when a line shows up in its log.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pq_quic_plugin.devcert import DevPKI, make_dev_pki

from .processes import Process, free_port, start, stop
from .readiness import quic_answers, ready_connections, tcp_accepts, wait_listening, wait_ready

__all__ = [
    "EXAMPLE_APP_DIR",
    "ROOT",
    "TUNNEL_HOST",
    "Chain",
    "Process",
    "free_port",
    "hypercorn_pq",
    "run_cli",
    "running_chain",
    "start",
    "start_edge",
    "stop",
    "tunnel_cli",
    "write_edge_config",
]

ROOT = Path(__file__).resolve().parent.parent  # the repository (examples/ lives there)
EXAMPLE_APP_DIR = ROOT / "examples" / "asgi_app"
TUNNEL = [sys.executable, "-m", "pq_quic_plugin.tunnel"]


@contextlib.contextmanager
def hypercorn_pq(
    args: Sequence[str],
    log_dir: Path,
    port: int,
    cwd: Path = EXAMPLE_APP_DIR,
    env: dict[str, str] | None = None,
    wait_quic: bool = True,
    timeout: float = 30.0,
) -> Iterator[Process]:
    """Run ``hypercorn-pq ARGS`` (as ``python -m``) until the block ends.

    Ready once 127.0.0.1:``port`` accepts TCP and, with ``wait_quic``, answers QUIC there too
    (hypercorn-pq serves HTTP/3 on the TCP port unless told otherwise).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"hypercorn-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "pq_quic_plugin.hypercorn_binding", *args]
    handle = start(cmd, log, cwd=cwd, env=env)
    try:
        wait_listening(handle, "127.0.0.1", port, quic=wait_quic, timeout=timeout)
        yield handle
    finally:
        stop(handle.proc)


def run_cli(
    args: Sequence[str], cwd: Path = EXAMPLE_APP_DIR, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
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


def tunnel_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``pq-tunnel ARGS`` expecting it to exit by itself (create, list, errors)."""
    return subprocess.run([*TUNNEL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = str(value).rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _flag(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``args`` (the last one wins)."""
    found = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def start_edge(config: Path, log: Path, cwd: Path, timeout: float = 30.0) -> Process:
    """Start ``pq-tunnel edge --config CONFIG``; return once both listeners answer.

    Ready means: the public port accepts TCP and answers QUIC, and the connector listener answers
    QUIC and accepts TCP (the addresses are read from the config file).
    """
    conf: dict[str, Any] = yaml.safe_load(config.read_text())
    public = _host_port(conf["public"]["bind"])
    connectors = _host_port(conf["connectors"]["bind"])
    edge = start([*TUNNEL, "edge", "--config", str(config)], log, cwd=cwd)
    try:
        wait_listening(edge, *public, timeout=timeout)
        wait_ready(
            edge,
            lambda: quic_answers(*connectors) and tcp_accepts(*connectors),
            f"the connector listener on udp and tcp {connectors[0]}:{connectors[1]}",
            timeout,
        )
    except BaseException:
        stop(edge.proc)
        raise
    return edge


@dataclass
class Chain:
    """A running origin, edge and (usually) connector, and the ports to reach them."""

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
    origin_protocol: str | None = None
    """The ingress rule's ``origin-protocol``; None leaves it out (``auto``: TLS over TCP,
    HTTP/2 with hypercorn-pq)."""
    protocol: str = "quic"
    """The connector's ``protocol`` (transport to the edge): ``quic``, ``http2`` or ``auto``."""
    pq_pki: DevPKI | None = None
    """The ML-DSA set (CA, leaf) next to ``pki``, when the chain was started with one."""

    @property
    def cafile(self) -> Path:
        """What clients trust: ``cas.pem`` (both CAs) with an ML-DSA set, else ``ca.pem``."""
        return self.dir / "pki" / "cas.pem" if self.pq_pki is not None else self.pki.ca_cert

    @property
    def url(self) -> str:
        return f"https://{TUNNEL_HOST}:{self.public_port}"

    def connector_config(self, name: str = "config.yml", **overrides: object) -> Path:
        """Write a connector config for this chain; ``overrides`` replace keys (``_`` = ``-``).

        ``config.yml`` serves metrics on ``connector_metrics``; every other name gets a port of
        its own, so two connectors can run at once and each one's ``/ready`` can be probed.
        """
        metrics = self.connector_metrics if name == "config.yml" else free_port()
        lines = {
            "tunnel": "demo",
            "credentials-file": "creds.json",
            "edge": [f"127.0.0.1:{self.connector_port}"],
            "post-quantum": True,
            "ha-connections": 2,
            "ca-file": str(self.cafile),
            "edge-server-name": "localhost",
            "metrics": f"127.0.0.1:{metrics}",
            "grace-period": "10s",
            "protocol": self.protocol,
            "ingress": [
                {
                    "hostname": TUNNEL_HOST,
                    "service": f"https://127.0.0.1:{self.origin_port}",
                    "origin-ca-file": str(self.cafile),
                    "origin-server-name": "localhost",
                },
                {"service": "http_status:404"},
            ],
        }
        if self.origin_protocol is not None:
            lines["ingress"][0]["origin-protocol"] = self.origin_protocol  # type: ignore[index]
        lines.update({k.replace("_", "-"): v for k, v in overrides.items()})
        path = self.dir / name
        path.write_text(json.dumps(lines, indent=2))  # JSON is YAML
        return path

    def start_connector(
        self,
        *extra: str,
        config: Path | None = None,
        wait: bool | None = True,
        connections: int | None = None,
        timeout: float = 30.0,
    ) -> Process:
        """Start ``pq-tunnel run --config CONFIG EXTRA``.

        With ``wait``, return once the connector's ``/ready`` reports ``connections`` registered
        tunnel connections (default: every one of its ``ha-connections``).
        """
        config = config or self.connector_config()
        proc = start(
            [*TUNNEL, "run", "--config", str(config), *extra],
            self.dir / f"connector-{time.monotonic_ns()}.log",
            cwd=self.dir,
        )
        if wait:
            try:
                self.wait_connector(proc, config, extra, connections, timeout)
            except BaseException:
                stop(proc.proc)
                raise
        return proc

    @staticmethod
    def wait_connector(
        proc: Process,
        config: Path,
        extra: Sequence[str] = (),
        connections: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Wait until ``/ready`` of the connector started with ``config`` and ``extra`` flags
        reports ``connections`` registered connections (default: all its ``ha-connections``)."""
        conf: dict[str, Any] = yaml.safe_load(config.read_text()) or {}
        metrics = _flag(extra, "--metrics") or conf.get("metrics")
        if not metrics or _host_port(metrics)[1] == 0:
            raise ValueError(
                f"{config}: readiness is probed on /ready, so the connector needs a "
                "fixed metrics port (`metrics: 127.0.0.1:PORT`)"
            )
        host, port = _host_port(metrics)
        if connections is None:
            connections = int(_flag(extra, "--ha-connections") or conf.get("ha-connections", 4))
        wait_ready(
            proc,
            lambda: ready_connections(host, port) >= connections,
            f"{connections} registered tunnel connection(s) on http://{host}:{port}/ready",
            timeout,
        )


def write_edge_config(
    directory: Path,
    pki: DevPKI,
    public: int,
    connectors: int,
    metrics: int,
    connector_policy: str = "prefer",
    groups: list[str] | None = None,
    name: str = "edge.yaml",
    public_options: dict[str, object] | None = None,
    pq_pki: DevPKI | None = None,
) -> Path:
    """Write an edge config listening on loopback; the tunnel store is ``tunnels.db``.

    ``public_options`` are extra keys of the ``public`` section (limits, for instance).
    ``pq_pki``: an ML-DSA pair (``pq-certfile``/``pq-keyfile``) for the public listener, which
    the connector listener inherits (it names no certificate of its own)."""
    connector_listener: dict[str, object] = {
        "bind": f"127.0.0.1:{connectors}",
        "post-quantum": connector_policy,
    }
    if groups:
        connector_listener["groups"] = groups
    conf: dict[str, object] = {
        "public": {
            "bind": f"127.0.0.1:{public}",
            "certfile": str(pki.cert),
            "keyfile": str(pki.key),
            "pq": "prefer",
            **(
                {"pq-certfile": str(pq_pki.cert), "pq-keyfile": str(pq_pki.key)}
                if pq_pki is not None
                else {}
            ),
            **(public_options or {}),
        },
        "connectors": connector_listener,
        "store": "tunnels.db",
        "metrics": f"127.0.0.1:{metrics}",
        # Short: hypercorn waits out the whole grace period at every stop, even when idle.
        "grace-period": "1s",
        "location": "test-loopback",
    }
    path = directory / name
    path.write_text(json.dumps(conf, indent=2))
    return path


@contextlib.contextmanager
def running_chain(
    directory: Path,
    connector: bool = True,
    connector_policy: str = "prefer",
    origin_protocol: str | None = None,
    origin_app: str = "app:app",
    origin_cwd: Path = EXAMPLE_APP_DIR,
    edge_public: dict[str, object] | None = None,
    protocol: str = "quic",
    ml_dsa_edge: bool = False,
    ml_dsa_origin: bool = False,
) -> Iterator[Chain]:
    """Origin (the example app under ``hypercorn-pq --pq``), edge and connector, all ready.

    ``protocol`` is the connector's transport to the edge (``quic``, ``http2``, ``auto``).
    ``ml_dsa_edge`` / ``ml_dsa_origin`` give the edge's listeners / the origin an ML-DSA-65
    certificate next to the ECDSA one (docs/auth.md); clients then trust ``chain.cafile``
    (both CAs), the connector included.

    The connector reaches the origin as ``https://`` with ``origin_protocol`` (None: the
    default, TLS over TCP; ``"http3"``: QUIC). ``origin_app`` in ``origin_cwd`` replaces the
    example app (``MODULE:ATTRIBUTE``, as hypercorn takes it).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_dev_pki(directory / "pki", hostnames=("localhost",))
    pq_pki = None
    if ml_dsa_edge or ml_dsa_origin:
        pq_pki = make_dev_pki(directory / "pki", hostnames=("localhost",), sig="ml-dsa-65")
        (directory / "pki" / "cas.pem").write_bytes(pki.ca_pem + pq_pki.ca_pem)
    origin_port, public, conn_port, edge_metrics, conn_metrics = (free_port() for _ in range(5))
    edge_yaml = write_edge_config(
        directory,
        pki,
        public,
        conn_port,
        edge_metrics,
        connector_policy,
        public_options=edge_public,
        pq_pki=pq_pki if ml_dsa_edge else None,
    )
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
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    if ml_dsa_origin and pq_pki is not None:
        tls += ["--pq-certfile", str(pq_pki.cert), "--pq-keyfile", str(pq_pki.key)]
    origin_args = ["--pq", *tls, "-b", f"127.0.0.1:{origin_port}", "--graceful-timeout", "1"]
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(
            hypercorn_pq([*origin_args, origin_app], directory, origin_port, cwd=origin_cwd)
        )
        edge = start_edge(edge_yaml, directory / "edge.log", cwd=directory)
        stack.callback(stop, edge.proc)
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
            origin_protocol=origin_protocol,
            protocol=protocol,
            pq_pki=pq_pki,
        )
        stack.callback(_stop_connector, chain)  # also one a test starts (connector=False)
        stack.callback(_stop_all, chain.extra)
        if connector:
            chain.connector = chain.start_connector()
        yield chain


def _stop_connector(chain: Chain) -> None:
    if chain.connector is not None:
        stop(chain.connector.proc)


def _stop_all(processes: list[Process]) -> None:
    for process in processes:
        stop(process.proc)
