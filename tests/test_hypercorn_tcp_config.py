"""``PostQuantumConfig.create_ssl_context``: hypercorn's TLS settings carried over to the
post-quantum TCP context, checked in-process by real handshakes on 127.0.0.1.

hypercorn's own ``create_ssl_context`` applies certfile/keyfile/keyfile_password, ca_certs,
ciphers, the ALPN list (h2, http/1.1), a TLS 1.2 floor and verify_mode/verify_flags; the
override must mean the same with ``pq`` on, and must be stock hypercorn with ``pq`` off. The
processes that use it are tested in test_hypercorn_tcp.py.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import cert_util
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypercorn.config import Config
from tls_util import PQ_TCP_EXTENSION, assert_tls_extension, client_ctx, serving

import pq_quic_plugin
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.hypercorn_binding import PostQuantumConfig, post_quantum
from pq_quic_plugin.hypercorn_binding.tls_facts import TCP_STDLIB_NOTE, tcp_facts
from pq_quic_plugin.tls_binding import PostQuantumSSLContext


def _config(pki: DevPKI, pq: str = "prefer", **settings: Any) -> PostQuantumConfig:
    config = Config()
    config.certfile, config.keyfile = str(pki.cert), str(pki.key)
    for name, value in settings.items():
        setattr(config, name, value)
    return post_quantum(config, pq)


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, pki: DevPKI) -> dict[str, Any]:
    """One connection; what the server's TLS object and ``tcp_facts`` said about it."""
    seen: dict[str, Any] = {}

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        seen.update(alpn=tls.selected_alpn_protocol(), cipher=tls.cipher()[0])
        seen["tls"], seen["pq_quic"] = tcp_facts(tls, pki.cert.read_text())
        writer.write(b"ok")
        await writer.drain()

    async with serving(server, record) as served:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", served.port, ssl=client, server_hostname="localhost"
        )
        assert await reader.read(2) == b"ok"
        writer.close()
        await writer.wait_closed()
    return seen


def _context(config: PostQuantumConfig) -> ssl.SSLContext:
    ctx = config.create_ssl_context()
    assert ctx is not None
    return ctx


def test_off_is_stock_hypercorn_and_no_certificate_no_context(pki: DevPKI) -> None:
    assert type(_config(pki, "off").create_ssl_context()) is ssl.SSLContext
    assert post_quantum(Config(), "prefer").create_ssl_context() is None  # plain HTTP only
    ctx = _config(pki, "prefer").create_ssl_context()
    assert isinstance(ctx, PostQuantumSSLContext)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2  # RFC 7540, as hypercorn sets it


@pytest.mark.parametrize(
    ("server_alpn", "chosen"), [(["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")]
)
def test_post_quantum_with_hypercorns_alpn(
    pki: DevPKI, server_alpn: list[str], chosen: str
) -> None:
    config = _config(pki, alpn_protocols=server_alpn)
    client = client_ctx(pki, alpn=["h2", "http/1.1"])
    seen = asyncio.run(_handshake(_context(config), client, pki))
    assert seen["alpn"] == chosen
    assert seen["pq_quic"] == PQ_TCP_EXTENSION
    assert_tls_extension(seen["tls"], pki)


def test_ciphers_apply_to_tls12_clients(pki: DevPKI) -> None:
    config = _config(pki, ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    classical = ssl.create_default_context(cafile=str(pki.ca_cert))
    classical.maximum_version = ssl.TLSVersion.TLSv1_2
    seen = asyncio.run(_handshake(_context(config), classical, pki))
    assert seen["cipher"] == "ECDHE-ECDSA-CHACHA20-POLY1305"
    assert seen["tls"]["tls_version"] == 0x0303 and seen["tls"]["cipher_suite"] == 0xCCA9
    assert seen["pq_quic"]["group"] == "x25519" and seen["pq_quic"]["post_quantum"] is False


def test_require_is_tls13_with_post_quantum_groups_only(pki: DevPKI) -> None:
    ctx = _context(_config(pki, "require"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3  # hypercorn's TLS 1.2 floor is raised
    for classical in (
        ssl.create_default_context(cafile=str(pki.ca_cert)),  # TLS 1.3, no ML-KEM
        client_ctx(pki, "prefer", groups=["x25519"]),
    ):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            asyncio.run(_handshake(ctx, classical, pki))
    assert asyncio.run(_handshake(ctx, client_ctx(pki), pki))["pq_quic"]["post_quantum"] is True


def _client_identity(directory: Path) -> tuple[Path, Path, Path]:
    """A client CA and a clientAuth leaf it signed: ``(ca, cert, key)``."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = cert_util.name("test client CA")
    ca = cert_util.builder(ca_name, ca_name, ca_key.public_key(), ca=True)
    leaf = cert_util.builder(cert_util.name("alice"), ca_name, key.public_key(), ca=False)
    leaf = leaf.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    return (
        cert_util.write_certificate(directory / "client-ca.pem", ca.sign(ca_key, hashes.SHA256())),
        cert_util.write_certificate(directory / "client.pem", leaf.sign(ca_key, hashes.SHA256())),
        cert_util.write_key(directory / "client-key.pem", key),
    )


def test_ca_certs_and_verify_mode_ask_for_client_certificates(pki: DevPKI, tmp_path: Path) -> None:
    client_ca, client_cert, client_key = _client_identity(tmp_path)
    config = _config(pki, ca_certs=str(client_ca), verify_mode=ssl.CERT_REQUIRED)
    server = _context(config)
    with pytest.raises((ssl.SSLError, ConnectionError)):  # no client certificate: refused
        asyncio.run(_handshake(server, client_ctx(pki), pki))
    with_cert = client_ctx(pki)
    with_cert.load_cert_chain(client_cert, client_key)
    tls = asyncio.run(_handshake(server, with_cert, pki))["tls"]
    assert tls["client_cert_chain"] == [client_cert.read_text()]
    assert tls["client_cert_name"] == "CN=alice" and tls["client_cert_error"] is None


def test_keyfile_password_decrypts_the_key(pki: DevPKI, tmp_path: Path) -> None:
    encrypted = cert_util.encrypted_key(pki, tmp_path / "encrypted-key.pem", b"s3cret")
    config = _config(pki, keyfile=str(encrypted), keyfile_password="s3cret")
    seen = asyncio.run(_handshake(_context(config), client_ctx(pki), pki))
    assert seen["pq_quic"]["group"] == "X25519MLKEM768"


def test_quic_only_groups_over_tcp(pki: DevPKI) -> None:
    # Shared with QUIC: the draft Kyber group is left out over TCP, the rest serves.
    mixed = post_quantum(_config(pki), "prefer", ["X25519Kyber768Draft00", "X25519MLKEM768"])
    assert mixed.create_ssl_context().group_policy.names == ["X25519MLKEM768"]  # type: ignore[union-attr]
    # Nothing TCP can negotiate, or nothing post-quantum under require: stop at configuration.
    for policy, groups in [
        ("require", ["X25519Kyber768Draft00"]),
        ("prefer", ["X25519Kyber512Draft00"]),
        ("require", ["X25519Kyber768Draft00", "x25519"]),
    ]:
        with pytest.raises(ValueError, match="X25519Kyber") as info:
            post_quantum(_config(pki), policy, groups)
        assert "QUIC-only" in str(info.value)


def test_python_ssl_reports_no_group(pki: DevPKI) -> None:
    """pq off: Python's ssl on both ends; the scope says the group is unknown, and why."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.cert, pki.key)
    client = pq_quic_plugin.ssl_context("off", server_side=False, cafile=pki.ca_cert)
    seen = asyncio.run(_handshake(server, client, pki))
    assert seen["pq_quic"]["group"] is None and seen["pq_quic"]["group_known"] is False
    assert seen["pq_quic"]["note"] == TCP_STDLIB_NOTE
    assert seen["tls"]["tls_version"] == 0x0304
