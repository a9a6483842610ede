"""A throw-away PKI for demos, tests and local development: a small CA and a leaf it issued.

Why not one self-signed certificate: qh3 (and so niquests) refuses a server certificate that is
self-signed with ``CA:TRUE``, and Chromium wants a proper ``CA:FALSE`` serverAuth leaf. A CA plus
a leaf satisfies every peer: clients trust ``ca_cert``, servers present ``cert``/``key``.

The default PKI signs with ECDSA P-256 (``ca.pem``, ``cert.pem``, ``key.pem``). With
``sig="ml-dsa-65"`` (or 44, 87) the CA and leaf are ML-DSA throughout, for post-quantum
authentication, and their files carry the name as a prefix (``ml-dsa-65-ca.pem``, ...), so both
sets live side by side in one directory (docs/auth.md).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class DevPKI:
    """Paths and digests of one generated PKI (all files live in the same directory)."""

    ca_cert: Path
    """PEM of the CA certificate: what clients trust (``cafile``/``verify``)."""
    cert: Path
    """PEM of the leaf certificate, what servers present."""
    key: Path
    """PEM (PKCS#8, unencrypted) of the leaf's private key."""
    ca_pem: bytes
    """The CA certificate's PEM bytes, for APIs that take ``cadata``."""
    spki_sha256_b64: str
    """base64(SHA-256(leaf DER SubjectPublicKeyInfo)): Chromium's
    ``--ignore-certificate-errors-spki-list`` value."""
    sig: str = "ecdsa-p256"
    """What the CA and the leaf sign with (one of :data:`SIGNATURES`)."""


#: What the PKI can sign with; the ML-DSA sets are post-quantum end to end (CA, leaf, handshake).
SIGNATURES = ("ecdsa-p256", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
_ML_DSA_KEYS: dict[
    str,
    type[mldsa.MLDSA44PrivateKey] | type[mldsa.MLDSA65PrivateKey] | type[mldsa.MLDSA87PrivateKey],
] = {
    "ml-dsa-44": mldsa.MLDSA44PrivateKey,
    "ml-dsa-65": mldsa.MLDSA65PrivateKey,
    "ml-dsa-87": mldsa.MLDSA87PrivateKey,
}


def _new_key(sig: str) -> CertificateIssuerPrivateKeyTypes:
    if sig == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if sig in _ML_DSA_KEYS:
        return _ML_DSA_KEYS[sig].generate()
    raise ValueError(f"unknown signature algorithm {sig!r}; use one of: {', '.join(SIGNATURES)}")


def _sign(
    builder: x509.CertificateBuilder, key: CertificateIssuerPrivateKeyTypes
) -> x509.Certificate:
    """ML-DSA signs the certificate itself (no separate digest); ECDSA with SHA-256."""
    digest = None if isinstance(key, tuple(_ML_DSA_KEYS.values())) else hashes.SHA256()
    return builder.sign(key, digest)


def file_names(sig: str = "ecdsa-p256") -> tuple[str, str, str]:
    """``(ca, cert, key)`` file names of one set: unprefixed for ECDSA, as before."""
    prefix = "" if sig == "ecdsa-p256" else f"{sig}-"
    return f"{prefix}ca.pem", f"{prefix}cert.pem", f"{prefix}key.pem"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    validity: tuple[datetime.datetime, datetime.datetime],
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What the CA and the leaf have in common; ``ca`` decides whether the key may sign
    certificates and CRLs (``CA:TRUE``, ``keyCertSign``, ``cRLSign``) or only handshakes.
    Public because the tests build their unusual chains (a leaf under a CA of another
    algorithm, a client identity) on it too."""
    not_before, not_after = validity
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def make_dev_pki(
    directory: Path,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
    sig: str = "ecdsa-p256",
) -> DevPKI:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` into ``directory`` and describe them.

    The leaf is ECDSA P-256 (every TLS 1.3 stack signs with it), valid from one day ago (clock
    skew) for 30 days, with SAN DNS and IP entries so both ``localhost`` and ``127.0.0.1`` URLs
    verify, and the serverAuth EKU Chromium insists on. ``sig`` (:data:`SIGNATURES`) makes the
    CA and leaf ML-DSA instead, written as ``<sig>-ca.pem``, ``<sig>-cert.pem``,
    ``<sig>-key.pem`` (:func:`file_names`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))

    ca_key = _new_key(sig)
    # Distinct CA names, so a client trusting every set (cas.pem) never confuses the issuers.
    ca_name = _name("pq-quic-plugin test CA" + ("" if sig == "ecdsa-p256" else f" {sig.upper()}"))
    ca = _sign(
        certificate_builder(ca_name, ca_name, ca_key.public_key(), validity, ca=True).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False
        ),
        ca_key,
    )

    leaf_key = _new_key(sig)
    leaf_name = _name(hostnames[0] if hostnames else "pq-quic-plugin test leaf")
    san: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    leaf = _sign(
        certificate_builder(leaf_name, ca_name, leaf_key.public_key(), validity, ca=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        ),
        ca_key,
    )

    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    ca_file, cert_file, key_file = file_names(sig)
    paths = {"ca": directory / ca_file, "cert": directory / cert_file, "key": directory / key_file}
    paths["ca"].write_bytes(ca_pem)
    paths["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # A private key is never world-readable, not even a throw-away one.
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DevPKI(
        ca_cert=paths["ca"],
        cert=paths["cert"],
        key=paths["key"],
        ca_pem=ca_pem,
        spki_sha256_b64=base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii"),
        sig=sig,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pq_quic_plugin.devcert DIR [--sig ml-dsa-65]``: write CA and leaf sets."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pq_quic_plugin.devcert",
        description="Write a throw-away CA (ca.pem) and a localhost certificate (cert.pem, "
        "key.pem) for local HTTP/3 testing. Never use them in production.",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--hostname", action="append", default=None)
    parser.add_argument(
        "--sig",
        action="append",
        choices=[s for s in SIGNATURES if s != "ecdsa-p256"],
        default=[],
        help="also write an ML-DSA CA and leaf (<sig>-ca.pem, <sig>-cert.pem, <sig>-key.pem) "
        "next to the ECDSA ones, and cas.pem with every CA; repeatable",
    )
    args = parser.parse_args(argv)
    hostnames = tuple(args.hostname or ("localhost",))
    pkis = [make_dev_pki(args.directory, hostnames=hostnames)]
    pkis += [make_dev_pki(args.directory, hostnames=hostnames, sig=sig) for sig in args.sig]
    for pki in pkis:
        print(f"[{pki.sig}] CA (trust this in clients): {pki.ca_cert}")
        print(f"[{pki.sig}] certificate: {pki.cert}\n[{pki.sig}] key:         {pki.key}")
        print(f"[{pki.sig}] Chromium: --ignore-certificate-errors-spki-list={pki.spki_sha256_b64}")
    if len(pkis) > 1:
        every_ca = args.directory / "cas.pem"
        every_ca.write_bytes(b"".join(p.ca_pem for p in pkis))
        print(f"every CA above, for a client that should accept either: {every_ca}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
