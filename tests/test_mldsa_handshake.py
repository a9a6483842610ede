"""ML-DSA authentication over real QUIC on 127.0.0.1: every parameter set, two certificates per
server chosen per client, the ``require`` policy on both sides, and corrupted signatures.

The servers are aioquic's ``serve()`` with the binding; clients are ours, stock aioquic and qh3
(neither of which offers ML-DSA, so they stand for every classical client).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio import connect
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mldsa_tcp_util import ml_dsa_leaf_under_ecdsa_ca
from mldsa_util import PARAMETER_SETS, ml_dsa_pki
from peers.qh3_peer import ECHO_ALPN, Qh3HandshakeError, Qh3Server, qh3_handshake_async
from quic_util import (
    HANDSHAKE_FAILURE,
    INITIAL_RTT,
    PING,
    EchoServerProtocol,
    Outcome,
    connect_client,
    crypto_error,
    run,
    running_server,
)
from waiting import wait_until_async

import pq_quic_plugin
from pq_quic_plugin import configure, configure_auth
from pq_quic_plugin.aioquic_binding import PostQuantumContext, settings_of
from pq_quic_plugin.aioquic_binding.certificates import Credential
from pq_quic_plugin.aioquic_binding.hook import _SETTINGS_ATTR
from pq_quic_plugin.aioquic_binding.reasons import MAX_REASON_BYTES
from pq_quic_plugin.devcert import DevPKI

DECRYPT_ERROR = crypto_error(51)
BAD_CERTIFICATE = crypto_error(42)


class FactsServerProtocol(EchoServerProtocol):
    """Echo server that records the group and the authentication facts of each handshake."""

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            scheme = pq_quic_plugin.negotiated_signature_scheme(self)
            self.results.append(
                {
                    "scheme": scheme.name if scheme else None,
                    "pq_auth": pq_quic_plugin.post_quantum_auth(self),
                }
            )
            return
        super().quic_event_received(event)


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory, pki: DevPKI) -> dict[str, Any]:
    """One ML-DSA PKI per parameter set, and a CA file trusting them and the ECDSA test CA."""
    directory = tmp_path_factory.mktemp("mldsa")
    out: dict[str, Any] = {sig: ml_dsa_pki(directory, sig) for sig, _ in PARAMETER_SETS}
    every_ca = directory / "cas.pem"
    every_ca.write_bytes(pki.ca_pem + b"".join(p.ca_pem for p in out.values()))
    out["cas"] = every_ca
    return out


def server_config(cert: Path, key: Path, alpn: str = "pq-test") -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=[alpn], initial_rtt=INITIAL_RTT)
    config.load_cert_chain(str(cert), str(key))
    return configure(config)


def client_config(cafile: Path, auth: str | None = "prefer", alpn: str = "pq-test") -> Any:
    """Our client (``auth`` set) or, with ``auth=None``, stock aioquic."""
    config = QuicConfiguration(
        is_client=True, alpn_protocols=[alpn], server_name="localhost", initial_rtt=INITIAL_RTT
    )
    config.load_verify_locations(str(cafile))
    if auth is not None:
        configure(config)
        configure_auth(config, auth)
    return config


def exchange(
    server: QuicConfiguration, client: QuicConfiguration, fails: bool = False
) -> tuple[Outcome, list[dict[str, Any]], list[events.ConnectionTerminated], Any]:
    """One client against one server; the client's outcome and facts, the server's records."""

    async def scenario() -> Any:
        async with running_server(server, FactsServerProtocol) as srv:
            if fails:
                outcome = await connect_client(srv.port, client, fails=True)
                facts = None
                await wait_until_async(lambda: srv.closes, 5, "the server's side to close")
            else:
                outcome, facts = await _echo_with_facts(srv.port, client)
            return outcome, list(srv.results), list(srv.closes), facts

    return run(scenario)


async def _echo_with_facts(port: int, configuration: QuicConfiguration) -> Any:
    async with connect("127.0.0.1", port, configuration=configuration) as client:
        reader, writer = await client.create_stream()
        writer.write(PING)
        writer.write_eof()
        echo = await reader.read()
        scheme = pq_quic_plugin.negotiated_signature_scheme(client)
        facts = {
            "scheme": scheme.name if scheme else None,
            "pq_auth": pq_quic_plugin.post_quantum_auth(client),
        }
        return Outcome(echo=echo), facts


# ------------------------------------------------------------------------- every parameter set


@pytest.mark.parametrize("sig,codepoint", PARAMETER_SETS)
def test_ml_dsa_chain_authenticates_both_ways(
    pkis: dict[str, Any], sig: str, codepoint: int
) -> None:
    pki = pkis[sig]
    out, server, _, facts = exchange(server_config(pki.cert, pki.key), client_config(pki.ca_cert))
    name = sig.upper()
    assert out.echo == PING
    assert facts == {"scheme": name, "pq_auth": True}
    assert server == [{"scheme": name, "pq_auth": True}]
    assert pq_quic_plugin.auth_policy.scheme_by_codepoint(codepoint).name == name  # type: ignore[union-attr]


# ---------------------------------------------------------------- two certificates per server


def dual_server(
    pki: DevPKI, pkis: dict[str, Any], auth: str = "prefer", alpn: str = "pq-test"
) -> Any:
    """ECDSA pair loaded the aioquic way, ML-DSA-65 added through configure_auth."""
    config = server_config(pki.cert, pki.key, alpn)
    return configure_auth(
        config, auth, certificates=[(pkis["ml-dsa-65"].cert, pkis["ml-dsa-65"].key)]
    )


@pytest.mark.parametrize(
    "auth,expected",
    [
        pytest.param(
            "prefer", {"scheme": "ML-DSA-65", "pq_auth": True}, id="our-client-gets-ml-dsa"
        ),
        pytest.param("off", {"scheme": "ECDSA-P256-SHA256", "pq_auth": False}, id="auth-off-ecdsa"),
    ],
)
def test_dual_certificate_server_follows_our_client(
    pki: DevPKI, pkis: dict[str, Any], auth: str, expected: dict[str, Any]
) -> None:
    out, server, _, facts = exchange(dual_server(pki, pkis), client_config(pkis["cas"], auth))
    assert out.echo == PING
    assert facts == expected and server == [expected]


def test_dual_certificate_server_gives_stock_aioquic_the_ecdsa_certificate(
    pki: DevPKI, pkis: dict[str, Any]
) -> None:
    # Stock aioquic trusts only the ECDSA CA: it could not verify the ML-DSA chain at all.
    out, server, _, _ = exchange(dual_server(pki, pkis), client_config(pki.ca_cert, auth=None))
    assert out.echo == PING
    assert server == [{"scheme": "ECDSA-P256-SHA256", "pq_auth": False}]


def test_dual_certificate_server_gives_qh3_the_ecdsa_certificate(
    pki: DevPKI, pkis: dict[str, Any]
) -> None:
    async def scenario() -> Any:
        async with running_server(
            dual_server(pki, pkis, alpn=ECHO_ALPN), FactsServerProtocol
        ) as srv:
            result = await qh3_handshake_async("127.0.0.1", srv.port, ECHO_ALPN, pki.ca_cert)
            return result, list(srv.results)

    result, server = run(scenario)
    assert result.response == b"ping"
    assert server == [{"scheme": "ECDSA-P256-SHA256", "pq_auth": False}]


# --------------------------------------------------------------------------- require policy


def test_require_server_refuses_a_client_without_ml_dsa_and_says_why(
    pki: DevPKI, pkis: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        out, server, closes, _ = exchange(
            dual_server(pki, pkis, auth="require"),
            client_config(pki.ca_cert, auth=None),
            fails=True,
        )
    assert out.error is not None and out.error.error_code == HANDSHAKE_FAILURE
    reason = out.error.reason_phrase  # what the stock client received from our server
    assert "client offered no ML-DSA signature scheme" in reason
    assert "ECDSA-P256-SHA256" in reason and "accepts: ML-DSA-65" in reason
    assert len(reason.encode()) <= MAX_REASON_BYTES
    assert server == [] and [c.error_code for c in closes] == [HANDSHAKE_FAILURE]
    assert "refusing handshake: client offered no ML-DSA" in caplog.text


def test_require_server_refuses_qh3(pki: DevPKI, pkis: dict[str, Any]) -> None:
    async def scenario() -> Any:
        config = dual_server(pki, pkis, auth="require", alpn=ECHO_ALPN)
        async with running_server(config, FactsServerProtocol) as srv:
            with pytest.raises(Qh3HandshakeError) as info:
                await qh3_handshake_async("127.0.0.1", srv.port, ECHO_ALPN, pki.ca_cert)
            return info.value, list(srv.results)

    error, server = run(scenario)
    assert error.error_code == HANDSHAKE_FAILURE and server == []
    assert "no ML-DSA signature scheme" in (error.reason or "")


def test_require_server_accepts_our_client(pki: DevPKI, pkis: dict[str, Any]) -> None:
    out, server, _, facts = exchange(
        dual_server(pki, pkis, auth="require"), client_config(pkis["cas"])
    )
    assert out.echo == PING and server == [{"scheme": "ML-DSA-65", "pq_auth": True}]


@pytest.mark.parametrize("kex", ["prefer", "require"])
def test_require_client_refuses_an_ecdsa_server_and_says_what_to_do(
    pki: DevPKI, kex: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Under key-exchange ``require`` too, the reason is about authentication: the group was
    agreed, so the explanation of a refused key exchange must not replace it."""
    client = client_config(pki.ca_cert, "require")
    configure(client, kex)
    with caplog.at_level(logging.ERROR, logger="pq_quic_plugin"):
        out, server, closes, _ = exchange(server_config(pki.cert, pki.key), client, fails=True)
    assert out.error is not None and out.error.error_code == HANDSHAKE_FAILURE
    reason = out.error.reason_phrase
    assert reason.startswith("server authenticated with ECDSA-P256-SHA256 (classical), not ML-DSA")
    assert "'require'" in reason and "ML-DSA certificate" in reason
    assert "post-quantum group" not in reason
    assert server == [] and [c.error_code for c in closes] == [HANDSHAKE_FAILURE]
    assert "devcert" in caplog.text and "No connection was made" in caplog.text


def test_require_client_refuses_the_ecdsa_qh3_server(pki: DevPKI) -> None:
    with Qh3Server(pki.cert, pki.key) as qh3:
        config = client_config(pki.ca_cert, "require", alpn=ECHO_ALPN)
        out = run(lambda: connect_client(qh3.port, config, fails=True))
    assert out.error is not None and out.error.error_code == HANDSHAKE_FAILURE
    assert "not ML-DSA" in out.error.reason_phrase


@pytest.mark.parametrize("auth", ["prefer", "require"])
def test_ml_dsa_leaf_under_a_classical_ca_is_not_post_quantum_authentication(
    tmp_path: Path, auth: str
) -> None:
    ca, cert, key = ml_dsa_leaf_under_ecdsa_ca(tmp_path)
    server = server_config(cert, key)
    client = client_config(ca, auth)
    if auth == "prefer":
        out, srv, _, facts = exchange(server, client)
        assert out.echo == PING
        assert facts == {"scheme": "ML-DSA-65", "pq_auth": False}  # forgeable ECDSA on the leaf
        assert srv == [{"scheme": "ML-DSA-65", "pq_auth": False}]
    else:
        out, srv, _, _ = exchange(server, client, fails=True)
        assert out.error is not None and out.error.error_code == HANDSHAKE_FAILURE
        assert "chain is not all ML-DSA" in out.error.reason_phrase and srv == []


# ------------------------------------------------------------------------- corrupted signatures


class _FlippingCredential(Credential):
    def sign(self, codepoint: int, data: bytes) -> bytes:
        signature = bytearray(super().sign(codepoint, data))
        signature[len(signature) // 3] ^= 0x04
        return bytes(signature)


class _TruncatingCredential(Credential):
    def sign(self, codepoint: int, data: bytes) -> bytes:
        return super().sign(codepoint, data)[:-7]


def _corrupting_server(config: QuicConfiguration, credential_class: type[Credential]) -> None:
    """Swap the server's TLS engine for one whose CertificateVerify signature is corrupted."""

    class CorruptingContext(PostQuantumContext):
        def _pq_choose_credential(self, offered: list[int] | None) -> tuple[Credential, int]:
            chosen, codepoint = super()._pq_choose_credential(offered)
            fields = {f.name: getattr(chosen, f.name) for f in dataclasses.fields(chosen)}
            return credential_class(**fields), codepoint

    settings = settings_of(config)
    assert settings is not None
    replaced = dataclasses.replace(settings, context_class=CorruptingContext)
    setattr(config, _SETTINGS_ATTR, replaced)


@pytest.mark.parametrize("corruption", [_FlippingCredential, _TruncatingCredential])
def test_corrupted_certificate_verify_is_decrypt_error_on_both_sides(
    pkis: dict[str, Any], corruption: type[Credential]
) -> None:
    pki = pkis["ml-dsa-65"]
    server = server_config(pki.cert, pki.key)
    _corrupting_server(server, corruption)
    out, srv, closes, _ = exchange(server, client_config(pki.ca_cert), fails=True)
    assert out.error is not None and out.error.error_code == DECRYPT_ERROR, out.error
    assert [c.error_code for c in closes] == [DECRYPT_ERROR] and srv == []


def test_flipped_bit_in_certificate_signature_is_bad_certificate(
    tmp_path: Path, pkis: dict[str, Any]
) -> None:
    pki = pkis["ml-dsa-65"]
    der = bytearray(
        x509.load_pem_x509_certificate(pki.cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-200] ^= 0x01  # inside the CA's ML-DSA signature over the leaf
    forged = x509.load_der_x509_certificate(bytes(der))
    forged_file = tmp_path / "forged.pem"
    forged_file.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    # The server signs its CertificateVerify correctly with the leaf's key: only the
    # certificate's own signature is wrong, so the chain check must catch it.
    out, srv, closes, _ = exchange(
        server_config(forged_file, pki.key), client_config(pki.ca_cert), fails=True
    )
    assert out.error is not None and out.error.error_code == BAD_CERTIFICATE, out.error
    assert [c.error_code for c in closes] == [BAD_CERTIFICATE] and srv == []


def test_server_survives_a_refused_handshake(pki: DevPKI, pkis: dict[str, Any]) -> None:
    """The require refusal is an alert on one connection; the next client is served."""

    async def scenario() -> Any:
        config = dual_server(pki, pkis, auth="require")
        async with running_server(config, FactsServerProtocol) as srv:
            await connect_client(srv.port, client_config(pki.ca_cert, auth=None), fails=True)
            outcome, facts = await _echo_with_facts(srv.port, client_config(pkis["cas"]))
            return outcome, facts

    outcome, facts = run(scenario)
    assert outcome.echo == PING and facts == {"scheme": "ML-DSA-65", "pq_auth": True}
