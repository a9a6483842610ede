"""Hand-made certificates for tests that need a chain devcert does not make (a leaf under a CA
of another algorithm, a clientAuth identity, a bare self-signed ML-DSA certificate).

What every such certificate shares (devcert's serial, basic constraints and key usage, valid
from a day ago for two days) and how the files are written (PEM, PKCS#8 keys) are
here, so each test shows only what makes its certificate unusual.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from pq_quic_plugin.devcert import certificate_builder


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def builder(
    subject: x509.Name, issuer: x509.Name, public_key: Any, *, ca: bool
) -> x509.CertificateBuilder:
    """devcert's certificate, valid now, ready for the test's own extensions."""
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=2))
    return certificate_builder(subject, issuer, public_key, validity, ca=ca)


def localhost(public_key: Any, issuer: x509.Name | None = None) -> x509.CertificateBuilder:
    """A ``localhost`` leaf issued by ``issuer``; without one, a self-signed ``localhost`` CA."""
    subject = name("localhost")
    return builder(subject, issuer or subject, public_key, ca=issuer is None).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
    )


def write_certificate(path: Path, certificate: x509.Certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def write_key(path: Path, key: Any, password: bytes | None = None) -> Path:
    """``key`` as PEM PKCS#8, encrypted when a ``password`` is given."""
    encryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return path


def encrypted_key(pki: Any, path: Path, password: bytes) -> Path:
    """The test PKI's leaf key written again, encrypted with ``password``: what a
    ``keyfile_password`` setting has to open."""
    key = serialization.load_pem_private_key(pki.key.read_bytes(), password=None)
    return write_key(path, key, password)
