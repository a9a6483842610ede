"""Shared pieces of the ML-DSA tests over TCP: a directory with an ECDSA and ML-DSA sets (and
hypercorn-pq's arguments that serve both), an in-memory handshake between two ``ssl`` objects,
and certificates altered on purpose.

The handshake runs each side's real ``wrap_bio`` object over ``ssl.MemoryBIO`` pairs, exactly
what asyncio, trio and anyio drive, without sockets: the peers are our layer or Python's own
``ssl`` (system OpenSSL 3.0, which knows no ML-DSA), and the bytes between them are untouched.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cert_util
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from pq_quic_plugin.devcert import DevPKI, make_dev_pki


@dataclass(frozen=True)
class Pkis:
    """The ECDSA set and one ML-DSA set in one directory, and ``cas.pem`` trusting both."""

    ecdsa: DevPKI
    ml_dsa: DevPKI
    cas: Path


def both_pkis(directory: Path, sig: str = "ml-dsa-65") -> Pkis:
    ecdsa = make_dev_pki(directory)
    ml_dsa = make_dev_pki(directory, sig=sig)
    cas = directory / "cas.pem"
    cas.write_bytes(ecdsa.ca_pem + ml_dsa.ca_pem)
    return Pkis(ecdsa, ml_dsa, cas)


def auth_args(pkis: Pkis, port: int, *extra: str) -> list[str]:
    """``hypercorn-pq`` arguments for ``app:app`` on 127.0.0.1:``port`` holding both
    certificates: the ECDSA one as ``--certfile``, the ML-DSA one as ``--pq-certfile``."""
    return [
        "--pq",
        "--certfile",
        str(pkis.ecdsa.cert),
        "--keyfile",
        str(pkis.ecdsa.key),
        "--pq-certfile",
        str(pkis.ml_dsa.cert),
        "--pq-keyfile",
        str(pkis.ml_dsa.key),
        "-b",
        f"127.0.0.1:{port}",
        *extra,
        "app:app",
    ]


@dataclass
class Handshake:
    """Both ends of one finished (or failed) in-memory handshake."""

    client: Any
    server: Any
    errors: dict[str, ssl.SSLError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, hostname: str = "localhost"
) -> Handshake:
    """Run a TLS handshake between the two contexts' ``wrap_bio`` objects, relaying every byte;
    each side's exception (if any) is kept, and the alert it sent still reaches the other."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    result = Handshake(client, server)
    done: set[str] = set()
    for _ in range(12):
        for name, side in (("client", client), ("server", server)):
            if name in done or name in result.errors:
                continue
            try:
                side.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                result.errors[name] = exc
        moved = c_out.pending + s_out.pending
        if c_out.pending:
            s_in.write(c_out.read())
        if s_out.pending:
            c_in.write(s_out.read())
        if not moved and (len(done) + len(result.errors)) == 2:
            break
    return result


def flip_signature_bit(cert_pem: Path, target: Path) -> Path:
    """``cert_pem`` with one bit flipped in its signature (the last byte of the DER), written to
    ``target``: the key still matches, only the issuer's signature no longer verifies."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return cert_util.write_certificate(target, x509.load_der_x509_certificate(bytes(der)))


def ml_dsa_leaf_under_ecdsa_ca(directory: Path) -> tuple[Path, Path, Path]:
    """An ML-DSA-65 localhost leaf issued by an ECDSA CA: ``(ca, cert, key)`` files. Its
    handshake signature is ML-DSA, its chain is not: not post-quantum authentication."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = cert_util.name("mixed test CA")
    ca = cert_util.builder(ca_name, ca_name, ca_key.public_key(), ca=True)
    leaf_key = mldsa.MLDSA65PrivateKey.generate()
    leaf = cert_util.localhost(leaf_key.public_key(), ca_name)
    return (
        cert_util.write_certificate(directory / "mixed-ca.pem", ca.sign(ca_key, hashes.SHA256())),
        cert_util.write_certificate(
            directory / "mixed-cert.pem", leaf.sign(ca_key, hashes.SHA256())
        ),
        cert_util.write_key(directory / "mixed-key.pem", leaf_key),
    )
