"""The edge-to-edge relay (hop 2) against a man in the middle: a real TLS-terminating proxy on
loopback between a relaying edge (an in-process :class:`ClusterPeers`, built from an
``edge.yaml`` as the edge builds it) and a serving edge's real relay listener.

The proxy presents its own certificate to the relaying edge, dials the serving edge's relay
port itself, and copies what it decrypts both ways: over TLS/TCP (bytes) and over QUIC (stream
data). Without the binding of the cluster proofs to the serving edge's certificate it would
pass the exchange through and read the hop; with it both edges refuse and say why. Also:
without the proxy the same edges relay; a plain TCP forwarder that does not terminate TLS is
harmless; ``cluster.ca-file`` verifies the peer's certificate (a wrong CA or name is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pq_quic_plugin.aioquic_binding import configure
from pq_quic_plugin.aioquic_binding.facade import quic_of, server_port
from pq_quic_plugin.devcert import DevPKI, make_dev_pki
from pq_quic_plugin.policy import Policy
from pq_quic_plugin.tcp_tls import ssl_context
from pq_quic_plugin.tunnel.cluster.cert_binding import fingerprint, show_fingerprint
from pq_quic_plugin.tunnel.cluster.directory import PeerEntry
from pq_quic_plugin.tunnel.cluster.peer_auth import derive_relay_key
from pq_quic_plugin.tunnel.cluster.peer_client import open_peer_link
from pq_quic_plugin.tunnel.cluster.peer_listener import PeerListener
from pq_quic_plugin.tunnel.cluster.peers import ClusterPeers
from pq_quic_plugin.tunnel.cluster.stats import PeerCounts
from pq_quic_plugin.tunnel.config import ConfigError
from pq_quic_plugin.tunnel.config.cluster import read_cluster_secret
from pq_quic_plugin.tunnel.config.edge import load_edge_config
from pq_quic_plugin.tunnel.edge.registry import Registry
from pq_quic_plugin.tunnel.hostnames import HostPort
from pq_quic_plugin.tunnel.wire import ALPN
from pq_quic_plugin.tunnel.wire.h2_transport import H2_ALPN

LOGGER = "pq_quic_plugin.tunnel.cluster"
SERVING_SAYS = (
    "relay proof does not match this edge's certificate: "
    "a TLS-terminating middlebox or a wrong peer?"
)
RELAYING_SAYS = "relay proof does not match the peer's certificate"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    """The cluster's edges' certificates (``localhost`` and 127.0.0.1)."""
    return make_dev_pki(tmp_path_factory.mktemp("edges"), hostnames=("localhost",))


@pytest.fixture(scope="module")
def mitm_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    """The middlebox's own certificate, for the same names, from a CA of its own."""
    return make_dev_pki(tmp_path_factory.mktemp("mitm"), hostnames=("localhost",))


def _leaf_fingerprint(cert: Path) -> bytes:
    return fingerprint(x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER))


# ------------------------------------------------------------------ the middleboxes


class TcpMiddlebox:
    """Accepts TLS (post-quantum, ALPN h2) with its own certificate, dials the target with TLS
    without verifying it, and copies the plaintext both ways; ``terminate=False`` copies the
    TCP bytes untouched instead (a plain forwarder, as a load balancer)."""

    def __init__(self, target: int, pki: DevPKI, terminate: bool = True) -> None:
        self.target = target
        self.terminate = terminate
        self.connections = 0
        self._server_tls = ssl_context(
            Policy.REQUIRE,
            server_side=True,
            certfile=pki.cert,
            keyfile=pki.key,
            alpn=[H2_ALPN],
        )
        self._client_tls = ssl_context(
            Policy.REQUIRE, server_side=False, alpn=[H2_ALPN], verify=False, check_hostname=False
        )
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        tls = self._client_tls if self.terminate else None
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.target, ssl=tls, server_hostname="localhost" if tls else None
        )
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._handle(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        tls = self._server_tls if self.terminate else None
        server = await asyncio.start_server(spawn, "127.0.0.1", 0, ssl=tls)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


class _QuicHalf(QuicConnectionProtocol):
    """One side of the QUIC middlebox: stream data, resets and the close go to the other."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.other: _QuicHalf | None = None
        self._held: list[QuicEvent] = []

    def pair(self, other: _QuicHalf) -> None:
        self.other = other
        held, self._held = self._held, []
        for event in held:
            self._forward(event)

    def quic_event_received(self, event: QuicEvent) -> None:
        if self.other is None:
            self._held.append(event)  # the upstream connection is not up yet
        else:
            self._forward(event)

    def _forward(self, event: QuicEvent) -> None:
        assert self.other is not None
        quic = quic_of(self.other)
        if isinstance(event, StreamDataReceived):
            quic.send_stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, StreamReset):
            quic.reset_stream(event.stream_id, event.error_code)
        elif isinstance(event, ConnectionTerminated):
            self.other.close(error_code=event.error_code, reason_phrase=event.reason_phrase)
        else:
            return
        self.other.transmit()


class QuicMiddlebox:
    """A QUIC server (post-quantum, the tunnel's ALPN, its own certificate) that opens a QUIC
    connection of its own to the target for each client and copies stream data both ways."""

    def __init__(self, target: int, pki: DevPKI) -> None:
        self.target = target
        self.connections = 0
        self._server_config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
        self._server_config.load_cert_chain(pki.cert, pki.key)
        configure(self._server_config, Policy.REQUIRE)
        self._tasks: set[asyncio.Task[Any]] = set()

    def accepted(self, down: _QuicHalf) -> None:
        """A client connected: dial the target for it (its packets wait until then)."""
        self.connections += 1
        task = asyncio.ensure_future(self._upstream(down))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upstream(self, down: _QuicHalf) -> None:
        config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)
        configure(config, Policy.REQUIRE)
        async with connect(
            "127.0.0.1", self.target, configuration=config, create_protocol=_QuicHalf
        ) as up:
            assert isinstance(up, _QuicHalf)
            up.pair(down)
            down.pair(up)
            await up.wait_closed()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        box = self

        class _Downstream(_QuicHalf):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                box.accepted(self)

        server = await serve(
            "127.0.0.1", 0, configuration=self._server_config, create_protocol=_Downstream
        )
        try:
            yield server_port(server)
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _middlebox(protocol: str, target: int, pki: DevPKI) -> QuicMiddlebox | TcpMiddlebox:
    return QuicMiddlebox(target, pki) if protocol == "quic" else TcpMiddlebox(target, pki)


# ------------------------------------------------------------------ the two edges


def _edge_yaml(directory: Path, pki: DevPKI, protocol: str, **cluster: Any) -> Path:
    secret = directory / "cluster.key"
    if not secret.exists():
        secret.write_bytes(os.urandom(32))
        secret.chmod(0o600)
    conf = {
        "public": {"bind": "127.0.0.1:0", "certfile": str(pki.cert), "keyfile": str(pki.key)},
        "connectors": {"bind": "127.0.0.1:0"},
        "store": "redis://127.0.0.1:1/0",  # never contacted: routes are opened, not looked up
        "edge-id": "edge-c",
        "cluster": {
            "relay": "127.0.0.1:7900",  # edge C's own listener is not started here
            "secret-file": str(secret),
            "protocol": protocol,
            **cluster,
        },
    }
    path = directory / f"edge-{len(list(directory.glob('edge-*.yaml')))}.yaml"
    path.write_text(json.dumps(conf))
    return path


@contextlib.asynccontextmanager
async def _edges(
    directory: Path, pki: DevPKI, protocol: str, **cluster: Any
) -> AsyncIterator[tuple[ClusterPeers, int]]:
    """Edge C (relaying, in process, from its ``edge.yaml``) and edge A's relay listener
    (serving, with the same secret and the cluster's certificate); yields C and A's port."""
    config = load_edge_config(_edge_yaml(directory, pki, protocol, **cluster))
    assert config.cluster is not None
    key = derive_relay_key(read_cluster_secret(config.cluster.secret_file))
    listener = PeerListener("edge-a", key, Registry())
    port = await listener.start("127.0.0.1", 0, str(pki.cert), str(pki.key))
    client = aioredis.Redis(port=1)
    relaying = ClusterPeers(config, Registry(), client)
    try:
        yield relaying, port
    finally:
        await relaying.stop()
        listener.close()
        await client.aclose()


async def _route(relaying: ClusterPeers, edge_id: str, port: int) -> Any:
    return await relaying.route(
        PeerEntry(edge_id, HostPort("127.0.0.1", port), {"t": 1}), "t", "demo"
    )


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_a_tls_terminating_middlebox_is_refused_by_both_edges(
    pki: DevPKI,
    mitm_pki: DevPKI,
    protocol: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[Any, Any, int]:
        async with _edges(tmp_path, pki, protocol) as (relaying, port):
            direct = await _route(relaying, "edge-a", port)
            assert direct is not None  # the same two edges, no middlebox: relayed
            direct_hop = direct.hops()[0]
            box = _middlebox(protocol, port, mitm_pki)
            async with box.running() as mitm_port:
                through = await _route(relaying, "edge-a-behind-mitm", mitm_port)
                await asyncio.sleep(0.1)  # the serving edge's log line
            return direct_hop, through, box.connections

    with caplog.at_level(logging.INFO, logger=LOGGER):
        direct_hop, through, connections = asyncio.run(scenario())
    assert direct_hop["post_quantum"] and direct_hop["transport"] in ("quic", "tcp")
    assert connections >= 1 and through is None
    logged = caplog.text
    # The serving edge: the proof reached it through the middlebox, made over another
    # certificate than the one it presented.
    assert "refused relay link from 127.0.0.1" in logged
    assert f"edge 'edge-c': {SERVING_SAYS}" in logged
    # The relaying edge: the certificate it received is the middlebox's, not the edge's.
    ours, theirs = _leaf_fingerprint(pki.cert), _leaf_fingerprint(mitm_pki.cert)
    assert "relay: edge edge-a-behind-mitm at 127.0.0.1:" in logged
    assert RELAYING_SAYS in logged
    assert f"received here: {show_fingerprint(theirs)}" in logged
    assert f"the edge says it presented: {show_fingerprint(ours)}" in logged
    assert "not relaying there" in logged
    assert "Traceback" not in logged


@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_the_binding_follows_the_certificate_presented_of_two_pairs(
    pki: DevPKI, tmp_path_factory: pytest.TempPathFactory, protocol: str
) -> None:
    """A serving edge with an ECDSA and an ML-DSA pair presents the ML-DSA one to a peer that
    offers ML-DSA: the proofs must be checked against that one, not the ``certfile``."""
    ml = make_dev_pki(tmp_path_factory.mktemp("ml65"), sig="ml-dsa-65")
    key = derive_relay_key(os.urandom(32))

    async def scenario() -> dict[str, Any]:
        listener = PeerListener("edge-a", key, Registry())
        port = await listener.start(
            "127.0.0.1", 0, str(pki.cert), str(pki.key), certificates=[(str(ml.cert), str(ml.key))]
        )
        try:
            link = await open_peer_link(
                "edge-c", key, "edge-a", HostPort("127.0.0.1", port), PeerCounts(), protocol
            )
            hop = link.hop()
            await link.aclose("done")
            return hop
        finally:
            listener.close()

    hop = asyncio.run(scenario())
    assert hop["signature_scheme"] == "ML-DSA-65" and hop["post_quantum"]


def test_a_forwarder_that_does_not_terminate_tls_is_harmless(
    pki: DevPKI, mitm_pki: DevPKI, tmp_path: Path
) -> None:
    """A TCP load balancer in front of the relay port is not a middlebox in this sense."""

    async def scenario() -> tuple[Any, int]:
        async with _edges(tmp_path, pki, "http2") as (relaying, port):
            box = TcpMiddlebox(port, mitm_pki, terminate=False)
            async with box.running() as forwarded:
                route = await _route(relaying, "edge-a", forwarded)
                hop = route.hops()[0] if route is not None else None
            return hop, box.connections

    hop, connections = asyncio.run(scenario())
    assert connections == 1 and hop is not None and hop["transport"] == "tcp"


@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_cluster_ca_file_verifies_the_peer(
    pki: DevPKI,
    mitm_pki: DevPKI,
    protocol: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the cluster's CA the peer relays; a wrong CA, a wrong name, or a middlebox (whose
    certificate that CA did not issue) is refused in the handshake already."""

    async def attempt(port_of: str, **cluster: Any) -> bool:
        async with _edges(tmp_path, pki, protocol, **cluster) as (relaying, port):
            if port_of == "direct":
                return await _route(relaying, "edge-a", port) is not None
            async with _middlebox(protocol, port, mitm_pki).running() as mitm_port:
                return await _route(relaying, "edge-a", mitm_port) is not None

    right, wrong = str(pki.ca_cert), str(mitm_pki.ca_cert)
    assert asyncio.run(attempt("direct", **{"ca-file": right}))
    assert asyncio.run(attempt("direct", **{"ca-file": right, "server-name": "localhost"}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not asyncio.run(attempt("direct", **{"ca-file": wrong}))
        refused_ca = caplog.text
        caplog.clear()
        name = {"ca-file": right, "server-name": "other.example.test"}
        assert not asyncio.run(attempt("direct", **name))
        refused_name = caplog.text
        caplog.clear()
        assert not asyncio.run(attempt("mitm", **{"ca-file": right}))
        refused_mitm = caplog.text
    for logged in (refused_ca, refused_name, refused_mitm):
        assert "relay: edge edge-a at 127.0.0.1:" in logged and "cannot connect" in logged
        assert "not relaying there" in logged and "Traceback" not in logged
    assert "unable to get local issuer certificate" in refused_ca, refused_ca
    assert "unable to get local issuer certificate" in refused_mitm, refused_mitm
    assert "other.example.test" in refused_name, refused_name


def test_server_name_needs_ca_file(pki: DevPKI, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only applies with `ca-file`"):
        load_edge_config(_edge_yaml(tmp_path, pki, "auto", **{"server-name": "localhost"}))
    config = load_edge_config(_edge_yaml(tmp_path, pki, "auto", **{"ca-file": str(pki.ca_cert)}))
    assert config.cluster is not None and config.cluster.ca_file == pki.ca_cert
    assert config.cluster.server_name is None
