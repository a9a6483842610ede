"""ML-DSA CertificateVerify checked against an implementation we did not write (pqcrypto).

Two copies of our own code would agree on a wrong construction (a non-empty FIPS 204 context,
a wrong TLS context string, the wrong transcript). pqcrypto (PQClean's ML-DSA, not OpenSSL's)
cannot: it verifies a CertificateVerify our server produced in a real (in-memory) handshake, from
a transcript hash this test computes itself, and it signs what our verifier then accepts.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import cert_util
import pqcrypto
import pytest
from aioquic import tls
from aioquic.buffer import Buffer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from mldsa_util import CV_PREFIX, PARAMETER_SETS, ml_dsa_pki

from pq_quic_plugin.aioquic_binding import PostQuantumContext
from pq_quic_plugin.aioquic_binding.certificates import AuthSettings, Credential
from pq_quic_plugin.aioquic_binding.signatures import sign, verify_ml_dsa
from pq_quic_plugin.auth_policy import AuthPolicy, scheme_by_codepoint, scheme_names
from pq_quic_plugin.policy import GroupPolicy

PRIVATE_KEY: dict[int, Any] = {
    0x0904: mldsa.MLDSA44PrivateKey,
    0x0905: mldsa.MLDSA65PrivateKey,
    0x0906: mldsa.MLDSA87PrivateKey,
}
PUBLIC_KEY: dict[int, Any] = {
    0x0904: mldsa.MLDSA44PublicKey,
    0x0905: mldsa.MLDSA65PublicKey,
    0x0906: mldsa.MLDSA87PublicKey,
}


def pqcrypto_module(codepoint: int) -> Any:
    level = {0x0904: 44, 0x0905: 65, 0x0906: 87}[codepoint]
    return importlib.import_module(f"pqcrypto.sign.ml_dsa_{level}")


def certificate_for(public_key: Any) -> x509.Certificate:
    """A certificate carrying ``public_key``, issued by a throw-away ECDSA key (only the key
    inside matters to a CertificateVerify)."""
    issuer = ec.generate_private_key(ec.SECP256R1())
    name = cert_util.name("pqcrypto key")
    return cert_util.builder(name, name, public_key, ca=False).sign(issuer, hashes.SHA256())


CONTENT = CV_PREFIX + b"\x00" + hashlib.sha256(b"some transcript").digest()


@pytest.mark.parametrize("sig,codepoint", PARAMETER_SETS)
def test_our_signature_verifies_with_pqcrypto_and_only_with_an_empty_context(
    sig: str, codepoint: int
) -> None:
    key = PRIVATE_KEY[codepoint].generate()
    signature = sign(key, codepoint, CONTENT)
    other = pqcrypto_module(codepoint)
    assert len(signature) == other.SIGNATURE_SIZE
    other.verify(key.public_key().public_bytes_raw(), CONTENT, signature)  # raises if wrong
    with pytest.raises(pqcrypto.InvalidSignatureError):
        other.verify(key.public_key().public_bytes_raw(), CONTENT, signature, context=b"tls")


@pytest.mark.parametrize("sig,codepoint", PARAMETER_SETS)
def test_pqcrypto_signature_verifies_with_ours_and_every_corruption_is_decrypt_error(
    sig: str, codepoint: int
) -> None:
    other = pqcrypto_module(codepoint)
    public, secret = other.keygen()
    signature = other.sign(secret, CONTENT)
    cert = certificate_for(PUBLIC_KEY[codepoint].from_public_bytes(public))
    verify_ml_dsa(cert, codepoint, signature, CONTENT)

    flipped = bytearray(signature)
    flipped[len(flipped) // 2] ^= 0x01
    for bad_signature, bad_content in [
        (bytes(flipped), CONTENT),
        (signature[:-1], CONTENT),  # wrong length (draft-ietf-tls-mldsa: a verification failure)
        (signature + b"\x00", CONTENT),
        (b"", CONTENT),
        (signature, CONTENT[:-1] + bytes([CONTENT[-1] ^ 1])),
    ]:
        with pytest.raises(tls.AlertDecryptError):
            verify_ml_dsa(cert, codepoint, bad_signature, bad_content)
    # A scheme of another parameter set than the certificate's key.
    wrong = 0x0904 if codepoint != 0x0904 else 0x0905
    with pytest.raises(tls.AlertDecryptError, match="does not match the certificate's key"):
        verify_ml_dsa(cert, wrong, signature, CONTENT)


def test_ml_dsa_scheme_against_an_ecdsa_certificate_is_decrypt_error() -> None:
    cert = certificate_for(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(tls.AlertDecryptError):
        verify_ml_dsa(cert, 0x0905, b"\x00" * 3309, CONTENT)


# ---------------------------------------------------------- a real handshake, checked outside


def _messages(data: bytes) -> list[bytes]:
    """Split a plaintext handshake flight into its messages (type, 3-byte length, body)."""
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        out.append(data[pos : pos + 4 + length])
        pos += 4 + length
    return out


def _contexts(pki: Any, auth: AuthPolicy) -> tuple[PostQuantumContext, PostQuantumContext]:
    client = PostQuantumContext.adopt(
        tls.Context(is_client=True, server_name="localhost", cafile=str(pki.ca_cert)),
        GroupPolicy.build("prefer"),
    )
    server = PostQuantumContext.adopt(
        tls.Context(is_client=False), GroupPolicy.server_default("prefer")
    )
    credential = Credential.load(pki.cert, pki.key)
    server.certificate = credential.certificate
    server.certificate_private_key = credential.private_key
    client.pq_auth = server.pq_auth = AuthSettings(auth)
    return client, server


def _buffers() -> dict[tls.Epoch, Buffer]:
    return {epoch: Buffer(capacity=1 << 16) for epoch in tls.Epoch}


@pytest.mark.parametrize("sig,codepoint", PARAMETER_SETS)
def test_certificate_verify_from_a_handshake_verifies_with_pqcrypto(
    tmp_path: Any, sig: str, codepoint: int
) -> None:
    pki = ml_dsa_pki(tmp_path, sig)
    client, server = _contexts(pki, AuthPolicy.PREFER)
    to_server, to_client, client_out = _buffers(), _buffers(), _buffers()
    client.handle_message(b"", to_server)
    client_hello = to_server[tls.Epoch.INITIAL].data
    server.handle_message(client_hello, to_client)
    server_hello = to_client[tls.Epoch.INITIAL].data
    flight = _messages(to_client[tls.Epoch.HANDSHAKE].data)
    assert [m[0] for m in flight] == [
        tls.HandshakeType.ENCRYPTED_EXTENSIONS,
        tls.HandshakeType.CERTIFICATE,
        tls.HandshakeType.CERTIFICATE_VERIFY,
        tls.HandshakeType.FINISHED,
    ]
    verify = tls.pull_certificate_verify(Buffer(data=flight[2]))
    assert verify.algorithm == codepoint

    # The transcript hash, computed here from the bytes on the wire (RFC 8446 4.4.3).
    assert server.key_schedule is not None
    hash_name = server.key_schedule.algorithm.name
    transcript = hashlib.new(hash_name, client_hello + server_hello + flight[0] + flight[1])
    content = CV_PREFIX + b"\x00" + transcript.digest()
    leaf = x509.load_pem_x509_certificate(pki.cert.read_bytes())
    leaf_key = leaf.public_key()
    assert isinstance(
        leaf_key, (mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey)
    )
    pqcrypto_module(codepoint).verify(leaf_key.public_bytes_raw(), content, verify.signature)

    # Our client accepts the same flight and records what it saw.
    client.handle_message(server_hello, client_out)
    client.handle_message(to_client[tls.Epoch.HANDSHAKE].data, client_out)
    assert client.state is tls.State.CLIENT_POST_HANDSHAKE
    assert client.pq_signature_scheme == scheme_by_codepoint(codepoint)
    assert client.pq_post_quantum_auth and server.pq_post_quantum_auth


def test_flipped_bit_in_certificate_verify_is_decrypt_error_in_memory(tmp_path: Any) -> None:
    pki = ml_dsa_pki(tmp_path, "ml-dsa-65")
    client, server = _contexts(pki, AuthPolicy.PREFER)
    to_server, to_client, client_out = _buffers(), _buffers(), _buffers()
    client.handle_message(b"", to_server)
    server.handle_message(to_server[tls.Epoch.INITIAL].data, to_client)
    flight = bytearray(to_client[tls.Epoch.HANDSHAKE].data)
    messages = _messages(bytes(flight))
    cv_start = len(messages[0]) + len(messages[1])
    flight[cv_start + 100] ^= 0x80  # inside the signature
    client.handle_message(to_client[tls.Epoch.INITIAL].data, client_out)
    with pytest.raises(tls.AlertDecryptError):
        client.handle_message(bytes(flight), client_out)
    assert client.pq_signature_scheme is None  # nothing recorded for a failed check


def test_scheme_names_are_bounded_and_name_grease() -> None:
    many = [0x0A0A] + list(range(0x0100, 0x0200))
    text = scheme_names(many, limit=3)
    assert text.startswith("GREASE, 0x0100, 0x0101, and 254 more")
    assert scheme_names([0x0905, 0x0403]) == "ML-DSA-65, ECDSA-P256-SHA256"
    assert scheme_names(None) == "none"
