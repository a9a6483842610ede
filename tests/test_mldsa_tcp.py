"""ML-DSA authentication over TCP: one server, an ECDSA and an ML-DSA certificate, chosen per
client by what its ``signature_algorithms`` lists, and the ``off``/``prefer``/``require`` rules.

The peers are our layer (OpenSSL 4 inside ``cryptography``, which offers ML-DSA) and Python's
own ``ssl`` on the system OpenSSL 3.0, which knows no ML-DSA at all: the classical client that
must keep working, and that ``require`` must refuse. The facts are read on both sides through
the public calls (``negotiated_signature_scheme``, ``post_quantum_auth``), and the certificate a
client received is checked from the bytes it got, not from our bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from mldsa_tcp_util import Pkis, both_pkis, handshake
from mldsa_util import PARAMETER_SETS

import pq_quic_plugin
from pq_quic_plugin.auth_policy import ML_DSA_CERTIFICATE_OIDS
from pq_quic_plugin.tls_binding import PostQuantumRefusedError


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> Pkis:
    return both_pkis(tmp_path_factory.mktemp("mldsa-tcp"))


def two_cert_server(pkis: Pkis, auth: str = "prefer", ml_dsa_first: bool = False) -> ssl.SSLContext:
    first, second = (pkis.ml_dsa, pkis.ecdsa) if ml_dsa_first else (pkis.ecdsa, pkis.ml_dsa)
    return pq_quic_plugin.ssl_context(
        "prefer",
        server_side=True,
        certfile=first.cert,
        keyfile=first.key,
        auth=auth,
        certificates=[(second.cert, second.key)],
    )


def our_client(pkis: Pkis, auth: str = "prefer", cafile: Path | None = None) -> ssl.SSLContext:
    return pq_quic_plugin.ssl_context(
        "prefer", server_side=False, cafile=cafile or pkis.cas, auth=auth
    )


def stdlib_client(pkis: Pkis) -> ssl.SSLContext:
    """Python's ssl on the system OpenSSL 3.0: no ML-DSA in its signature_algorithms."""
    return ssl.create_default_context(cafile=str(pkis.cas))


def leaf_signature_oid(tls_object: object) -> str:
    der = tls_object.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    return x509.load_der_x509_certificate(der).signature_algorithm_oid.dotted_string


@pytest.mark.parametrize("ml_dsa_first", [False, True], ids=["ecdsa-certfile", "ml-dsa-certfile"])
def test_ml_dsa_client_gets_ml_dsa_and_classical_client_gets_ecdsa(
    pkis: Pkis, ml_dsa_first: bool
) -> None:
    server = two_cert_server(pkis, ml_dsa_first=ml_dsa_first)

    pq = handshake(our_client(pkis), server)
    assert pq.ok, pq.errors
    for side in (pq.client, pq.server):
        scheme = pq_quic_plugin.negotiated_signature_scheme(side)
        assert scheme is not None and (scheme.name, scheme.codepoint) == ("ML-DSA-65", 0x0905)
        assert pq_quic_plugin.post_quantum_auth(side) is True
    assert leaf_signature_oid(pq.client) in ML_DSA_CERTIFICATE_OIDS
    # only the ML-DSA leaf travelled: no ECDSA certificate mixed into its chain
    assert len(pq.client.get_unverified_chain()) == 1

    old = handshake(stdlib_client(pkis), server)
    assert old.ok, old.errors
    scheme = pq_quic_plugin.negotiated_signature_scheme(old.server)
    assert scheme is not None and scheme.name == "ECDSA-P256-SHA256"
    assert pq_quic_plugin.post_quantum_auth(old.server) is False
    assert leaf_signature_oid(old.client) == "1.2.840.10045.4.3.2"  # ecdsa-with-SHA256


@pytest.mark.parametrize(("sig", "codepoint"), PARAMETER_SETS)
def test_every_parameter_set(tmp_path: Path, sig: str, codepoint: int) -> None:
    pkis = both_pkis(tmp_path, sig)
    result = handshake(our_client(pkis, "require"), two_cert_server(pkis, "require"))
    assert result.ok, result.errors
    scheme = pq_quic_plugin.negotiated_signature_scheme(result.client)
    assert scheme is not None and scheme.codepoint == codepoint
    assert pq_quic_plugin.post_quantum_auth(result.client)


def test_auth_off_on_either_side_means_ecdsa(pkis: Pkis) -> None:
    client_off = handshake(our_client(pkis, "off"), two_cert_server(pkis))
    assert client_off.ok, client_off.errors
    assert pq_quic_plugin.negotiated_signature_scheme(client_off.client).name == "ECDSA-P256-SHA256"
    server_off = handshake(our_client(pkis), two_cert_server(pkis, "off", ml_dsa_first=True))
    assert server_off.ok, server_off.errors
    assert pq_quic_plugin.negotiated_signature_scheme(server_off.server).name == (
        "ECDSA-P256-SHA256"
    )
    assert not pq_quic_plugin.post_quantum_auth(server_off.client)


def test_require_server_refuses_a_client_without_ml_dsa(
    pkis: Pkis, caplog: pytest.LogCaptureFixture
) -> None:
    server = two_cert_server(pkis, "require")
    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin.tls"):
        refused = handshake(stdlib_client(pkis), server)
    assert "handshake failure" in str(refused.errors["client"])  # the alert, read by OpenSSL 3.0
    text = str(refused.errors["server"])
    assert "client offered no ML-DSA signature scheme" in text and "'require'" in text
    assert "accepts: ML-DSA-65" in text
    assert any("refusing handshake: client offered no ML-DSA" in r.message for r in caplog.records)
    # the same server still serves a client that offers ML-DSA
    assert handshake(our_client(pkis), server).ok


def test_require_client_refuses_a_classical_server(
    pkis: Pkis, caplog: pytest.LogCaptureFixture
) -> None:
    server = pq_quic_plugin.ssl_context(
        "prefer", server_side=True, certfile=pkis.ecdsa.cert, keyfile=pkis.ecdsa.key
    )
    with caplog.at_level(logging.ERROR, logger="pq_quic_plugin.tls"):
        refused = handshake(our_client(pkis, "require"), server)
    error = refused.errors["client"]
    assert isinstance(error, PostQuantumRefusedError)
    assert "server authenticated with ECDSA-P256-SHA256 (classical), not ML-DSA" in str(error)
    assert "'require'" in str(error)
    assert any("devcert" in r.message for r in caplog.records)  # the log says how to fix it
    # prefer accepts the same server
    assert handshake(our_client(pkis, "prefer"), server).ok


def test_require_client_refuses_an_ml_dsa_leaf_under_a_classical_ca(tmp_path: Path) -> None:
    from mldsa_tcp_util import ml_dsa_leaf_under_ecdsa_ca

    ca, cert, key = ml_dsa_leaf_under_ecdsa_ca(tmp_path)
    server = pq_quic_plugin.ssl_context("prefer", server_side=True, certfile=cert, keyfile=key)
    client = pq_quic_plugin.ssl_context("prefer", server_side=False, cafile=ca, auth="require")
    refused = handshake(client, server)
    assert "signed with ML-DSA-65 but its certificate chain is not all ML-DSA" in str(
        refused.errors["client"]
    )
    prefer = pq_quic_plugin.ssl_context("prefer", server_side=False, cafile=ca)
    accepted = handshake(prefer, server)
    assert accepted.ok, accepted.errors
    assert pq_quic_plugin.negotiated_signature_scheme(accepted.client).name == "ML-DSA-65"
    assert pq_quic_plugin.post_quantum_auth(accepted.client) is False  # the chain is not


def test_unverified_server_is_not_authenticated(pkis: Pkis) -> None:
    client = pq_quic_plugin.ssl_context("prefer", server_side=False, verify=False)
    result = handshake(client, two_cert_server(pkis))
    assert result.ok, result.errors
    assert pq_quic_plugin.negotiated_signature_scheme(result.client).name == "ML-DSA-65"
    assert pq_quic_plugin.post_quantum_auth(result.client) is False
    assert pq_quic_plugin.post_quantum_auth(result.server) is True


def test_over_asyncio_sockets_the_writer_reports_it(pkis: Pkis) -> None:
    """The facts through what applications hold: asyncio's StreamWriter on both ends."""

    async def main() -> tuple[tuple[str, bool], tuple[str, bool]]:
        seen: list[tuple[str, bool]] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            scheme = pq_quic_plugin.negotiated_signature_scheme(writer)
            seen.append(
                (scheme.name if scheme else "none", pq_quic_plugin.post_quantum_auth(writer))
            )
            writer.write(b"ok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=two_cert_server(pkis))
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=our_client(pkis), server_hostname="localhost"
            )
            assert await reader.read() == b"ok"
            scheme = pq_quic_plugin.negotiated_signature_scheme(writer)
            mine = (scheme.name if scheme else "none", pq_quic_plugin.post_quantum_auth(writer))
            writer.close()
        finally:
            server.close()
            await server.wait_closed()
        return mine, seen[0]

    client_side, server_side = asyncio.run(main())
    assert client_side == server_side == ("ML-DSA-65", True)


def _server(pkis: Pkis, **settings: Any) -> dict[str, Any]:
    """A server's settings: the ECDSA certificate, unless ``settings`` say otherwise."""
    return {"server_side": True, "certfile": pkis.ecdsa.cert, "keyfile": pkis.ecdsa.key, **settings}


#: Each mistake: the key-exchange policy, the other settings, and how ``ssl_context`` refuses.
MISTAKES: dict[str, tuple[str, Callable[[Pkis], dict[str, Any]], type[Exception], str]] = {
    "require-without-ml-dsa": (
        "prefer",
        lambda p: _server(p, auth="require"),
        ValueError,
        "'require' needs an ML-DSA certificate",
    ),
    "off-with-ml-dsa": (
        "prefer",
        lambda p: _server(p, certfile=p.ml_dsa.cert, keyfile=p.ml_dsa.key, auth="off"),
        ValueError,
        "'off' never uses an ML-DSA certificate",
    ),
    "stdlib-with-ml-dsa": (
        "off",
        lambda p: _server(p, certificates=[(p.ml_dsa.cert, p.ml_dsa.key)]),
        ValueError,
        "policy 'off' uses Python's ssl",
    ),
    "client-with-certificates": (
        "prefer",
        lambda p: {"server_side": False, "certificates": [(p.ml_dsa.cert, p.ml_dsa.key)]},
        ValueError,
        "for servers",
    ),
    "unknown-auth": (
        "prefer",
        lambda p: {"server_side": False, "auth": "sometimes"},
        ValueError,
        "unknown authentication policy",
    ),
    "key-of-another-certificate": (
        "prefer",
        lambda p: _server(p, certificates=[(p.ml_dsa.cert, p.ecdsa.key)]),
        ssl.SSLError,
        "does not match",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_configuration_mistakes_fail_at_once(pkis: Pkis, mistake: str) -> None:
    policy, settings, error, match = MISTAKES[mistake]
    with pytest.raises(error, match=match):
        pq_quic_plugin.ssl_context(policy, **settings(pkis))
