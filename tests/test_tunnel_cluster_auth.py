"""The cluster's edge-to-edge authentication (:mod:`pq_quic_plugin.tunnel.cluster.peer_auth`)
and the choice of a peer edge (:mod:`...cluster.choose`), in process; and the relay listener
against real QUIC and TCP peers on loopback: a member is admitted and its pings answered,
a peer with another secret or a stranger speaking junk is refused and logged, never answered
with anything but the one refusal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import pytest

from pq_quic_plugin.devcert import DevPKI, make_dev_pki
from pq_quic_plugin.tunnel.cluster.cert_binding import fingerprint
from pq_quic_plugin.tunnel.cluster.choose import DOWN_FOR, UNKNOWN_RTT, rank, score
from pq_quic_plugin.tunnel.cluster.directory import PeerEntry
from pq_quic_plugin.tunnel.cluster.peer_auth import (
    AUTH_FAILED,
    RELAYING,
    SERVING,
    derive_relay_key,
    new_nonce,
    peer_proof,
    verify_peer_proof,
)
from pq_quic_plugin.tunnel.cluster.peer_client import PeerError, open_peer_link
from pq_quic_plugin.tunnel.cluster.peer_listener import PeerListener
from pq_quic_plugin.tunnel.cluster.stats import PeerCounts
from pq_quic_plugin.tunnel.edge.registry import Registry
from pq_quic_plugin.tunnel.hostnames import HostPort


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    return make_dev_pki(tmp_path_factory.mktemp("pki"), hostnames=("localhost",))


def test_proofs_depend_on_key_role_edge_certificate_and_nonces() -> None:
    key = derive_relay_key(os.urandom(32))
    other = derive_relay_key(os.urandom(32))
    nonce = new_nonce()
    cert = fingerprint(b"the serving edge's certificate")
    proof = peer_proof(key, RELAYING, "edge-c", cert, nonce)
    assert verify_peer_proof(key, RELAYING, "edge-c", cert, proof, nonce)
    assert not verify_peer_proof(other, RELAYING, "edge-c", cert, proof, nonce)
    assert not verify_peer_proof(key, SERVING, "edge-c", cert, proof, nonce)  # roles never swap
    assert not verify_peer_proof(key, RELAYING, "edge-d", cert, proof, nonce)
    assert not verify_peer_proof(key, RELAYING, "edge-c", cert, proof, new_nonce())
    # Bound to the certificate: the same proof over a middlebox's certificate is worthless.
    middlebox = fingerprint(b"a middlebox's certificate")
    assert not verify_peer_proof(key, RELAYING, "edge-c", middlebox, proof, nonce)
    assert derive_relay_key(b"s" * 32) == derive_relay_key(b"s" * 32) != b"s" * 32


def test_rank_prefers_fast_idle_edges_and_skips_down_ones() -> None:
    a = PeerEntry("edge-a", HostPort("127.0.0.1", 1), {"t": 1})
    b = PeerEntry("edge-b", HostPort("127.0.0.1", 2), {"t": 1})
    assert score(None) == UNKNOWN_RTT
    assert [p.edge_id for p in rank([b, a], {}, {})] == ["edge-a", "edge-b"]  # a tie: by ID
    assert [p.edge_id for p in rank([a, b], {}, {"edge-a": 100.0}, now=50.0)] == ["edge-b"]
    later = 100.0 + DOWN_FOR
    assert [p.edge_id for p in rank([a, b], {}, {"edge-a": 100.0}, now=later)][0] == "edge-a"


async def _listener(pki: DevPKI, key: bytes) -> tuple[PeerListener, int]:
    listener = PeerListener("edge-a", key, Registry())
    port = await listener.start("127.0.0.1", 0, str(pki.cert), str(pki.key))
    return listener, port


@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_a_member_is_admitted_and_pinged(pki: DevPKI, protocol: str) -> None:
    key = derive_relay_key(os.urandom(32))

    async def scenario() -> tuple[str | None, bool, float | None, str]:
        listener, port = await _listener(pki, key)
        try:
            link = await open_peer_link(
                "edge-c", key, "edge-a", HostPort("127.0.0.1", port), PeerCounts(), protocol
            )
            await asyncio.sleep(1.2)  # one ping
            facts = (link.group, link.post_quantum, link.srtt, link.hop()["transport"])
            await link.aclose("done")
            return facts
        finally:
            listener.close()

    group, post_quantum, srtt, transport = asyncio.run(scenario())
    assert group == "X25519MLKEM768" and post_quantum
    assert srtt is not None and 0 < srtt < 1
    assert transport == {"quic": "quic", "http2": "tcp"}[protocol]


@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_an_edge_with_another_secret_is_refused_and_logged(
    pki: DevPKI, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> str:
        listener, port = await _listener(pki, derive_relay_key(os.urandom(32)))
        try:
            with pytest.raises(PeerError) as refused:
                await open_peer_link(
                    "edge-x",
                    derive_relay_key(os.urandom(32)),
                    "edge-a",
                    HostPort("127.0.0.1", port),
                    PeerCounts(),
                    protocol,
                )
            return str(refused.value)
        finally:
            listener.close()

    with caplog.at_level(logging.INFO, logger="pq_quic_plugin.tunnel.cluster"):
        said = asyncio.run(scenario())
    assert "cluster authentication failed" in said
    logged = caplog.text
    assert "refused relay link from 127.0.0.1" in logged
    assert "edge 'edge-x' does not hold this cluster's secret" in logged
    assert "Traceback" not in logged


def test_a_stranger_speaking_junk_is_refused(pki: DevPKI, tmp_path: Path) -> None:
    """A client that completes TLS and sends a stream of junk instead of ``peer-hello``."""
    from pq_quic_plugin.tunnel.cluster.peer_dial import dial_peer
    from pq_quic_plugin.tunnel.wire import FrameType

    async def scenario() -> str:
        listener, port = await _listener(pki, derive_relay_key(os.urandom(32)))
        stack = contextlib.AsyncExitStack()
        try:
            dial = dial_peer(stack, "quic", HostPort("127.0.0.1", port), None)
            link, control = await dial
            await control.send(FrameType.DATA, b"\xff" * 100)
            await asyncio.wait_for(link.closed_event.wait(), 5)
            return link.close_reason
        finally:
            await stack.aclose()
            listener.close()

    assert asyncio.run(scenario()) == AUTH_FAILED
