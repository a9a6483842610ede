"""Helpers for the TCP TLS layer's tests: real servers on 127.0.0.1 and a wire reader.

Everything runs real TLS over real sockets: our layer on one or both sides, Python's ``ssl``
(system OpenSSL 3.0, no ML-KEM) as the classical peer, or pyOpenSSL driven by hand when a test
needs a client that behaves in a way no library offers (a share for a group it ranks second).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pq_quic_plugin
from pq_quic_plugin.devcert import DevPKI

#: The ServerHello random that marks a HelloRetryRequest (RFC 8446 section 4.1.3).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


#: The ``pq_quic`` scope extension of a post-quantum TCP connection to a server presenting the
#: test PKI's certificate (ECDSA: classical authentication).
PQ_TCP_EXTENSION: dict[str, Any] = {
    "transport": "tcp",
    "group": "X25519MLKEM768",
    "codepoint": 0x11EC,
    "post_quantum": True,
    "group_known": True,
    "signature_scheme": "ECDSA-P256-SHA256",
    "signature_scheme_codepoint": 0x0403,
    "post_quantum_auth": False,
}


def assert_tls_extension(tls: dict[str, Any], pki: DevPKI) -> None:
    """``tls`` is the ``tls`` scope extension of a TLS 1.3 connection to a server presenting
    the test PKI's certificate, from a client without a certificate of its own."""
    assert tls["server_cert"] == pki.cert.read_text()
    assert tls["tls_version"] == 0x0304 and tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    assert (tls["client_cert_chain"], tls["client_cert_name"], tls["client_cert_error"]) == (
        [],
        None,
        None,
    )


def mlkem() -> Any:
    """X25519MLKEM768's registry object, looked up when used: a plugin test may rebuild the
    registry (and so the Group objects) between two tests."""
    return pq_quic_plugin.group_by_name("X25519MLKEM768")


def x25519() -> Any:
    return pq_quic_plugin.group_by_name("x25519")


def server_ctx(pki: DevPKI, policy: str = "prefer", **kwargs: Any) -> ssl.SSLContext:
    return pq_quic_plugin.ssl_context(
        policy, server_side=True, certfile=pki.cert, keyfile=pki.key, **kwargs
    )


def client_ctx(pki: DevPKI, policy: str = "prefer", **kwargs: Any) -> ssl.SSLContext:
    return pq_quic_plugin.ssl_context(policy, server_side=False, cafile=pki.ca_cert, **kwargs)


def stdlib_client(pki: DevPKI, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A classical client: Python's ssl on the system OpenSSL 3.0, which has no ML-KEM."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


@dataclass
class Served:
    """What an asyncio test server saw: one entry per connection that reached the app."""

    port: int
    groups: list[Any] = field(default_factory=list)
    alpn: list[str | None] = field(default_factory=list)
    versions: list[str | None] = field(default_factory=list)
    resumed: list[bool] = field(default_factory=list)

    async def reached(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` connections reached the app (a client may finish first)."""

        async def poll() -> None:
            while len(self.groups) < count:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello from the app")
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def serving(ctx: ssl.SSLContext, handler: Handler = _hello) -> AsyncIterator[Served]:
    """``asyncio.start_server`` with ``ctx``; records each connection's TLS facts."""
    served = Served(port=0)

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        served.groups.append(pq_quic_plugin.negotiated_group(writer))
        served.alpn.append(tls.selected_alpn_protocol())
        served.versions.append(tls.version())
        served.resumed.append(tls.session_reused)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0, ssl=ctx)
    served.port = server.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        server.close()
        await server.wait_closed()


def records(data: bytes) -> list[tuple[int, bytes]]:
    """TLS records as ``(content type, body)``; a trailing partial record is left out."""
    out, offset = [], 0
    while offset + 5 <= len(data):
        length = struct.unpack(">H", data[offset + 3 : offset + 5])[0]
        if offset + 5 + length > len(data):
            break
        out.append((data[offset], data[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return out


def handshake_types(data: bytes) -> list[int]:
    """The type of the first handshake message in each plaintext handshake record."""
    return [body[0] for kind, body in records(data) if kind == 22 and body]


def is_hello_retry(server_bytes: bytes) -> bool:
    """Whether the server's first handshake record is a HelloRetryRequest."""
    first = next((body for kind, body in records(server_bytes) if kind == 22), b"")
    return first[:1] == b"\x02" and first[6:38] == HRR_RANDOM


async def http11(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal HTTP/1.1 server: answers one request with the group the TCP handshake chose."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    group = pq_quic_plugin.negotiated_group(writer)
    text = (group.name if group else "none").encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(text))
    writer.write(text)
    await writer.drain()
