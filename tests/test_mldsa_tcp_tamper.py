"""A flipped bit in a certificate over TCP: the client refuses the chain and says so with an
alert, for an ML-DSA certificate as for an ECDSA one.

OpenSSL verifies the chain (ML-DSA signatures included) and maps the failure to the alert: for
a certificate whose issuer signature does not verify that is ``decrypt_error`` (OpenSSL's
``X509_V_ERR_CERT_SIGNATURE_FAILURE`` row; RFC 8446 6.2 allows it, "unable to correctly verify a
signature"). The server's error shows the alert it received; the client's is Python's
``SSLCertVerificationError`` with OpenSSL's verification code and message.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from mldsa_tcp_util import both_pkis, flip_signature_bit, handshake

import pq_quic_plugin

X509_V_ERR_CERT_SIGNATURE_FAILURE = 7


@pytest.mark.parametrize("which", ["ml_dsa", "ecdsa"])
def test_flipped_bit_in_the_certificate_fails_with_decrypt_error(
    tmp_path: Path, which: str
) -> None:
    pkis = both_pkis(tmp_path)
    pki = getattr(pkis, which)
    tampered = flip_signature_bit(pki.cert, tmp_path / "tampered.pem")
    server = pq_quic_plugin.ssl_context(
        "prefer", server_side=True, certfile=tampered, keyfile=pki.key
    )
    client = pq_quic_plugin.ssl_context("prefer", server_side=False, cafile=pkis.cas)
    result = handshake(client, server)

    error = result.errors["client"]
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == X509_V_ERR_CERT_SIGNATURE_FAILURE
    assert "certificate signature failure" in error.verify_message
    assert "alert decrypt error" in str(result.errors["server"])

    intact = pq_quic_plugin.ssl_context(
        "prefer", server_side=True, certfile=pki.cert, keyfile=pki.key
    )
    assert handshake(client, intact).ok  # the same client, the untouched certificate


def test_stdlib_client_refuses_the_tampered_ecdsa_certificate_too(tmp_path: Path) -> None:
    """An independent verifier (the system OpenSSL 3.0) sees the same broken signature."""
    pkis = both_pkis(tmp_path)
    tampered = flip_signature_bit(pkis.ecdsa.cert, tmp_path / "tampered.pem")
    server = pq_quic_plugin.ssl_context(
        "prefer",
        server_side=True,
        certfile=tampered,
        keyfile=pkis.ecdsa.key,
        certificates=[(pkis.ml_dsa.cert, pkis.ml_dsa.key)],
    )
    result = handshake(ssl.create_default_context(cafile=str(pkis.cas)), server)
    error = result.errors["client"]
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == X509_V_ERR_CERT_SIGNATURE_FAILURE
    assert "alert decrypt error" in str(result.errors["server"])
