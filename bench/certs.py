"""Server certificate chains for the benchmarks: the project's small dev chain and large RSA ones.

Chain size is a variable under test: a large chain (RSA-4096 plus CA certificates sent along)
is what pushes a post-quantum server flight past QUIC's anti-amplification limit, so the
benchmarks build both kinds fresh in a temporary directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CertChain:
    """A server certificate chain on disk: ``cert`` (leaf first, then CAs), ``key``, ``ca``.

    Not to be confused with ``tools.loopback.Chain``, a running pq-tunnel chain of processes.
    """

    label: str
    cert: Path
    key: Path
    ca: Path


def dev_chain(directory: Path) -> CertChain:
    """The project's dev PKI: ECDSA P-256 leaf (the server sends only the leaf)."""
    from pq_quic_plugin.devcert import make_dev_pki

    pki = make_dev_pki(directory / "ecdsa")
    return CertChain("ECDSA P-256 leaf", pki.cert, pki.key, pki.ca_cert)


def rsa_chain(directory: Path, bits: int = 4096, intermediates: int = 1) -> CertChain:
    """An RSA chain the server sends in full: leaf + ``intermediates`` CA certificates.

    The client trusts the topmost CA; it is also sent, as many misconfigured or cross-signed
    deployments do, which is what makes this the "large chain" case.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = directory / f"rsa{bits}x{intermediates + 1}"
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return b.sign(issuer_key, hashes.SHA256())

    keys = [rsa.generate_private_key(65537, bits) for _ in range(intermediates + 1)]
    certs: list[x509.Certificate] = []
    ca_names = [f"bench RSA CA {i}" for i in range(intermediates)]
    # topmost CA is self-signed; each following one is issued by the previous
    for i in range(intermediates):
        issuer = ca_names[i - 1] if i else ca_names[0]
        issuer_key = keys[i - 1] if i else keys[0]
        certs.append(build(ca_names[i], keys[i], issuer, issuer_key, ca=True))
    leaf = build("localhost", keys[-1], ca_names[-1], keys[-2], ca=False)
    pem = serialization.Encoding.PEM
    chain_pem = leaf.public_bytes(pem) + b"".join(c.public_bytes(pem) for c in reversed(certs))
    (directory / "cert.pem").write_bytes(chain_pem)
    (directory / "ca.pem").write_bytes(certs[0].public_bytes(pem))
    key_path = directory / "key.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            keys[-1].private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    label = f"RSA-{bits} leaf + {intermediates} CA cert{'s' if intermediates > 1 else ''}"
    return CertChain(label, directory / "cert.pem", key_path, directory / "ca.pem")


def chain_der_bytes(chain: CertChain) -> int:
    """Total DER size of the certificates the server sends."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certs = x509.load_pem_x509_certificates(chain.cert.read_bytes())
    return sum(len(c.public_bytes(serialization.Encoding.DER)) for c in certs)
