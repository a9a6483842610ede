"""``protocol: auto`` on a network that drops UDP: the connector falls back to HTTP/2, still
post-quantum, and the tunnel works; ``protocol: quic`` there fails and says UDP looks blocked.

The network is real: the test creates a network namespace joined to this one by a veth pair
(a private /30), runs the edge here on the veth address and the connector (and a tiny origin)
inside the namespace, and drops UDP to the edge's connector port with nftables (or iptables)
inside the namespace. Everything it creates is removed in a ``finally`` (deleting the namespace
deletes its rules and the veth pair); processes are stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servers import free_port, stop
from tunnel_chain import (
    TUNNEL_HOST,
    Chain,
    running_chain,
    start,
    start_edge,
    tunnel_host_rules,
    write_edge_config,
)
from waiting import wait_until

from tools.processes import Process

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TUNNEL = [sys.executable, "-m", "pq_quic_plugin.tunnel"]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    if shutil.which("nft") is None and shutil.which("iptables") is None:
        return "needs nftables (`nft`) or `iptables` (Debian: apt-get install nftables)"
    return None


def _run(*cmd: str, stdin: str | None = None) -> None:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr}"


class UdpBlockedNet:
    """A namespace ``name`` reached over a veth pair: ``edge_ip`` here, ``inner_ip`` there."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.name = f"pqt{tag}"
        self.outer = f"pqo{tag}"
        self.inner = f"pqi{tag}"
        block = random.randrange(0, 64) * 4
        subnet = random.randrange(1, 250)
        self.edge_ip = f"10.213.{subnet}.{block + 1}"
        self.inner_ip = f"10.213.{subnet}.{block + 2}"

    def create(self) -> None:
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _run("ip", "link", "set", self.inner, "netns", self.name)
        _run("ip", "addr", "add", f"{self.edge_ip}/30", "dev", self.outer)
        _run("ip", "link", "set", self.outer, "up")
        _run("ip", "-n", self.name, "addr", "add", f"{self.inner_ip}/30", "dev", self.inner)
        _run("ip", "-n", self.name, "link", "set", self.inner, "up")
        _run("ip", "-n", self.name, "link", "set", "lo", "up")

    def drop_udp(self, port: int, where: str) -> None:
        """Inside the namespace, drop UDP to the edge's connector port (``outbound``: sending
        fails at once, as behind a local firewall) or the edge's UDP answers (``replies``:
        nothing comes back, as behind a firewall on the way: the handshake times out)."""
        if where == "outbound":
            hook, chain, match = "output", "OUTPUT", ["-d", self.edge_ip, "--dport", str(port)]
        else:
            hook, chain, match = "input", "INPUT", ["-s", self.edge_ip, "--sport", str(port)]
        if shutil.which("nft") is not None:
            addr = "daddr" if where == "outbound" else "saddr"
            port_match = "dport" if where == "outbound" else "sport"
            ruleset = (
                f"table inet pqtest {{\n  chain c {{\n"
                f"    type filter hook {hook} priority 0; policy accept;\n"
                f"    ip {addr} {self.edge_ip} udp {port_match} {port} drop\n  }}\n}}\n"
            )
            _run("ip", "netns", "exec", self.name, "nft", "-f", "-", stdin=ruleset)
        else:
            rule = ["-A", chain, "-p", "udp", *match, "-j", "DROP"]
            _run("ip", "netns", "exec", self.name, "iptables", *rule)

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True, timeout=20)

    def exec(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]


@contextlib.contextmanager
def udp_blocked_net() -> Iterator[UdpBlockedNet]:
    net = UdpBlockedNet()
    try:
        net.create()
        yield net
    finally:
        net.remove()


@dataclass
class Setup:
    chain: Chain  # its store, PKI and credentials (its own edge and origin are not used)
    net: UdpBlockedNet
    edge: Process  # listening for connectors on net.edge_ip:connectors
    public: int
    connectors: int
    origin: int  # inside the namespace, on its 127.0.0.1

    def connector(self, *flags: str) -> Process:
        """``pq-tunnel run --post-quantum FLAGS`` inside the namespace, ``protocol: auto``."""
        config = self.chain.connector_config(
            "ns.yml",
            edge=[f"{self.net.edge_ip}:{self.connectors}"],
            ha_connections=1,
            protocol="auto",
            ingress=tunnel_host_rules(f"http://127.0.0.1:{self.origin}"),
        )
        cmd = self.net.exec(*TUNNEL, "run", "--config", str(config), "--post-quantum", *flags)
        log = self.chain.dir / f"ns-connector-{len(self.chain.extra)}.log"
        proc = start(cmd, log, cwd=self.chain.dir)
        self.chain.extra.append(proc)  # stopped by PID when the chain ends
        return proc


@pytest.fixture(params=["outbound", "replies"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """The chain's store and PKI, a second edge listening for connectors on the veth address
    (UDP to it dropped inside the namespace), and an origin inside the namespace."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with running_chain(tmp_path, connector=False) as chain, udp_blocked_net() as net:
        public, connectors, metrics = (free_port() for _ in range(3))
        path = write_edge_config(
            chain.dir, chain.pki, public, connectors, metrics, name="veth-edge.yaml"
        )
        conf = json.loads(path.read_text())
        conf["connectors"]["bind"] = f"{net.edge_ip}:{connectors}"
        path.write_text(json.dumps(conf))
        edge = start_edge(path, chain.dir / "veth-edge.log", chain.dir)
        chain.extra.append(edge)
        net.drop_udp(connectors, request.param)
        site = chain.dir / "site"
        site.mkdir()
        (site / "hello.txt").write_text("hello from inside the namespace\n")
        origin_port = free_port()
        origin = start(
            net.exec(sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(origin_port)),
            chain.dir / "ns-origin.log",
            cwd=site,
        )
        chain.extra.append(origin)
        yield Setup(chain, net, edge, public, connectors, origin_port)


def test_auto_falls_back_to_http2_and_quic_says_udp_looks_blocked(setup: Setup) -> None:
    auto = setup.connector()
    wait_until(
        lambda: "registered connIndex=0" in auto.log() or auto.exited(),
        45,
        "the connector to register",
    )
    log = auto.log()
    assert "Initial protocol quic" in log
    assert "Switching to fallback protocol http2" in log
    assert "protocol=http2 group=X25519MLKEM768" in log, auto.log_tail()
    assert "protocol=http2 group=X25519MLKEM768" in setup.edge.log()  # the edge's own view
    assert "X25519MLKEM768 (NOT post-quantum)" not in setup.edge.log()

    context = ssl.create_default_context(cafile=str(setup.chain.pki.ca_cert))
    with httpx.Client(verify=context, timeout=20) as client:
        resp = client.get(f"https://{TUNNEL_HOST}:{setup.public}/hello.txt")
    assert resp.status_code == 200
    assert resp.text == "hello from inside the namespace\n"
    stop(auto.proc)

    quic = setup.connector("--protocol", "quic", "--retries", "1")
    assert quic.proc.wait(40) == 1
    log = quic.log()
    assert "registered connIndex" not in log
    assert "Switching to fallback protocol" not in log
    assert "UDP to the edge looks blocked" in log and "`protocol: http2`" in log, quic.log_tail()
    assert "POST-QUANTUM TUNNEL CONNECTION FAILED" not in log  # not post-quantum's fault
