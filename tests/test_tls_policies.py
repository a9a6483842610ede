"""Policies over TCP against peers that are not us: what ``prefer`` and ``require`` mean there.

The classical peers are independent stacks: Python's ``ssl`` and curl on the system OpenSSL
3.0 (no ML-KEM at all), and a pyOpenSSL client driven by hand for the one behaviour no library
offers on request: listing X25519MLKEM768 while sending a key share for x25519 only. The
HelloRetryRequest is read off the wire, not taken from our own bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import threading
from typing import Any

import pytest
import trio
from OpenSSL import SSL
from OpenSSL._util import lib
from plugin_util import x25519_copy
from tls_util import (
    client_ctx,
    handshake_types,
    http11,
    is_hello_retry,
    server_ctx,
    serving,
    stdlib_client,
    x25519,
)

import pq_quic_plugin
from pq_quic_plugin.policy import NoPostQuantumGroupError
from pq_quic_plugin.tls_binding import PostQuantumRefusedError, QuicOnlyGroupError

# ------------------------------------------------------------------ HelloRetryRequest


async def _raw_client(pki: Any, port: int, groups: bytes) -> tuple[str | None, bytes, bytes]:
    """A pyOpenSSL client with OpenSSL's group list ``groups`` (the first group gets the only
    key share), its bytes relayed over a plain asyncio TCP connection; returns the group and
    everything each side sent."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(pki.ca_cert))
    ctx.set_verify(SSL.VERIFY_PEER)
    assert lib.SSL_CTX_set1_curves_list(ctx._context, groups) == 1
    conn = SSL.Connection(ctx)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"localhost")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent, received = bytearray(), bytearray()
    while True:
        try:
            conn.do_handshake()
            done = True
        except SSL.WantReadError:
            done = False
        try:
            out = conn.bio_read(1 << 20)
        except SSL.WantReadError:
            out = b""
        sent += out
        writer.write(out)
        if done:
            break
        data = await reader.read(1 << 16)
        assert data, "server closed during the handshake"
        received += data
        conn.bio_write(data)
    group = conn.get_group_name()
    writer.close()
    return group, bytes(sent), bytes(received)


@pytest.mark.parametrize(
    ("client_groups", "group", "retry"),
    [
        # Lists ML-KEM but sends only an x25519 share: the server asks for ML-KEM.
        (b"X25519:X25519MLKEM768", "X25519MLKEM768", True),
        (b"secp256r1:X25519:X25519MLKEM768", "X25519MLKEM768", True),
        # Sends the ML-KEM share: one round trip.
        (b"X25519MLKEM768:X25519", "X25519MLKEM768", False),
        # Classical only: served classically, in one round trip (no pointless retry).
        (b"X25519:secp256r1", "x25519", False),
    ],
)
def test_prefer_server_asks_for_post_quantum_by_hello_retry_request(
    pki, client_groups: bytes, group: str, retry: bool
) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki)) as served:
            negotiated, sent, received = await _raw_client(pki, served.port, client_groups)
            await served.reached(1)  # the client may finish before the server's app starts
            assert negotiated == group
            assert is_hello_retry(received) is retry
            assert handshake_types(sent).count(1) == (2 if retry else 1)  # ClientHellos
            assert served.groups == [pq_quic_plugin.group_by_name(group)]

    asyncio.run(main())


# ------------------------------------------------------------------ prefer: classical still served


@pytest.mark.parametrize(
    ("maximum", "version"), [(None, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")]
)
def test_prefer_serves_a_classical_stdlib_client(
    pki, maximum: ssl.TLSVersion | None, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki)) as served:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                served.port,
                ssl=stdlib_client(pki, maximum),
                server_hostname="localhost",
            )
            assert await reader.read() == b"hello from the app"
            assert writer.get_extra_info("ssl_object").version() == version
            writer.close()
            assert served.groups == [x25519()] and served.versions == [version]

    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin.tls"):
        asyncio.run(main())
    assert "server negotiated x25519 over TCP: NOT post-quantum" in caplog.text


def _run_curl(pki: Any, port: int, *extra: str) -> asyncio.Future[Any]:
    return asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            "curl", "-sS", "--max-time", "10", "--cacert", str(pki.ca_cert), *extra,
            f"https://localhost:{port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize(
    ("policy", "exit_code", "answer"), [("prefer", 0, b"x25519"), ("require", 35, b"")]
)
def test_curl_on_the_system_openssl(pki, policy: str, exit_code: int, answer: bytes) -> None:
    """curl links OpenSSL 3.0: served classically under prefer, refused in the handshake
    (exit 35) under require, and then the app never sees a request."""

    async def main() -> None:
        async with serving(server_ctx(pki, policy, alpn=["http/1.1"]), http11) as served:
            process = await _run_curl(pki, served.port)
            out, err = await process.communicate()
            assert process.returncode == exit_code, err
            assert out == answer
            assert served.groups == ([x25519()] if policy == "prefer" else [])
            if policy == "require":
                assert b"alert handshake failure" in err  # an alert, not a dropped connection

    asyncio.run(main())


# ------------------------------------------------------------------ require


@pytest.mark.parametrize(
    ("maximum", "alert", "log"),
    [
        (None, "HANDSHAKE_FAILURE", "client offered no post-quantum key-exchange group"),
        (ssl.TLSVersion.TLSv1_2, "PROTOCOL_VERSION", "client does not speak TLS 1.3"),
    ],
)
def test_require_server_refuses_a_classical_client_with_an_alert(
    pki, maximum: ssl.TLSVersion | None, alert: str, log: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki, "require")) as served:
            with pytest.raises(ssl.SSLError) as info:
                await asyncio.open_connection(
                    "127.0.0.1", served.port, ssl=stdlib_client(pki, maximum),
                    server_hostname="localhost",
                )  # fmt: skip
            assert alert in str(info.value.reason)  # the client got the alert itself
            await asyncio.sleep(0.05)
            assert served.groups == []  # the app was never reached

    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin.tls"):
        asyncio.run(main())
    assert f"refusing handshake: {log}" in caplog.text
    assert "server policy is 'require'" in caplog.text


def _stdlib_server_thread(pki: Any, maximum: ssl.TLSVersion | None) -> tuple[int, threading.Thread]:
    """A blocking Python ``ssl`` server (OpenSSL 3.0): unlike asyncio's, it sends its alert."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.cert, pki.key)
    if maximum is not None:
        ctx.maximum_version = maximum
    listener = socket.create_server(("127.0.0.1", 0))

    def accept_one() -> None:
        conn, _ = listener.accept()
        with listener, conn, contextlib.suppress(ssl.SSLError, OSError):
            ctx.wrap_socket(conn, server_side=True)

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.mark.parametrize(
    "classical_server",
    ["stdlib-tls13", "stdlib-tls12-only", "our-layer-classical-groups"],
)
def test_require_client_facing_a_classical_server_says_why(
    pki, classical_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        if classical_server == "our-layer-classical-groups":
            ctx = server_ctx(pki, groups=["x25519", "secp256r1"])
            async with serving(ctx) as served:
                await _connect_and_expect_refusal(pki, served.port)
            return
        maximum = ssl.TLSVersion.TLSv1_2 if classical_server == "stdlib-tls12-only" else None
        port, thread = _stdlib_server_thread(pki, maximum)
        await _connect_and_expect_refusal(pki, port)
        thread.join(5)

    with caplog.at_level(logging.ERROR, logger="pq_quic_plugin.tls"):
        asyncio.run(main())
    assert "post-quantum handshake refused by the peer" in caplog.text


async def _connect_and_expect_refusal(pki: Any, port: int) -> None:
    with pytest.raises(PostQuantumRefusedError) as info:
        await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx(pki, "require"), server_hostname="localhost"
        )
    message = str(info.value)
    assert "post-quantum handshake refused by the peer" in message
    assert "[X25519MLKEM768]" in message and "policy is 'require'" in message
    assert "Enable X25519MLKEM768 on the server" in message and "'prefer'" in message
    assert "No classical connection was made." in message
    assert isinstance(info.value, ssl.SSLError)


def test_require_client_under_trio_explains_a_server_that_just_hangs_up(pki) -> None:
    """trio (like asyncio) drops a Python-ssl server's alert and closes: the client sees only
    EOF in the handshake, and still says why."""

    async def handle(stream: trio.SSLStream[Any]) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError:
            pass

    async def main() -> None:
        classical = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        classical.load_cert_chain(pki.cert, pki.key)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(
                trio.serve_listeners, handle, [trio.SSLListener(listeners[0], classical)]
            )
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=client_ctx(pki, "require")
            )
            with pytest.raises(trio.BrokenResourceError) as info:
                await stream.do_handshake()
            assert isinstance(info.value.__cause__, PostQuantumRefusedError)
            assert "closed the connection during the handshake" in str(info.value.__cause__)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_require_keeps_tls_1_3(pki) -> None:
    ctx = server_ctx(pki, "require")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # what generic code (hypercorn) sets
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ValueError, match="needs TLS 1.3"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert server_ctx(pki).minimum_version == ssl.TLSVersion.TLSv1_2


# ------------------------------------------------------------------ groups at configuration time


def test_groups_become_openssl_lists(pki) -> None:
    server = server_ctx(pki, groups=["X25519MLKEM768", "SecP256r1MLKEM768", "x25519"])
    assert server.openssl_groups == "X25519MLKEM768:SecP256r1MLKEM768 / x25519"
    assert client_ctx(pki).openssl_groups == "*X25519MLKEM768:*x25519:secp256r1:secp384r1"
    assert client_ctx(pki, "require").openssl_groups == "*X25519MLKEM768"
    # The server's defaults: every group OpenSSL can do, post-quantum first, no draft Kyber.
    default = server_ctx(pki).openssl_groups
    assert default.startswith("X25519MLKEM768:") and " / x25519:" in default
    assert "Kyber" not in default


@pytest.mark.parametrize("name", ["X25519Kyber768Draft00", "X25519Kyber512Draft00"])
def test_a_quic_only_group_is_refused_at_configuration(pki, name: str) -> None:
    with pytest.raises(QuicOnlyGroupError, match=f"{name} are QUIC-only") as info:
        server_ctx(pki, groups=[name, "X25519MLKEM768"])
    assert "Remove them to use X25519MLKEM768 over TCP" in str(info.value)
    assert isinstance(info.value, ValueError)
    ctx = server_ctx(pki, groups=[name, "X25519MLKEM768"], skip_quic_only=True)
    assert ctx.openssl_groups == "X25519MLKEM768"


def test_a_list_with_nothing_openssl_can_do_names_the_groups(pki) -> None:
    for policy in ("prefer", "require"):
        with pytest.raises(QuicOnlyGroupError, match="No group in the list can be negotiated"):
            server_ctx(pki, policy, groups=["X25519Kyber768Draft00"], skip_quic_only=True)
    with pytest.raises(
        NoPostQuantumGroupError, match="X25519Kyber768Draft00 would be post-quantum"
    ):
        server_ctx(pki, "require", groups=["x25519", "X25519Kyber768Draft00"], skip_quic_only=True)
    with pytest.raises(NoPostQuantumGroupError, match="got: x25519"):
        client_ctx(pki, "require", groups=["x25519"])
    with pytest.raises(pq_quic_plugin.UnknownGroupError):
        client_ctx(pki, groups=["NoSuchGroup"])
    with pytest.raises(ValueError, match="cannot choose key-exchange groups"):
        pq_quic_plugin.ssl_context("off", ["x25519"], server_side=False)


def test_a_plugin_group_is_quic_only(pki) -> None:
    with x25519_copy(0xFE99, "X25519Copy"):
        with pytest.raises(QuicOnlyGroupError, match="X25519Copy are QUIC-only"):
            client_ctx(pki, groups=["X25519Copy", "x25519"])
        assert "X25519Copy" not in server_ctx(pki).openssl_groups  # defaults skip it silently
