"""``PostQuantumSSLObject`` against the ``ssl.SSLObject`` contract, in memory and on sockets.

The event loops rely on details of Python's ``ssl``: which exception means "call me again",
that a write is never partial, what a clean close and a vanished peer look like, what
``getpeercert()`` returns. These tests drive two real TLS endpoints over ``ssl.MemoryBIO`` pairs
(the way the loops do) and compare with Python's ``ssl`` where both can talk.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
from typing import Any

import cert_util
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.x509.oid import NameOID
from tls_util import client_ctx, server_ctx, serving, stdlib_client

import pq_quic_plugin
from pq_quic_plugin.devcert import make_dev_pki


class Pair:
    """A client and a server object over two MemoryBIO pairs, pumped by hand."""

    def __init__(self, server: ssl.SSLContext, client: ssl.SSLContext, host: Any = "localhost"):
        self.s_in, self.s_out, self.c_in, self.c_out = (ssl.MemoryBIO() for _ in range(4))
        self.server = server.wrap_bio(self.s_in, self.s_out, server_side=True)
        self.client = client.wrap_bio(self.c_in, self.c_out, server_hostname=host)

    def pump(self) -> None:
        self.s_in.write(self.c_out.read())
        self.c_in.write(self.s_out.read())

    def handshake(self) -> None:
        for _ in range(6):
            done = 0
            for side in (self.client, self.server):
                try:
                    side.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
            self.pump()
            if done == 2:
                return
        raise AssertionError("handshake did not finish")


def test_before_and_after_the_handshake(pki) -> None:
    ctx = client_ctx(pki)
    pair = Pair(server_ctx(pki), ctx)
    client = pair.client
    with pytest.raises(ssl.SSLWantReadError):
        client.read(10)
    with pytest.raises(ValueError, match="handshake not done"):
        client.getpeercert()
    assert (client.version(), client.cipher(), client.group()) == (None, None, None)
    pair.handshake()
    assert client.version() == "TLSv1.3" and pair.server.version() == "TLSv1.3"
    assert client.group() == pair.server.group() == "X25519MLKEM768"
    assert pq_quic_plugin.negotiated_group(client) is pq_quic_plugin.group_by_name("X25519MLKEM768")
    assert client.cipher()[1:] in {("TLSv1.3", 256), ("TLSv1.3", 128)}
    assert client.compression() is None and client.shared_ciphers() is None
    assert client.selected_npn_protocol() is None and client.selected_alpn_protocol() is None
    assert (client.server_side, client.server_hostname) == (False, "localhost")
    assert pair.server.server_side and pair.server.server_hostname is None
    assert client.context is ctx and client.session is None and not client.session_reused
    assert client.get_channel_binding("tls-unique") is None  # no such value in TLS 1.3
    with pytest.raises(ValueError, match="Unsupported channel binding"):
        client.get_channel_binding("tls-exporter-ish")
    assert client.pending() == 0 and client.hello_retry is False
    der = client.getpeercert(binary_form=True)
    assert x509.load_der_x509_certificate(der).subject.rfc4514_string() == "CN=localhost"
    assert len(client.get_verified_chain()) == 2 and len(client.get_unverified_chain()) == 1


def test_a_large_write_is_written_whole_and_read_back_in_pieces(pki) -> None:
    pair = Pair(server_ctx(pki), client_ctx(pki))
    pair.handshake()
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: 65 records
    assert pair.client.write(data) == len(data)  # never partial, as with Python's ssl
    assert pair.client.write(b"") == 0
    pair.pump()
    received, buffer = bytearray(), bytearray(50_000)
    while True:
        try:
            count = pair.server.read(len(buffer), buffer)
        except ssl.SSLWantReadError:
            break
        received += buffer[:count]
    assert bytes(received) == data


def test_clean_close_both_ways(pki) -> None:
    pair = Pair(server_ctx(pki), client_ctx(pki))
    pair.handshake()
    pair.client.write(b"last words")
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.unwrap()  # close_notify sent; waiting for the server's
    pair.pump()
    assert pair.server.read(100) == b"last words"
    assert pair.server.read(100) == b""  # the client's close_notify: a clean end
    assert pair.server.read(100, bytearray(100)) == 0
    pair.server.unwrap()  # answers with its own close_notify and is done
    pair.pump()
    pair.client.unwrap()  # now complete
    with pytest.raises(ssl.SSLZeroReturnError):
        pair.server.read(100)  # both sides closed: as Python's ssl, an error now


def test_eof_without_close_notify_is_an_eof_error(pki) -> None:
    pair = Pair(server_ctx(pki), client_ctx(pki))
    pair.handshake()
    pair.c_in.write_eof()
    with pytest.raises(ssl.SSLEOFError):
        pair.client.read(100)
    with pytest.raises(ssl.SSLEOFError):
        pair.client.read(100)  # and it stays broken


def test_tls_1_2_channel_binding_and_group(pki) -> None:
    client = client_ctx(pki)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    pair = Pair(server_ctx(pki), client)
    pair.handshake()
    assert pair.client.version() == "TLSv1.2" and pair.client.group() == "x25519"
    binding = pair.client.get_channel_binding()
    assert binding and binding == pair.server.get_channel_binding()


def test_wrap_bio_checks_its_arguments_like_ssl(pki) -> None:
    server, client = server_ctx(pki), client_ctx(pki)
    with pytest.raises(ValueError, match="only be specified in client mode"):
        server.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True, server_hostname="x")
    with pytest.raises(ValueError, match="check_hostname requires server_hostname"):
        client.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    with pytest.raises(ValueError, match="made for the server side"):
        server.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=False)
    pair = Pair(server, client, host=b"localhost")  # trio passes bytes
    pair.handshake()
    assert pair.client.server_hostname == "localhost"


def test_getpeercert_matches_pythons_ssl(pki) -> None:
    """The same server certificate, read by Python's ssl and by our layer: the same dict."""

    async def main() -> tuple[Any, Any]:
        async with serving(server_ctx(pki)) as served:
            certs = []
            for ctx in (stdlib_client(pki), client_ctx(pki)):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", served.port, ssl=ctx, server_hostname="localhost"
                )
                certs.append(writer.get_extra_info("peercert"))
                await reader.read()
                writer.close()
            return certs[0], certs[1]

    theirs, ours = asyncio.run(main())
    assert ours == theirs and ours["subject"] == ((("commonName", "localhost"),),)


def test_sni_callback_can_switch_certificates_and_refuse(pki, tmp_path) -> None:
    other = make_dev_pki(tmp_path)
    other_server = server_ctx(other)
    seen: list[Any] = []

    def choose(tls_object: Any, name: str | None, context: Any) -> int | None:
        seen.append(name)
        if name == "refused.example":
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        tls_object.context = other_server  # a certificate from the other CA
        return None

    server = server_ctx(pki)
    server.sni_callback = choose
    pair = Pair(server, client_ctx(other))  # trusts only the other CA
    pair.handshake()
    assert pair.server.context is other_server
    refused = Pair(
        server, pq_quic_plugin.ssl_context(server_side=False, verify=False), "refused.example"
    )
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        refused.handshake()
    assert seen == ["localhost", "refused.example"]


@pytest.mark.parametrize("password", ["s3cret", b"s3cret", lambda: "s3cret"])
def test_encrypted_keys_load_with_the_password(pki, tmp_path, password: Any) -> None:
    key = cert_util.encrypted_key(pki, tmp_path / "encrypted.pem", b"s3cret")
    ctx = pq_quic_plugin.ssl_context(
        server_side=True, certfile=pki.cert, keyfile=key, password=password
    )
    Pair(ctx, client_ctx(pki)).handshake()


def test_key_problems_fail_at_configuration(pki, tmp_path) -> None:
    key = cert_util.encrypted_key(pki, tmp_path / "encrypted.pem", b"s3cret")
    with pytest.raises(ssl.SSLError, match="wrong password"):
        pq_quic_plugin.ssl_context(server_side=True, certfile=pki.cert, keyfile=key, password="no")
    with pytest.raises(ssl.SSLError, match="encrypted and no password"):
        pq_quic_plugin.ssl_context(server_side=True, certfile=pki.cert, keyfile=key)
    other = make_dev_pki(tmp_path / "other")
    with pytest.raises(ssl.SSLError, match="does not match"):
        pq_quic_plugin.ssl_context(server_side=True, certfile=pki.cert, keyfile=other.key)
    with pytest.raises(FileNotFoundError):
        pq_quic_plugin.ssl_context(server_side=False, cafile=tmp_path / "missing.pem")


def test_an_ml_dsa_certificate_makes_authentication_post_quantum_too(tmp_path) -> None:
    key = mldsa.MLDSA65PrivateKey.generate()
    cert = cert_util.localhost(key.public_key()).sign(key, None)
    cert_path = cert_util.write_certificate(tmp_path / "mldsa.pem", cert)
    key_path = cert_util.write_key(tmp_path / "mldsa.key", key)
    server = pq_quic_plugin.ssl_context(server_side=True, certfile=cert_path, keyfile=key_path)
    client = pq_quic_plugin.ssl_context(server_side=False, cafile=cert_path)
    pair = Pair(server, client)
    pair.handshake()
    peer = x509.load_der_x509_certificate(pair.client.getpeercert(binary_form=True))
    assert isinstance(peer.public_key(), mldsa.MLDSA65PublicKey)
    assert pair.client.group() == "X25519MLKEM768"


def test_settings_changed_after_use_apply_to_new_connections(pki, tmp_path) -> None:
    server = server_ctx(pki, alpn=["h2"])
    client = client_ctx(pki, alpn=["h2"])
    first = Pair(server, client)
    first.handshake()
    client.set_alpn_protocols(["http/1.1"])  # as httpcore does on a context it was given
    server.set_alpn_protocols(["http/1.1", "h2"])
    client.keylog_filename = tmp_path / "keys.log"
    second = Pair(server, client)
    second.handshake()
    assert first.client.selected_alpn_protocol() == "h2"
    assert second.client.selected_alpn_protocol() == "http/1.1"
    assert b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in (tmp_path / "keys.log").read_bytes()


def _self_signed(tmp_path: Any, common_name: str) -> tuple[Any, Any]:
    """A self-signed EC certificate without usage limits (the dev PKI's leaf is serverAuth
    only, which OpenSSL rightly refuses as a client certificate)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        cert_util.write_certificate(tmp_path / f"{common_name}.pem", cert),
        cert_util.write_key(tmp_path / f"{common_name}.key", key),
    )


def test_client_certificates_when_the_server_asks(pki, tmp_path) -> None:
    """Mutual TLS: ``verify_mode`` on a server context, as with Python's ssl."""
    client_cert, client_key = _self_signed(tmp_path, "client")
    server = server_ctx(pki, cafile=client_cert)
    server.verify_mode = ssl.CERT_REQUIRED
    with_cert = pq_quic_plugin.ssl_context(
        server_side=False, cafile=pki.ca_cert, certfile=client_cert, keyfile=client_key
    )
    pair = Pair(server, with_cert)
    pair.handshake()
    assert pair.server.getpeercert()["subject"] == ((("commonName", "client"),),)
    without = Pair(server, client_ctx(pki))
    with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE"):
        without.handshake()  # the server's refusal, raised once its alert went out
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        without.client.read(10)  # TLS 1.3: the client finished first, then reads the alert


def test_a_server_resumes_sessions_with_a_fresh_key_exchange(pki) -> None:
    """TLS 1.3 resumption by a Python-ssl client (tickets): still a key exchange, so still a
    group, and the server knows it resumed."""

    def two_connections(port: int) -> list[bool]:
        import socket

        ctx, session, reused = stdlib_client(pki), None, []
        for _ in range(2):
            raw = socket.create_connection(("127.0.0.1", port))
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                assert tls.recv(100) == b"hello from the app"
                tls.recv(100)  # the close, after which the session tickets have arrived
                reused.append(tls.session_reused)
                session = tls.session
        return reused

    async def main() -> None:
        async with serving(server_ctx(pki)) as served:
            assert await asyncio.to_thread(two_connections, served.port) == [False, True]
            assert served.resumed == [False, True]
            x25519 = pq_quic_plugin.group_by_name("x25519")
            assert served.groups == [x25519, x25519]

    asyncio.run(main())


@pytest.mark.parametrize("size", [1, 300, 16384, 70_000, 5 << 20])
def test_writes_of_every_size_arrive_whole_both_ways(pki, size: int) -> None:
    """Outgoing ciphertext leaves through a reused buffer of at most 256 KiB per call, so sizes
    around a record, over it and far over the buffer (5 MiB) must all arrive intact, read
    back both as bytes and into a caller's buffer."""
    pair = Pair(server_ctx(pki), client_ctx(pki))
    pair.handshake()
    data = os.urandom(size)
    for writer, reader, into in (
        (pair.server, pair.client, False),
        (pair.client, pair.server, True),
    ):
        assert writer.write(data) == size
        pair.pump()
        received, buffer = bytearray(), bytearray(65536)
        while True:
            try:
                if into:
                    received += buffer[: reader.read(len(buffer), buffer)]
                else:
                    received += reader.read(65536)
            except ssl.SSLWantReadError:
                break
        assert bytes(received) == data


def test_a_stale_openssl_error_does_not_fail_the_next_call(pki) -> None:
    """The layer clears OpenSSL's (per-thread) error queue only when something is in it: an
    error left there by unrelated code must not turn a want-read, a write or a read into a
    failed connection."""
    from OpenSSL._util import ffi, lib  # the binding the layer runs on

    def leave_an_error() -> None:
        bio = lib.BIO_new_mem_buf(b"garbage", 7)
        try:
            assert lib.PEM_read_bio_X509(bio, ffi.NULL, ffi.NULL, ffi.NULL) == ffi.NULL
        finally:
            lib.BIO_free(bio)
        assert lib.ERR_peek_error() != 0

    pair = Pair(server_ctx(pki), client_ctx(pki))
    pair.handshake()
    leave_an_error()
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.read(100)
    leave_an_error()
    assert pair.client.write(b"hi") == 2
    pair.pump()
    leave_an_error()
    assert pair.server.read(10) == b"hi"
