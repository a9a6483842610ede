"""The TCP TLS layer under the event loops that use it: asyncio, trio and httpx (anyio).

Every test runs real TLS over real sockets on 127.0.0.1 with our ``ssl_context()`` on both sides
(other peers are in ``test_tls_policies.py``): the handshake must be post-quantum
(X25519MLKEM768) as seen from both ends, and data must arrive intact in both directions,
including the multi-megabyte writes that lost data under trio before partial writes were
turned off.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from typing import Any

import httpx
import pytest
import trio
from tls_util import client_ctx, http11, mlkem, server_ctx, serving

import pq_quic_plugin
from pq_quic_plugin.tls_binding import PostQuantumSSLContext, PostQuantumSSLObject


@pytest.fixture(scope="module")
def body() -> bytes:
    return os.urandom(20 * 1024 * 1024 + 12345)  # not a multiple of the 16 KiB record size


def test_contexts_are_ssl_contexts_and_off_is_the_stdlib(pki) -> None:
    server, client = server_ctx(pki), client_ctx(pki)
    assert isinstance(server, ssl.SSLContext) and isinstance(server, PostQuantumSSLContext)
    assert isinstance(client, ssl.SSLContext) and isinstance(client, PostQuantumSSLContext)
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert server.verify_mode == ssl.CERT_NONE
    off = pq_quic_plugin.ssl_context("off", server_side=False, cafile=pki.ca_cert, alpn=["h2"])
    assert type(off) is ssl.SSLContext
    assert off.check_hostname and off.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(NotImplementedError, match="wrap_bio"):
        client.wrap_socket(None)


# ------------------------------------------------------------------ asyncio


async def _exchange(served_port: int, ctx: ssl.SSLContext, payload: bytes) -> tuple[Any, bytes]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", served_port, ssl=ctx, server_hostname="localhost"
    )
    writer.write(len(payload).to_bytes(8, "big") + payload)
    await writer.drain()
    digest = await reader.readexactly(32)
    size = int.from_bytes(await reader.readexactly(8), "big")
    echoed = hashlib.sha256()
    while size:
        chunk = await reader.read(min(size, 1 << 20))
        assert chunk, "connection closed early"
        echoed.update(chunk)
        size -= len(chunk)
    group = pq_quic_plugin.negotiated_group(writer)
    writer.close()
    await writer.wait_closed()
    assert digest == hashlib.sha256(payload).digest(), "server received different bytes"
    return group, echoed.digest()


async def _hash_and_send_back(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Hashes what the client sends and sends it back (twice the traffic, both directions)."""
    size = int.from_bytes(await reader.readexactly(8), "big")
    digest, back = hashlib.sha256(), bytearray()
    while len(back) < size:
        chunk = await reader.read(min(size - len(back), 1 << 20))
        assert chunk
        digest.update(chunk)
        back += chunk
    writer.write(digest.digest() + size.to_bytes(8, "big"))
    writer.write(bytes(back))
    await writer.drain()
    assert await reader.read() == b""  # the client's close_notify: a clean end, not an error


def test_asyncio_both_sides_post_quantum(pki) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki), _hash_and_send_back) as served:
            payload = os.urandom(100_000)
            group, echoed = await _exchange(served.port, client_ctx(pki), payload)
            assert echoed == hashlib.sha256(payload).digest()
            assert group is mlkem()  # the registry's own object, as over QUIC
            assert served.groups == [mlkem()] and served.versions == ["TLSv1.3"]

    asyncio.run(main())


def test_asyncio_20_mb_both_ways_intact(pki, body: bytes) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki), _hash_and_send_back) as served:
            group, echoed = await _exchange(served.port, client_ctx(pki), body)
            assert echoed == hashlib.sha256(body).digest()
            assert group is mlkem() and served.groups == [mlkem()]

    asyncio.run(main())


def test_asyncio_start_tls_upgrades_both_sides(pki) -> None:
    """A plain connection turned into TLS on both ends (``StreamWriter.start_tls``)."""
    seen: dict[str, Any] = {}

    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx(pki))
        seen["server"] = pq_quic_plugin.negotiated_group(writer)
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(upgrade, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO\n"
            await writer.start_tls(client_ctx(pki), server_hostname="localhost")
            writer.write(b"now encrypted\n")
            assert await reader.readline() == b"NOW ENCRYPTED\n"
            assert isinstance(writer.get_extra_info("ssl_object"), PostQuantumSSLObject)
            seen["client"] = pq_quic_plugin.negotiated_group(writer)
            writer.close()

    asyncio.run(main())
    assert seen == {"server": mlkem(), "client": mlkem()}


@pytest.mark.parametrize(
    ("server_alpn", "client_alpn", "chosen"),
    [
        (["h2", "http/1.1"], ["h2", "http/1.1"], "h2"),
        (["h2", "http/1.1"], ["http/1.1", "h2"], "h2"),  # the server's preference decides
        (["h2", "http/1.1"], ["http/1.1"], "http/1.1"),
        (["h2"], ["http/1.1"], None),  # no overlap: no ALPN, as with Python's ssl
    ],
)
def test_alpn_selection(pki, server_alpn: list[str], client_alpn: list[str], chosen: str) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki, alpn=server_alpn)) as served:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", served.port, ssl=client_ctx(pki, alpn=client_alpn),
                server_hostname="localhost",
            )  # fmt: skip
            assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == chosen
            assert await reader.read() == b"hello from the app"
            writer.close()
            assert served.alpn == [chosen]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("hostname", "message"),
    [
        ("wrong.example", "Hostname mismatch, certificate is not valid for 'wrong.example'."),
        ("127.0.0.2", "IP address mismatch, certificate is not valid for '127.0.0.2'."),
    ],
)
def test_hostname_verification_rejects_a_wrong_name(pki, hostname: str, message: str) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki)) as served:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await asyncio.open_connection(
                    "127.0.0.1", served.port, ssl=client_ctx(pki), server_hostname=hostname
                )
            assert info.value.verify_message == message
            assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
            # The right names (a DNS name and an IP address in the certificate) pass.
            for good in ("localhost", "127.0.0.1"):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", served.port, ssl=client_ctx(pki), server_hostname=good
                )
                assert await reader.read() == b"hello from the app"
                writer.close()
            assert served.groups == [mlkem(), mlkem()]  # the refused client never reached the app

    asyncio.run(main())


def test_an_untrusted_server_is_refused_unless_verify_is_off(pki, tmp_path) -> None:
    from pq_quic_plugin.devcert import make_dev_pki

    other = make_dev_pki(tmp_path)  # a CA the client does not trust

    async def main() -> None:
        async with serving(server_ctx(other)) as served:
            with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
                await asyncio.open_connection(
                    "127.0.0.1", served.port, ssl=client_ctx(pki), server_hostname="localhost"
                )
            lax = pq_quic_plugin.ssl_context(server_side=False, verify=False)
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port, ssl=lax)
            assert await reader.read() == b"hello from the app"
            assert writer.get_extra_info("peercert") == {}  # unverified, as with Python's ssl
            writer.close()

    asyncio.run(main())


# ------------------------------------------------------------------ trio


def test_trio_both_directions_multi_megabyte(pki) -> None:
    """One ``send_all`` of several MB each way: trio ignores ``write()``'s count, so a partial
    write would silently drop everything after the first 16 KiB record."""
    upload = os.urandom(3 * 1024 * 1024 + 7)
    download = os.urandom(5 * 1024 * 1024 + 3)
    seen: dict[str, Any] = {}

    async def receive_exactly(stream: trio.SSLStream[Any], size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = await stream.receive_some(1 << 20)
            assert chunk, "closed early"
            data += chunk
        return bytes(data)

    async def handle(stream: trio.SSLStream[Any]) -> None:
        await stream.do_handshake()
        seen["server"] = pq_quic_plugin.negotiated_group(stream)
        received = await receive_exactly(stream, len(upload))
        seen["upload"] = hashlib.sha256(received).digest()
        await stream.send_all(download)
        await stream.aclose()

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        ssl_listeners = [
            trio.SSLListener(lis, server_ctx(pki), https_compatible=True) for lis in listeners
        ]
        with trio.fail_after(60):  # lost data shows up as a wait for bytes that never come
            await _serve_and_transfer(ssl_listeners, port)

    async def _serve_and_transfer(ssl_listeners: list[Any], port: int) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, ssl_listeners)
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=client_ctx(pki), https_compatible=True
            )
            await stream.do_handshake()
            seen["client"] = pq_quic_plugin.negotiated_group(stream)
            await stream.send_all(upload)
            seen["download"] = hashlib.sha256(await receive_exactly(stream, len(download))).digest()
            assert await stream.receive_some() == b""
            await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen["upload"] == hashlib.sha256(upload).digest()
    assert seen["download"] == hashlib.sha256(download).digest()
    assert seen["server"] is mlkem() and seen["client"] is mlkem()


def test_trio_sees_an_eof_without_close_notify_as_the_stdlib_does(pki) -> None:
    """A peer that drops TCP without close_notify: ``SSLEOFError`` underneath, which trio's
    ``https_compatible`` mode turns into a plain end of stream and the strict mode into an
    error, exactly as with Python's ``ssl``."""
    outcomes: dict[bool, Any] = {}

    async def handle(stream: trio.SSLStream[Any]) -> None:
        await stream.do_handshake()
        await stream.send_all(b"partial")
        await stream.transport_stream.aclose()  # no close_notify

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        ssl_listeners = [trio.SSLListener(lis, server_ctx(pki)) for lis in listeners]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, ssl_listeners)
            for compatible in (True, False):
                stream = await trio.open_ssl_over_tcp_stream(
                    "127.0.0.1", port, ssl_context=client_ctx(pki), https_compatible=compatible
                )
                assert await stream.receive_some() == b"partial"
                try:
                    outcomes[compatible] = await stream.receive_some()
                except trio.BrokenResourceError as exc:
                    outcomes[compatible] = exc.__cause__
                await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert outcomes[True] == b""
    assert isinstance(outcomes[False], ssl.SSLEOFError)


# ------------------------------------------------------------------ httpx (anyio)


def test_httpx_async_client_takes_the_context_as_verify(pki) -> None:
    async def main() -> None:
        async with serving(server_ctx(pki, alpn=["h2", "http/1.1"]), http11) as served:
            async with httpx.AsyncClient(verify=client_ctx(pki)) as client:
                response = await client.get(f"https://127.0.0.1:{served.port}/")
                assert response.status_code == 200
                assert response.text == "X25519MLKEM768"  # what the server's handshake saw
                stream = response.extensions["network_stream"]
                assert pq_quic_plugin.negotiated_group(stream) is mlkem()
            assert served.alpn == ["http/1.1"]  # httpcore sets ALPN on the context we gave it

    asyncio.run(main())
