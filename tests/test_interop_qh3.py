"""Interoperability with qh3, an independent QUIC/TLS stack (its ML-KEM is Rust's aws-lc-rs).

Both directions must land on X25519MLKEM768. Byte-order or combiner mistakes in our hybrid
would still "work" between two copies of our own code; they cannot work against qh3.
"""

from __future__ import annotations

import logging

import pytest
from peers.qh3_peer import ECHO_ALPN, Qh3HandshakeError, Qh3Server, qh3_handshake_async
from quic_util import (
    HANDSHAKE_FAILURE,
    PING,
    Outcome,
    Peer,
    client_configuration,
    connect_client,
    run,
    running_server,
    server_configuration,
)

from pq_quic_plugin.devcert import DevPKI


def _our_client_against_qh3(
    pki: DevPKI, qh3: Qh3Server, client: Peer, fails: bool = False
) -> Outcome:
    config = client.apply(client_configuration(pki, alpn=ECHO_ALPN))
    return run(lambda: connect_client(qh3.port, config, fails))


def test_qh3_client_to_our_server_negotiates_x25519mlkem768(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = Peer("prefer").apply(server_configuration(pki, alpn=ECHO_ALPN))
        async with running_server(server) as srv:
            result = await qh3_handshake_async("127.0.0.1", srv.port, ECHO_ALPN, pki.ca_cert)
            return result, srv.results

    result, server_results = run(scenario)
    assert result.selected_group == "X25519MLKEM768"  # what qh3 received in the ServerHello
    assert server_results == [{"group": "X25519MLKEM768", "retry": False}]
    assert result.response == b"ping"


def test_our_client_to_qh3_server_negotiates_x25519mlkem768(pki) -> None:
    with Qh3Server(pki.cert, pki.key) as qh3:
        out = _our_client_against_qh3(pki, qh3, Peer("prefer"))
        record = qh3.next_record()
    assert (out.group, out.post_quantum) == ("X25519MLKEM768", True)
    assert record["event"] == "handshake"
    assert record["selected_group"] == "X25519MLKEM768"
    assert out.echo == PING


@pytest.mark.parametrize("group", ["X25519MLKEM768", "x25519", "secp256r1"])
def test_our_require_or_prefer_client_with_one_group_against_qh3(pki, group: str) -> None:
    policy = "require" if group == "X25519MLKEM768" else "prefer"
    with Qh3Server(pki.cert, pki.key) as qh3:
        out = _our_client_against_qh3(pki, qh3, Peer(policy, groups=[group]))
        record = qh3.next_record()
    assert out.group == record["selected_group"] == group


def test_our_require_client_against_classical_only_qh3_server_fails_clearly(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        Qh3Server(pki.cert, pki.key, groups=["x25519", "secp256r1"]) as qh3,
        caplog.at_level(logging.ERROR, logger="pq_quic_plugin"),
    ):
        out = _our_client_against_qh3(pki, qh3, Peer("require"), fails=True)
    assert out.error is not None and out.error.error_code == HANDSHAKE_FAILURE
    assert "no post-quantum group in common" in out.error.reason_phrase
    assert "X25519MLKEM768" in out.error.reason_phrase


def test_classical_only_qh3_client_refused_by_our_require_server(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = Peer("require").apply(server_configuration(pki, alpn=ECHO_ALPN))
        async with running_server(server) as srv:
            with pytest.raises(Qh3HandshakeError) as info:
                await qh3_handshake_async(
                    "127.0.0.1", srv.port, ECHO_ALPN, pki.ca_cert, groups=["x25519"]
                )
            return info.value, srv.results

    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        error, results = run(scenario)
    assert error.error_code == HANDSHAKE_FAILURE
    assert "no post-quantum" in (error.reason or "")
    assert results == []
    assert "refusing handshake" in caplog.text
