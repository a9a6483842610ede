"""Smoke tests of the independent-peer helpers: qh3 and niquests against qh3 and stock aioquic.

They prove the helpers before other tests lean on them: the wire observer reports the group the
server really selected (cross-checked against the server's own state), group restrictions take
effect, failures carry the peer's close reason, and the child server never outlives a test.
Real UDP on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os

import aioquic.tls
import pytest
from aioquic.quic import events
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from peers.qh3_peer import (
    ECHO_ALPN,
    Qh3HandshakeError,
    Qh3Result,
    Qh3Server,
    niquests_h3_get,
    qh3_handshake,
    qh3_handshake_async,
)
from quic_util import EchoServerProtocol, run, running_server, server_configuration

from pq_quic_plugin.aioquic_binding.facade import quic_of
from pq_quic_plugin.devcert import DevPKI

PQ, CLASSICAL = "X25519MLKEM768", "x25519"


def test_pki_is_a_ca_and_a_p256_server_leaf(pki: DevPKI) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca_pem)
    leaf = x509.load_pem_x509_certificate(pki.cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    now = datetime.datetime.now(datetime.timezone.utc)
    assert leaf.not_valid_before_utc < now - datetime.timedelta(hours=23)
    assert leaf.not_valid_after_utc > now + datetime.timedelta(days=29)
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pki.spki_sha256_b64 == base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_qh3_client_and_server_negotiate_x25519mlkem768(pki: DevPKI) -> None:
    with Qh3Server(pki.cert, pki.key) as server:
        result = qh3_handshake("127.0.0.1", server.port, ECHO_ALPN, pki.ca_cert)
        record = server.next_record()
    assert result.response == b"ping" and result.alpn == ECHO_ALPN
    assert result.offered_key_shares[-2:] == [PQ, CLASSICAL]
    assert result.selected_group == PQ
    assert record["event"] == "handshake" and record["selected_group"] == PQ
    assert record["qh3_key_exchange"] == [PQ]  # qh3's own state agrees with the wire


def test_qh3_http3_get_reports_the_group_the_server_saw(pki: DevPKI) -> None:
    with Qh3Server(pki.cert, pki.key) as server:
        result = qh3_handshake("localhost", server.port, "h3", pki.ca_cert)
    assert result.alpn == "h3" and result.status == 200
    body = json.loads(result.response)
    assert body["selected_group"] == result.selected_group == PQ


def test_restricted_qh3_server_selects_classical(pki: DevPKI) -> None:
    with Qh3Server(pki.cert, pki.key, groups=[CLASSICAL, "secp256r1"]) as server:
        default = qh3_handshake("127.0.0.1", server.port, ECHO_ALPN, pki.ca_cert)
        p256 = qh3_handshake("127.0.0.1", server.port, ECHO_ALPN, pki.ca_cert, groups=["secp256r1"])
        records = [server.next_record(), server.next_record()]
    assert PQ in default.offered_key_shares and default.selected_group == CLASSICAL
    assert p256.offered_key_shares == p256.supported_groups == ["secp256r1"]
    assert p256.selected_group == "secp256r1"
    assert [r["qh3_key_exchange"] for r in records] == [[CLASSICAL], ["secp256r1"]]


def test_no_common_group_fails_with_the_servers_reason(pki: DevPKI) -> None:
    with Qh3Server(pki.cert, pki.key, groups=[PQ]) as server:
        with pytest.raises(Qh3HandshakeError, match="No supported key share") as failure:
            qh3_handshake("127.0.0.1", server.port, ECHO_ALPN, pki.ca_cert, groups=[CLASSICAL])
        record = server.next_record()
    assert failure.value.error_code == 0x128  # CRYPTO_ERROR + handshake_failure(40)
    assert failure.value.hello.offered_key_shares == [CLASSICAL]
    assert record["event"] == "failed" and record["selected_group"] is None


def test_server_child_process_is_reaped(pki: DevPKI) -> None:
    with Qh3Server(pki.cert, pki.key) as server:
        pid = server.pid
        assert pid is not None
        os.kill(pid, 0)  # alive while in use
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


class _StockEchoProtocol(EchoServerProtocol):
    """Plain aioquic echo server; remembers its TLS contexts to check they are stock."""

    contexts: list[aioquic.tls.Context] = []

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self.contexts.append(quic_of(self).tls)
        super().quic_event_received(event)


def test_qh3_client_against_stock_aioquic_falls_back_to_classical(pki: DevPKI) -> None:
    async def main() -> Qh3Result:
        stock = server_configuration(pki, alpn=ECHO_ALPN)
        async with running_server(stock, _StockEchoProtocol) as server:
            return await qh3_handshake_async("127.0.0.1", server.port, ECHO_ALPN, pki.ca_cert)

    _StockEchoProtocol.contexts = []
    result = run(main)
    assert result.response == b"ping"
    assert PQ in result.offered_key_shares and result.selected_group == CLASSICAL
    (context,) = _StockEchoProtocol.contexts
    assert type(context) is aioquic.tls.Context  # not converted by pq_quic_plugin
    assert context._x25519_private_key is not None  # aioquic's own view: it chose X25519


def test_niquests_forced_to_http3(pki: DevPKI) -> None:
    with Qh3Server(pki.cert, pki.key) as server:
        result = niquests_h3_get(f"https://127.0.0.1:{server.port}/", pki.ca_cert)
        record = server.next_record()
    assert result.status == 200 and result.http_version == "HTTP/3.0"
    assert json.loads(result.body)["selected_group"] == PQ
    assert record["alpn"] == "h3" and record["qh3_key_exchange"] == [PQ]
