"""Real aioquic handshakes over UDP on 127.0.0.1: every group, both sides ours."""

from __future__ import annotations

import logging

import pytest
from quic_util import PING, Peer, handshake

import pq_quic_plugin
from pq_quic_plugin import available_groups, configure

GROUP_NAMES = [g.name for g in available_groups()]


@pytest.mark.parametrize("name", GROUP_NAMES)
def test_every_group_completes_a_handshake(pki, name: str) -> None:
    out = handshake(pki, server=Peer("prefer"), client=Peer("prefer", groups=[name]))
    assert out.echo == PING
    assert out.group == name
    assert out.server == [{"group": name, "retry": False}]
    assert out.post_quantum == pq_quic_plugin.group_by_name(name).post_quantum


def test_default_prefer_negotiates_x25519mlkem768_in_one_round_trip(pki) -> None:
    out = handshake(pki, server=Peer(), client=Peer())  # configure() with its defaults
    assert (out.group, out.retry) == ("X25519MLKEM768", False)
    assert out.server[0]["group"] == "X25519MLKEM768"


@pytest.mark.parametrize(
    "server,client,group",
    [
        pytest.param(
            # The client lists x25519 first and sends both shares; aioquic would take x25519.
            Peer("prefer"),
            Peer(
                "prefer",
                groups=["x25519", "X25519MLKEM768"],
                key_shares=["x25519", "X25519MLKEM768"],
            ),
            "X25519MLKEM768",
            id="server-follows-its-own-preference-not-the-clients-share-order",
        ),
        pytest.param(
            Peer("prefer", groups=["SecP256r1MLKEM768", "X25519MLKEM768"]),
            Peer(
                "prefer",
                groups=["X25519MLKEM768", "SecP256r1MLKEM768"],
                key_shares=["X25519MLKEM768", "SecP256r1MLKEM768"],
            ),
            "SecP256r1MLKEM768",
            id="server-group-list-orders-the-choice",
        ),
        pytest.param(
            Peer("PREFER", groups=["x25519mlkem768"]),
            Peer("Require", groups=["X25519MLKEM768"]),
            "X25519MLKEM768",
            id="group-names-and-policies-are-case-insensitive",
        ),
    ],
)
def test_the_server_chooses_the_group(pki, server: Peer, client: Peer, group: str) -> None:
    assert handshake(pki, server=server, client=client).group == group


def test_unknown_group_name_lists_valid_names() -> None:
    from aioquic.quic.configuration import QuicConfiguration

    with pytest.raises(pq_quic_plugin.UnknownGroupError) as info:
        configure(QuicConfiguration(is_client=True), "prefer", groups=["X25519Kyber9000"])
    assert "X25519Kyber9000" in str(info.value)
    assert "X25519MLKEM768" in str(info.value) and "secp384r1" in str(info.value)


def test_require_with_only_classical_groups_is_a_configuration_error() -> None:
    from aioquic.quic.configuration import QuicConfiguration

    with pytest.raises(ValueError, match="at least one post-quantum group"):
        configure(QuicConfiguration(is_client=True), "require", groups=["x25519"])


def test_policy_is_logged_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    from aioquic.quic.configuration import QuicConfiguration

    with caplog.at_level(logging.INFO, logger="pq_quic_plugin"):
        configure(QuicConfiguration(is_client=True), "require")
    assert "policy=require groups=[X25519MLKEM768]" in caplog.text
