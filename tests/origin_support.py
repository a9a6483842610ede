"""Shared pieces of the origin-client tests: the origin processes and small helpers.

Four origins run the small ASGI app in tests/apps/origin_app.py:

* plain hypercorn (``http://``: HTTP/1.1 over TCP),
* ``hypercorn-pq --pq`` (``https://``: TLS over TCP with HTTP/2 or HTTP/1.1, and HTTP/3, all
  with X25519MLKEM768),
* ``hypercorn-pq --pq --pq-groups x25519``: a classical-only origin (QUIC and TCP),
* plain hypercorn over TLS: Python's ``ssl`` (the system's OpenSSL 3.0, no ML-KEM), a classical
  origin that cannot even parse a post-quantum-only offer.

The kinds of origin connection each test runs over: ``http`` (HTTP/1.1 in the clear), ``h1tls``
(``origin-protocol: http1``), ``h2`` (``auto``: the origin offers h2) and ``h3``
(``origin-protocol: http3``).

The ``origins`` fixture that starts them lives in origin_fixtures.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pq_quic_plugin.tunnel.origin import (
    OriginClient,
    OriginError,
    OriginHop,
    OriginRequest,
    OriginResponse,
)

APPS = Path(__file__).resolve().parent / "apps"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))

from origin_app import CHUNK, pattern  # noqa: E402

MB = 1024 * 1024
BIG = 20 * MB
T = TypeVar("T")
#: A request body for ``Origins.request``: a factory called per request, an iterator, or None.
Body = Callable[[], AsyncIterator[bytes]] | AsyncIterator[bytes] | None


#: The ``origin-protocol`` of each kind of connection, and the HTTP version the origin sees.
PROTOCOL = {"http": "auto", "h1tls": "http1", "h2": "auto", "h3": "http3"}
HTTP_VERSION = {"http": "1.1", "h1tls": "1.1", "h2": "2", "h3": "3"}
PQ = "X25519MLKEM768"


async def nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


@dataclass
class Origins:
    http: str
    https: str
    classical: str  # hypercorn-pq --pq --pq-groups x25519
    stdlib_tls: str  # plain hypercorn over TLS: Python's ssl
    ca: str
    logs: Path

    def url(self, kind: str) -> str:
        return self.http if kind == "http" else self.https

    def kw(self, kind: str) -> dict[str, Any]:
        if kind == "http":
            return {}
        return {"ca_file": self.ca, "server_name": "localhost", "protocol": PROTOCOL[kind]}

    def request(
        self,
        kind: str,
        path: str = "/headers",
        method: str = "GET",
        *,
        body: Body = nothing,
        url: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        **options: Any,
    ) -> OriginRequest:
        """A visitor's request for this kind of origin connection, as the connector makes it.

        One place for what nearly every origin test sends (``Host: v``, the kind's TLS
        settings), so a test spells out only what it is about. ``body`` is a body factory
        (called here, so each request gets a fresh generator), an iterator, or None for no
        body at all; ``url`` picks another origin than the kind's usual one; ``options`` go to
        OriginRequest and win over the kind's own.
        """
        return OriginRequest(
            self.url(kind) if url is None else url,
            method,
            path,
            [("Host", "v")] if headers is None else headers,
            body() if callable(body) else body,
            **{**self.kw(kind), **options},
        )


def expected_hop(kind: str, group: str | None = PQ) -> OriginHop:
    """The connector-origin hop a request over ``kind`` reports when ``group`` was agreed
    (the test origins present devcert's ECDSA certificate: classical authentication)."""
    if kind == "http":
        return OriginHop("connector-origin", "tcp", None, False, http_version="1.1")
    post_quantum = group == PQ
    auth = {"signature_scheme": ECDSA_SCHEME, "post_quantum_auth": False}
    if kind == "h3":
        return OriginHop("connector-origin", "quic", group, post_quantum, http_version="3", **auth)
    return OriginHop(
        "connector-origin",
        "tcp",
        group,
        post_quantum,
        tls=True,
        http_version=HTTP_VERSION[kind],
        **auth,
    )


#: What the test origins' certificate signs with (their hop's ``signature_scheme``).
ECDSA_SCHEME = "ECDSA-P256-SHA256"


def run(
    factory: Callable[[OriginClient], Awaitable[T]], policy: str = "prefer", **options: Any
) -> T:
    """Run one coroutine with a fresh client (closed afterwards) on a fresh loop."""

    async def main() -> T:
        client = OriginClient(policy, **options)
        try:
            return await factory(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class Produced:
    """A lazily generated body that counts what the client has taken from it."""

    def __init__(self, total: int, size: int = CHUNK) -> None:
        self.total, self.size, self.taken = total, size, 0
        self.digest = hashlib.sha256()

    async def __call__(self) -> AsyncIterator[bytes]:
        block = bytes(range(251)) * (self.size // 251 + 1)
        while self.taken < self.total:
            part = block[: min(self.size, self.total - self.taken)]
            self.taken += len(part)
            self.digest.update(part)
            yield part


async def read_all(response: OriginResponse) -> bytes:
    return b"".join([chunk async for chunk in response.body])


def expected_sha256(n: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, n, CHUNK):
        digest.update(pattern(min(CHUNK, n - offset)))
    return digest.hexdigest()


class Memory:
    """Python heap growth (tracemalloc) while the block runs: current and peak."""

    def __enter__(self) -> Memory:
        tracemalloc.start()
        self.base = tracemalloc.get_traced_memory()[0]
        return self

    def now(self) -> int:
        return tracemalloc.get_traced_memory()[0] - self.base

    def __exit__(self, *exc: Any) -> None:
        self.peak = tracemalloc.get_traced_memory()[1] - self.base
        tracemalloc.stop()


KINDS = ["http", "h1tls", "h2", "h3"]
TCP_TLS = ["h1tls", "h2"]


async def raw_origin(reply: bytes) -> tuple[asyncio.AbstractServer, str]:
    """A TCP server on loopback that answers every request with ``reply`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def origin_error(attempt: Awaitable[Any]) -> OriginError:
    """The OriginError ``attempt`` (a client's request or websocket) fails with; the test fails
    if it succeeds instead."""
    with pytest.raises(OriginError) as caught:
        await attempt
    return caught.value


async def tls_origin(pki: Any, alpn: list[str], reply: bytes) -> tuple[asyncio.AbstractServer, str]:
    """A TLS server on loopback (Python's ssl) offering ``alpn`` that answers every request
    with ``reply`` over HTTP/1.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert, pki.key)
    context.set_alpn_protocols(alpn)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(reply)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    return server, f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
