"""The listener base both gated listeners share (``edge/admission.py``): a subclass names
the key-exchange policies it runs under, and the base holds it to them. The behaviour of
admission itself (deadline, control stream first, answers and closes) is exercised through
both listeners by test_tunnel_registration_hardening and test_tunnel_cluster_auth."""

from __future__ import annotations

import asyncio

import pytest

from pq_quic_plugin.policy import Policy
from pq_quic_plugin.tunnel.cluster.peer_listener import PeerListener
from pq_quic_plugin.tunnel.edge.registry import Registry


@pytest.mark.parametrize("policy", [Policy.PREFER, Policy.OFF])
def test_the_relay_listener_runs_post_quantum_only(policy: Policy) -> None:
    """The relay's key exchange is ``require`` whatever a caller passes: anything else is
    refused before a socket is bound."""
    listener = PeerListener("edge-a", b"k" * 32, Registry())
    with pytest.raises(ValueError, match="relay link listener does not run under"):
        asyncio.run(listener.start("127.0.0.1", 0, "unused.pem", "unused.key", policy=policy))
    listener.close()
