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
    client_configuration,
    echo_once,
    expect_handshake_failure,
    run,
    running_server,
    server_configuration,
)

from pq_quic_plugin import configure


def _alpn(config):  # type: ignore[no-untyped-def]
    config.alpn_protocols = [ECHO_ALPN]
    return config


def test_qh3_client_to_our_server_negotiates_x25519mlkem768(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(_alpn(server_configuration(pki)), "prefer")
        async with running_server(server) as srv:
            result = await qh3_handshake_async("127.0.0.1", srv.port, ECHO_ALPN, pki.ca_cert)
            return result, srv.results

    result, server_results = run(scenario)
    assert result.selected_group == "X25519MLKEM768"  # what qh3 received in the ServerHello
    assert server_results == [{"group": "X25519MLKEM768", "retry": False}]
    assert result.response == b"ping"


def test_our_client_to_qh3_server_negotiates_x25519mlkem768(pki) -> None:
    with Qh3Server(pki.cert, pki.key) as qh3:
        async def scenario():  # type: ignore[no-untyped-def]
            client = configure(_alpn(client_configuration(pki)), "prefer")
            return await echo_once(qh3.port, client)

        result = run(scenario)
        record = qh3.next_record()
    assert (result.group, result.post_quantum) == ("X25519MLKEM768", True)
    assert record["event"] == "handshake"
    assert record["selected_group"] == "X25519MLKEM768"
    assert result.echo == b"ping over post-quantum QUIC"


@pytest.mark.parametrize("group", ["X25519MLKEM768", "x25519", "secp256r1"])
def test_our_require_or_prefer_client_with_one_group_against_qh3(pki, group: str) -> None:
    policy = "require" if group == "X25519MLKEM768" else "prefer"
    with Qh3Server(pki.cert, pki.key) as qh3:
        async def scenario():  # type: ignore[no-untyped-def]
            client = configure(_alpn(client_configuration(pki)), policy, groups=[group])
            return await echo_once(qh3.port, client)

        result = run(scenario)
        record = qh3.next_record()
    assert result.group == record["selected_group"] == group


def test_our_require_client_against_classical_only_qh3_server_fails_clearly(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    with Qh3Server(pki.cert, pki.key, groups=["x25519", "secp256r1"]) as qh3:
        async def scenario():  # type: ignore[no-untyped-def]
            client = configure(_alpn(client_configuration(pki)), "require")
            return await expect_handshake_failure(qh3.port, client)

        with caplog.at_level(logging.ERROR, logger="pq_quic_plugin"):
            event = run(scenario)
    assert event.error_code == HANDSHAKE_FAILURE
    assert "no post-quantum group in common" in event.reason_phrase
    assert "X25519MLKEM768" in event.reason_phrase


def test_classical_only_qh3_client_refused_by_our_require_server(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(_alpn(server_configuration(pki)), "require")
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
