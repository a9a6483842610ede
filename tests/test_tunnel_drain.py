"""Shutdown and drain (docs/tunnel.md, "Shutdown and drain"): a connector that gets SIGTERM
lets every response in flight arrive whole, acknowledged by the edge, before it closes; an edge
that gets SIGTERM stops accepting at once on both listeners and, when idle, exits within about
a second. Real origin, edge and connector processes on loopback."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import signal
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aioquic.quic.configuration import QuicConfiguration
from metrics_util import gauge
from tunnel_chain import TUNNEL_HOST, Chain, running_chain, start_edge
from waiting import wait_until

from pq_quic_plugin.tunnel.connector.dialer import dial
from pq_quic_plugin.tunnel.wire import ALPN, TunnelConnection
from pq_quic_plugin.tunnel.wire.h2_endpoints import connector_tls, dial_h2
from pq_quic_plugin.tunnel.wire.h2_transport import H2TunnelConnection
from tools.readiness import tcp_accepts

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

#: Every transport the tunnel has between edge and connector, with the connector config keys
#: that select it.
TRANSPORTS: dict[str, dict[str, Any]] = {
    "quic": {"protocol": "quic"},
    "http2": {"protocol": "http2"},
}

DOWNLOAD = 30 * 1024 * 1024
CHUNK = bytes(range(256)) * 256  # what the example app's /bytes/N serves, repeated


def _expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // len(CHUNK)):
        digest.update(CHUNK)
    digest.update(CHUNK[: size % len(CHUNK)])
    return digest.hexdigest()


class Download(threading.Thread):
    """One visitor streaming ``/bytes/SIZE`` over HTTPS to the edge, hashing as it goes."""

    def __init__(self, chain: Chain, size: int) -> None:
        super().__init__(daemon=True)
        self.chain, self.size = chain, size
        self.received = 0
        self.status: int | None = None
        self.sha256 = ""
        self.error: str | None = None

    def run(self) -> None:
        context = ssl.create_default_context(cafile=str(self.chain.pki.ca_cert))
        digest = hashlib.sha256()
        try:
            with httpx.Client(verify=context, timeout=60) as client:
                url = f"https://{TUNNEL_HOST}:{self.chain.public_port}/bytes/{self.size}"
                with client.stream("GET", url) as response:
                    self.status = response.status_code
                    for piece in response.iter_raw():
                        digest.update(piece)
                        self.received += len(piece)
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        self.sha256 = digest.hexdigest()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_sigterm_mid_download_delivers_every_byte(tmp_path: Path, transport: str) -> None:
    """Two 30 MB downloads in flight, SIGTERM to the connector: both arrive whole (sha256).

    Before the drain waited for acknowledgements, the connector closed its connection as soon
    as the handlers returned, with up to 512 KiB of a response still unacknowledged in the QUIC
    send buffer, and that download was cut short.
    """
    want = _expected_sha256(DOWNLOAD)
    with running_chain(tmp_path, connector=False) as chain:
        config = chain.connector_config(grace_period="60s", **TRANSPORTS[transport])
        chain.connector = chain.start_connector(config=config)
        downloads = [Download(chain, DOWNLOAD) for _ in range(2)]
        for download in downloads:
            download.start()
        wait_until(
            lambda: all(d.received >= 2 * 1024 * 1024 for d in downloads),
            60,
            "both downloads to be 2 MB in",
        )
        chain.connector.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for download in downloads:
            download.join(120)
        code = chain.connector.proc.wait(60)
        took = time.monotonic() - signalled
        log = chain.connector.log()
    print(f"\n{transport}: connector exited {took:.1f}s after SIGTERM")
    for download in downloads:
        assert download.error is None, download.error
        assert (download.status, download.received) == (200, DOWNLOAD)
        assert download.sha256 == want
    assert code == 0, log[-3000:]
    assert "not yet acknowledged" not in log and "still in flight" not in log


def _edge_with_grace(chain: Chain, grace: str) -> Any:
    """Restart the chain's edge with ``grace-period: GRACE`` (the test chain's is 1s)."""
    path = chain.dir / "edge.yaml"
    conf = json.loads(path.read_text())
    conf["grace-period"] = grace
    path.write_text(json.dumps(conf))
    chain.edge.proc.send_signal(signal.SIGKILL)
    chain.edge.proc.wait(10)
    edge = start_edge(path, chain.dir / f"edge-{time.monotonic_ns()}.log", chain.dir)
    chain.extra.append(edge)
    wait_until(
        lambda: gauge(chain.edge_metrics, "pq_tunnel_edge_ha_connections") == 2,
        30,
        "both connector connections registered with the new edge",
    )
    return edge


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_idle_edge_exits_within_a_second_of_sigterm(tmp_path: Path, transport: str) -> None:
    """A 30 s grace period, two connector connections, nothing in flight: out in about 1 s.

    hypercorn's HTTP/3 loop only notices a stop when a datagram arrives, so an idle edge used
    to wait out the whole grace period (32 s with the default 30 s).
    """
    with running_chain(tmp_path, protocol=transport) as chain:
        edge = _edge_with_grace(chain, "30s")
        assert chain.connector is not None
        started = time.monotonic()
        edge.proc.send_signal(signal.SIGTERM)
        code = edge.proc.wait(40)
        took = time.monotonic() - started
        print(f"\nidle edge exited {took:.2f}s after SIGTERM")
        assert code == 0
        assert took < 2.0, edge.log_tail()
        chain.connector.wait_for_log("edge shutting down", 10)


async def _connector_handshake(port: int, ca: Path) -> str:
    """Try a connector's QUIC handshake; the edge's reason if it closed the connection within
    a second, else ''."""
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    config.load_verify_locations(str(ca))
    config.idle_timeout = 3.0
    attempt: list[TunnelConnection] = []
    try:
        async with dial(
            "127.0.0.1", port, config, TunnelConnection, on_created=attempt.append
        ) as conn:
            try:
                await asyncio.wait_for(conn.closed_event.wait(), 1.0)
            except asyncio.TimeoutError:
                return ""
    except ConnectionError:
        pass
    return attempt[0].close_reason


async def _connector_h2_handshake(port: int, ca: Path) -> str:
    """The same over HTTP/2 on TCP: the edge's GOAWAY reason within a second, else ''."""
    tls = connector_tls(True, cafile=ca)
    link_of = functools.partial(H2TunnelConnection, "connector")
    async with dial_h2("127.0.0.1", port, tls, link_of, server_hostname="localhost") as link:
        try:
            await asyncio.wait_for(link.closed_event.wait(), 1.0)
        except asyncio.TimeoutError:
            return ""
        return link.close_reason


async def _public_quic_handshake(port: int, ca: Path) -> bool:
    """Whether an HTTP/3 handshake with the public listener completes within 3 s."""
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="localhost")
    config.load_verify_locations(str(ca))
    config.idle_timeout = 3.0
    try:
        async with dial("127.0.0.1", port, config, TunnelConnection):
            return True
    except ConnectionError:
        return False


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_stopping_edge_refuses_new_connections_and_finishes_requests(
    tmp_path: Path, transport: str
) -> None:
    """While a request is in flight, a stopping edge refuses a new connector handshake with
    "edge shutting down" on both connector listeners (QUIC and HTTP/2), takes no new visitor
    (TCP or QUIC), and still completes the request."""
    with running_chain(tmp_path, protocol=transport) as chain:
        edge = _edge_with_grace(chain, "30s")
        assert chain.connector is not None
        ca = chain.pki.ca_cert
        assert asyncio.run(_connector_handshake(chain.connector_port, ca)) == ""  # open now
        assert asyncio.run(_connector_h2_handshake(chain.connector_port, ca)) == ""
        context = ssl.create_default_context(cafile=str(ca))
        result: list[int] = []

        def slow_request() -> None:
            with httpx.Client(verify=context, timeout=30) as client:
                url = f"https://{TUNNEL_HOST}:{chain.public_port}/slow?seconds=4"
                result.append(client.get(url).status_code)

        visitor = threading.Thread(target=slow_request, daemon=True)
        visitor.start()
        wait_until(
            lambda: gauge(chain.connector_metrics, "pq_tunnel_connector_concurrent_requests") == 1,
            10,
            "the slow request in flight",
        )
        edge.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert edge.proc.poll() is None  # still finishing the slow request
        assert asyncio.run(_connector_handshake(chain.connector_port, ca)) == "edge shutting down"
        refused = asyncio.run(_connector_h2_handshake(chain.connector_port, ca))
        assert refused == "edge shutting down"
        assert not tcp_accepts("127.0.0.1", chain.public_port)
        assert not asyncio.run(_public_quic_handshake(chain.public_port, ca))
        visitor.join(30)
        assert result == [200]
        assert edge.proc.wait(15) == 0
