"""The connector's origin client against real origins on loopback (no mocks).

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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import ssl
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pq_quic_plugin.tunnel.headers import forwardable
from pq_quic_plugin.tunnel.origin import (
    OriginClient,
    OriginError,
    OriginHop,
    OriginRequest,
    OriginResponse,
    join_path,
)
from tools.loopback import Process, free_port, hypercorn_pq, start, stop

APPS = Path(__file__).resolve().parent / "apps"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))

from origin_app import CHUNK, pattern  # noqa: E402

pytestmark = pytest.mark.slow  # three origin servers as processes

MB = 1024 * 1024
BIG = 20 * MB
T = TypeVar("T")


#: The ``origin-protocol`` of each kind of connection, and the HTTP version the origin sees.
PROTOCOL = {"http": "auto", "h1tls": "http1", "h2": "auto", "h3": "http3"}
HTTP_VERSION = {"http": "1.1", "h1tls": "1.1", "h2": "2", "h3": "3"}
PQ = "X25519MLKEM768"


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


def expected_hop(kind: str, group: str | None = PQ) -> OriginHop:
    """The connector-origin hop a request over ``kind`` reports when ``group`` was agreed."""
    if kind == "http":
        return OriginHop("connector-origin", "tcp", None, False, http_version="1.1")
    post_quantum = group == PQ
    if kind == "h3":
        return OriginHop("connector-origin", "quic", group, post_quantum, http_version="3")
    return OriginHop(
        "connector-origin", "tcp", group, post_quantum, tls=True, http_version=HTTP_VERSION[kind]
    )


def _wait_tcp(port: int, process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"origin exited:\n{process.log()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"origin not listening on {port}:\n{process.log()}")


@pytest.fixture(scope="module")
def origins(pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    logs = tmp_path_factory.mktemp("origins")
    http_port, pq_port, classical_port, stdlib_port = (free_port() for _ in range(4))
    # A short graceful timeout: hypercorn waits it out at every stop, even when idle.
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key), "--graceful-timeout", "1"]
    hypercorn = [sys.executable, "-m", "hypercorn", "--graceful-timeout", "1", "origin_app:app"]
    plain = start([*hypercorn, "-b", f"127.0.0.1:{http_port}"], logs / "plain.log", cwd=APPS)
    stdlib = start(
        [*hypercorn, *tls, "-b", f"127.0.0.1:{stdlib_port}"], logs / "stdlib-tls.log", cwd=APPS
    )
    try:
        _wait_tcp(http_port, plain)
        _wait_tcp(stdlib_port, stdlib)
        with (
            hypercorn_pq(
                ["--pq", *tls, "-b", f"127.0.0.1:{pq_port}", "origin_app:app"],
                logs,
                port=pq_port,
                cwd=APPS,
            ),
            hypercorn_pq(
                [
                    "--pq",
                    "--pq-groups",
                    "x25519",
                    *tls,
                    "-b",
                    f"127.0.0.1:{classical_port}",
                    "origin_app:app",
                ],
                logs,
                port=classical_port,
                cwd=APPS,
            ),
        ):
            yield Origins(
                f"http://127.0.0.1:{http_port}",
                f"https://127.0.0.1:{pq_port}",
                f"https://127.0.0.1:{classical_port}",
                f"https://127.0.0.1:{stdlib_port}",
                str(pki.ca_cert),
                logs,
            )
    finally:
        stop(plain.proc)
        stop(stdlib.proc)


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


async def nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


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


# ---------------------------------------------------------------------------- small pieces


def test_join_path_keeps_the_query_and_the_base() -> None:
    assert join_path("", "/x?y=1") == "/x?y=1"
    assert join_path("/base", "/x?y=1") == "/base/x?y=1"
    assert join_path("/base/", "/") == "/base/"
    assert join_path("/base", "x") == "/base/x"
    assert join_path("", "") == "/"


def test_forwardable_drops_hop_by_hop_headers() -> None:
    headers = [
        ("Host", "a.example"),
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "5"),
        ("X-Secret", "1"),
        ("Proxy-Authorization", "x"),
        ("Proxy-Foo", "y"),
        ("TE", "trailers"),
        ("Trailer", "x"),
        ("Upgrade", "h2c"),
        ("Transfer-Encoding", "chunked"),
        (":path", "/"),
        ("X-Kept", "2"),
    ]
    assert forwardable(headers) == [("Host", "a.example"), ("TE", "trailers"), ("X-Kept", "2")]
    assert forwardable([("te", "gzip")]) == []


def test_hop_as_dict_is_what_the_origin_middleware_reads() -> None:
    assert expected_hop("h3").as_dict() == {
        "hop": "connector-origin",
        "transport": "quic",
        "group": PQ,
        "post_quantum": True,
        "http_version": "3",
    }
    assert expected_hop("h2").as_dict() == {
        "hop": "connector-origin",
        "transport": "tcp",
        "group": PQ,
        "post_quantum": True,
        "http_version": "2",
        "tls": True,
    }
    assert expected_hop("http").as_dict() == {
        "hop": "connector-origin",
        "transport": "tcp",
        "group": None,
        "post_quantum": False,
        "http_version": "1.1",
    }


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize("kind", KINDS)
def test_get_keeps_host_and_strips_hop_by_hop(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[OriginResponse, dict]:
        response = await client.request(
            OriginRequest(
                origins.url(kind) + "/base",
                "GET",
                "/headers?x=1&y=2",
                [
                    ("Host", "visitor.example"),
                    ("Connection", "X-Drop"),
                    ("X-Drop", "1"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authorization", "Basic eA=="),
                    ("Upgrade", "websocket"),
                    ("X-Custom", "kept"),
                ],
                nothing(),
                **origins.kw(kind),
            )
        )
        return response, json.loads(await read_all(response))

    response, seen = run(go)
    assert response.status == 200
    assert ("x-origin", "origin-app") in response.headers
    assert not any(k.lower() in ("connection", "transfer-encoding") for k, _ in response.headers)
    assert seen["path"] == "/base/headers" and seen["query"] == "x=1&y=2"
    assert seen["method"] == "GET"
    received = {k: v for k, v in seen["headers"]}
    assert received["host"] == "visitor.example"
    assert received["x-custom"] == "kept"
    for name in ("x-drop", "keep-alive", "proxy-authorization", "upgrade", "connection"):
        assert name not in received, name
    assert "transfer-encoding" not in received and "content-length" not in received
    assert seen["http_version"] == HTTP_VERSION[kind]
    assert response.hop == expected_hop(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_post_bodies_with_and_without_length(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> list[dict]:
        seen = []
        for headers, body in [
            ([("Host", "v")], chunks(b"hello ", b"", b"world")),  # streamed, no length
            ([("Host", "v"), ("Content-Length", "5")], chunks(b"he", b"llo")),
            ([("Host", "v")], nothing()),  # a POST without a body
        ]:
            response = await client.request(
                OriginRequest(
                    origins.url(kind), "POST", "/headers", headers, body, **origins.kw(kind)
                )
            )
            assert response.status == 200
            seen.append(json.loads(await read_all(response)))
        return seen

    streamed, with_length, empty = run(go)
    assert streamed["body_length"] == 11 and with_length["body_length"] == 5
    assert empty["body_length"] == 0
    if HTTP_VERSION[kind] == "1.1":
        assert ["transfer-encoding", "chunked"] in streamed["headers"]
        assert ["content-length", "5"] in with_length["headers"]
        assert ["content-length", "0"] in empty["headers"]


@pytest.mark.parametrize("kind", ["h2", "h3"])
def test_hops_callback_tells_the_origin_the_negotiated_group(origins: Origins, kind: str) -> None:
    def with_hops(hop: OriginHop) -> list[tuple[str, str]]:
        hops = [
            {
                "hop": "edge-connector",
                "transport": "quic",
                "group": "X25519MLKEM768",
                "post_quantum": True,
            },
            hop.as_dict(),
        ]
        return [("Host", "v"), ("pq-tunnel-hops", json.dumps(hops))]

    async def go(client: OriginClient) -> dict:
        response = await client.request(
            OriginRequest(
                origins.https,
                "GET",
                "/headers",
                [("Host", "v")],
                nothing(),
                headers_for=with_hops,
                **origins.kw(kind),
            )
        )
        return json.loads(await read_all(response))

    seen = run(go)
    hops = json.loads(dict(seen["headers"])["pq-tunnel-hops"])
    assert hops[-1] == expected_hop(kind).as_dict()


@pytest.mark.parametrize("kind", KINDS)
def test_large_upload_streams_with_bounded_memory(origins: Origins, kind: str) -> None:
    body = Produced(BIG)

    async def go(client: OriginClient) -> tuple[dict, int]:
        with Memory() as memory:
            response = await client.request(
                OriginRequest(
                    origins.url(kind),
                    "POST",
                    "/sha256",
                    [("Host", "v")],
                    body(),
                    timeout=120,
                    **origins.kw(kind),
                )
            )
            result = json.loads(await read_all(response))
        return result, memory.peak

    result, peak = run(go)
    assert result == {"length": BIG, "sha256": body.digest.hexdigest()}
    assert peak < BIG // 4, f"client heap grew by {peak} bytes for a {BIG}-byte upload"


@pytest.mark.parametrize("kind", KINDS)
def test_large_download_streams_with_bounded_memory(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[int, str, int]:
        digest, length = hashlib.sha256(), 0
        with Memory() as memory:
            response = await client.request(
                OriginRequest(
                    origins.url(kind),
                    "GET",
                    f"/bytes/{BIG}",
                    [("Host", "v")],
                    nothing(),
                    **origins.kw(kind),
                )
            )
            assert response.status == 200
            async for chunk in response.body:
                digest.update(chunk)
                length += len(chunk)
        return length, digest.hexdigest(), memory.peak

    length, sha, peak = run(go)
    assert length == BIG and sha == expected_sha256(BIG)
    assert peak < BIG // 4, f"client heap grew by {peak} bytes for a {BIG}-byte download"


@pytest.mark.parametrize("kind", KINDS)
def test_slow_reader_holds_back_the_origin(origins: Origins, kind: str) -> None:
    """A reader that stops reading is not sent the whole body behind its back.

    Over HTTP/1.1 that is TCP flow control; over HTTP/3 the client grants the origin stream
    credit only as the body is read (aioquic by itself would keep widening the window).
    """

    async def go(client: OriginClient) -> tuple[int, str, int]:
        digest, length = hashlib.sha256(), 0
        response = await client.request(
            OriginRequest(
                origins.url(kind),
                "GET",
                f"/bytes/{BIG}",
                [("Host", "v")],
                nothing(),
                **origins.kw(kind),
            )
        )
        with Memory() as memory:
            first = await response.body.__anext__()
            await asyncio.sleep(3)  # time enough for the origin to send a lot more
            held = memory.now()
        digest.update(first)
        length += len(first)
        async for chunk in response.body:
            digest.update(chunk)
            length += len(chunk)
        return length, digest.hexdigest(), held

    length, sha, held = run(go)
    assert length == BIG and sha == expected_sha256(BIG)
    assert held < 2.5 * MB, f"{held} bytes buffered while the reader paused"


@pytest.mark.parametrize("kind", KINDS)
def test_echo_is_full_duplex(origins: Origins, kind: str) -> None:
    """The upload waits for echoed bytes before sending more: only true streaming finishes."""

    async def go(client: OriginClient) -> tuple[bytes, bytes]:
        echoed = asyncio.Event()
        sent = bytearray()

        async def body() -> AsyncIterator[bytes]:
            for i in range(8):
                part = bytes([65 + i]) * (256 * 1024)
                sent.extend(part)
                yield part
                if i == 0:
                    await asyncio.wait_for(echoed.wait(), 20)

        response = await client.request(
            OriginRequest(
                origins.url(kind), "POST", "/echo", [("Host", "v")], body(), **origins.kw(kind)
            )
        )
        received = bytearray()
        async for chunk in response.body:
            received.extend(chunk)
            echoed.set()
        return bytes(sent), bytes(received)

    sent, received = run(go)
    assert len(sent) == 2 * MB and received == sent


@pytest.mark.parametrize("kind", KINDS)
def test_aclose_cancels_and_the_client_stays_usable(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[list[int], int]:
        statuses = []
        response = await client.request(
            OriginRequest(
                origins.url(kind),
                "GET",
                f"/bytes/{BIG}",
                [("Host", "v")],
                nothing(),
                **origins.kw(kind),
            )
        )
        await response.body.__anext__()
        await response.aclose()
        await response.aclose()  # twice is fine
        for _ in range(3):
            again = await client.request(
                OriginRequest(
                    origins.url(kind),
                    "GET",
                    "/headers",
                    [("Host", "v")],
                    nothing(),
                    **origins.kw(kind),
                )
            )
            statuses.append(again.status)
            await read_all(again)
        return statuses, (client.quic_sessions, client.h2_sessions)

    statuses, sessions = run(go)
    assert statuses == [200, 200, 200]
    assert sessions == (int(kind == "h3"), int(kind == "h2"))  # the reset left it usable


def test_http2_cancellations_give_the_window_back(origins: Origins) -> None:
    """Each cancelled download resets its stream (RST_STREAM) and returns what it left unread
    to the connection's window: 24 of them would leave the 16 MiB window shut otherwise, and
    the download after them, on the same connection, would never finish."""

    async def go(client: OriginClient) -> tuple[int, int]:
        for _ in range(24):
            response = await client.request(
                OriginRequest(
                    origins.https, "GET", f"/bytes/{BIG}", [("Host", "v")], None, **origins.kw("h2")
                )
            )
            await asyncio.wait_for(response.body.__anext__(), 30)
            await asyncio.sleep(0.05)  # let the origin fill the stream's window
            await response.aclose()
        response = await client.request(
            OriginRequest(
                origins.https, "GET", f"/bytes/{BIG}", [("Host", "v")], None, **origins.kw("h2")
            )
        )
        length = len(await asyncio.wait_for(read_all(response), 60))
        return length, client.h2_sessions

    assert run(go) == (BIG, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_requests_reuse_the_connection(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> list[list]:
        ports = []
        for _ in range(3):
            response = await client.request(
                OriginRequest(
                    origins.url(kind),
                    "GET",
                    "/headers",
                    [("Host", "v")],
                    nothing(),
                    **origins.kw(kind),
                )
            )
            ports.append(json.loads(await read_all(response))["client"])
        return ports

    ports = run(go)
    assert ports[0] == ports[1] == ports[2]


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_requests_share_connections(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[list[int], int]:
        async def one(i: int) -> int:
            response = await client.request(
                OriginRequest(
                    origins.url(kind),
                    "GET",
                    f"/bytes/{1000 + i}",
                    [("Host", "v")],
                    nothing(),
                    **origins.kw(kind),
                )
            )
            body = await read_all(response)
            assert body == pattern(1000 + i)
            return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(30)))
        return list(statuses), (client.quic_sessions, client.h2_sessions)

    statuses, sessions = run(go)
    assert statuses == [200] * 30
    assert sessions == (int(kind == "h3"), int(kind == "h2"))  # one connection, multiplexed


# ---------------------------------------------------------------------------- failures


def test_refused_connection_is_502_naming_the_origin() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(OriginRequest(url, "GET", "/", [("Host", "v")], nothing()))
        return caught.value

    error = run(go)
    assert error.status == 502
    assert url in error.reason and "refused" in error.reason


def test_https_origin_refusing_tcp_is_502_naming_the_origin() -> None:
    url = f"https://127.0.0.1:{free_port()}"

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(OriginRequest(url, "GET", "/", [("Host", "v")], nothing()))
        return caught.value

    error = run(go)
    assert error.status == 502
    assert url in error.reason and "refused" in error.reason


def test_https_origin_not_answering_quic_is_504_naming_the_origin() -> None:
    url = f"https://127.0.0.1:{free_port()}"

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(
                OriginRequest(url, "GET", "/", [("Host", "v")], nothing(), protocol="http3")
            )
        return caught.value

    error = run(go, connect_timeout=1.0)
    assert error.status == 504
    assert url in error.reason and "QUIC handshake" in error.reason


@pytest.mark.parametrize("kind", KINDS)
def test_slow_origin_is_504(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[OriginError, int]:
        with pytest.raises(OriginError) as caught:
            await client.request(
                OriginRequest(
                    origins.url(kind),
                    "GET",
                    "/slow?delay=10",
                    [("Host", "v")],
                    nothing(),
                    timeout=1,
                    **origins.kw(kind),
                )
            )
        after = await client.request(
            OriginRequest(
                origins.url(kind), "GET", "/headers", [("Host", "v")], nothing(), **origins.kw(kind)
            )
        )
        await read_all(after)
        return caught.value, after.status

    error, status = run(go)
    assert error.status == 504 and origins.url(kind) in error.reason
    assert status == 200


@pytest.mark.parametrize("kind", ["http", *TCP_TLS])
def test_origin_that_stops_reading_the_upload_holds_it_back(origins: Origins, kind: str) -> None:
    body = Produced(512 * MB)

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(
                OriginRequest(
                    origins.url(kind),
                    "POST",
                    "/stall",
                    [("Host", "v")],
                    body(),
                    timeout=2,
                    **origins.kw(kind),
                )
            )
        return caught.value

    error = run(go)
    assert error.status == 504 and "stopped reading the request body" in error.reason
    assert body.taken < 256 * MB, f"{body.taken} bytes taken from the visitor"


async def raw_origin(reply: bytes) -> tuple[asyncio.AbstractServer, str]:
    """A TCP server on loopback that answers every request with ``reply`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_malformed_response_is_502_naming_the_origin() -> None:
    async def go(client: OriginClient) -> tuple[str, OriginError]:
        server, url = await raw_origin(b"HELLO THERE\r\n\r\n")
        async with server:
            with pytest.raises(OriginError) as caught:
                await client.request(OriginRequest(url, "GET", "/x", [("Host", "v")], nothing()))
        return url, caught.value

    url, error = run(go)
    assert error.status == 502 and url in error.reason and "no valid response" in error.reason


def test_body_broken_off_by_the_origin_raises_from_the_iterator() -> None:
    async def go(client: OriginClient) -> tuple[str, int, bytes, OriginError]:
        server, url = await raw_origin(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        received = b""
        async with server:
            response = await client.request(
                OriginRequest(url, "GET", "/x", [("Host", "v")], nothing())
            )
            with pytest.raises(OriginError) as caught:
                async for chunk in response.body:
                    received += chunk
        return url, response.status, received, caught.value

    url, status, received, error = run(go)
    assert status == 200 and received == b"0123456789"
    assert error.status == 502 and url in error.reason and "broke off" in error.reason


def test_unknown_policy_fails_at_once() -> None:
    with pytest.raises(ValueError, match="policy"):
        OriginClient("sometimes")


def _get(origins: Origins, url: str, kind: str) -> OriginRequest:
    return OriginRequest(url, "GET", "/headers", [("Host", "v")], nothing(), **origins.kw(kind))


@pytest.mark.parametrize("kind", ["h1tls", "h2", "h3"])
@pytest.mark.parametrize("policy", ["prefer", "require"])
def test_the_origin_hop_is_post_quantum_under_both_policies(
    origins: Origins, kind: str, policy: str
) -> None:
    async def go(client: OriginClient) -> tuple[OriginResponse, dict]:
        response = await client.request(_get(origins, origins.https, kind))
        return response, json.loads(await read_all(response))

    response, seen = run(go, policy=policy)
    assert response.status == 200 and seen["http_version"] == HTTP_VERSION[kind]
    assert response.hop == expected_hop(kind)


@pytest.mark.parametrize(
    "kind, origin", [("h3", "classical"), ("h2", "classical"), ("h2", "stdlib_tls")]
)
def test_require_policy_refuses_a_classical_origin(
    origins: Origins, kind: str, origin: str
) -> None:
    """No request reaches an origin that cannot do post-quantum key exchange, and the 502 says
    why: over QUIC the origin's choice, over TCP an alert (OpenSSL with a classical group list)
    or a dropped connection (Python's ssl, which cannot parse an offer of ML-KEM only)."""
    url = getattr(origins, origin)

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(_get(origins, url, kind))
        return caught.value

    error = run(go, policy="require")
    assert error.status == 502
    assert url in error.reason and "post-quantum" in error.reason
    if kind == "h3":
        assert "x25519" in error.reason
    else:
        assert (
            "TLS handshake" in error.reason and "No classical connection was made" in error.reason
        )


@pytest.mark.parametrize(
    "kind, origin", [("h3", "classical"), ("h2", "classical"), ("h2", "stdlib_tls")]
)
def test_prefer_policy_reports_a_classical_origin_honestly(
    origins: Origins, kind: str, origin: str
) -> None:
    async def go(client: OriginClient) -> OriginResponse:
        response = await client.request(_get(origins, getattr(origins, origin), kind))
        await read_all(response)
        return response

    response = run(go)
    assert response.status == 200
    assert response.hop == expected_hop(kind, "x25519")


@pytest.mark.parametrize("kind", KINDS)
def test_head_has_a_length_and_no_body(origins: Origins, kind: str) -> None:
    if kind == "h3":
        pytest.xfail("aioquic's H3Connection checks Content-Length against a HEAD response")

    async def go(client: OriginClient) -> tuple[OriginResponse, bytes]:
        response = await client.request(
            OriginRequest(
                origins.url(kind), "HEAD", "/bytes/1000", [("Host", "v")], None, **origins.kw(kind)
            )
        )
        body = await read_all(response)
        after = await client.request(_get(origins, origins.url(kind), kind))  # still in step
        assert json.loads(await read_all(after))["method"] == "GET"
        return response, body

    response, body = run(go)
    assert response.status == 200 and body == b""
    assert ("content-length", "1000") in response.headers


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


def test_auto_speaks_http1_to_an_origin_without_h2_and_http2_says_why_not(pki: Any) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def go(client: OriginClient) -> tuple[str, OriginResponse, bytes, OriginError]:
        server, url = await tls_origin(pki, ["http/1.1"], reply)
        kw: dict[str, Any] = {"ca_file": str(pki.ca_cert), "server_name": "localhost"}
        async with server:
            response = await client.request(
                OriginRequest(url, "GET", "/", [("Host", "v")], nothing(), **kw)
            )
            body = await read_all(response)
            with pytest.raises(OriginError) as caught:
                await client.request(
                    OriginRequest(
                        url, "GET", "/", [("Host", "v")], nothing(), protocol="http2", **kw
                    )
                )
            await client.aclose()  # its kept-alive connection goes before the server does
        return url, response, body, caught.value

    url, response, body, error = run(go)
    assert response.status == 200 and body == b"ok"
    assert response.hop == expected_hop("h1tls", "x25519")
    assert error.status == 502 and url in error.reason
    assert "does not offer HTTP/2" in error.reason


def test_an_origin_protocol_the_service_cannot_speak_is_refused() -> None:
    async def go(client: OriginClient) -> list[OriginError]:
        errors = []
        for url, protocol in [("http://127.0.0.1:1", "http2"), ("http://127.0.0.1:1", "http3")]:
            with pytest.raises(OriginError) as caught:
                await client.request(OriginRequest(url, protocol=protocol))
            errors.append(caught.value)
        return errors

    for error in run(go):
        assert error.status == 502 and "needs an https:// service" in error.reason


def test_certificate_for_another_name_is_502_naming_the_origin(origins: Origins) -> None:
    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(
                OriginRequest(
                    origins.https,
                    "GET",
                    "/headers",
                    [("Host", "v")],
                    nothing(),
                    ca_file=origins.ca,
                    server_name="other.example",
                )
            )
        return caught.value

    error = run(go)
    assert error.status == 502 and origins.https in error.reason
    assert "did not verify" in error.reason and "other.example" in error.reason


def test_body_failure_from_the_visitor_propagates_unchanged(origins: Origins) -> None:
    class VisitorGone(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise VisitorGone("visitor reset the stream")

    async def go(client: OriginClient, kind: str) -> None:
        with pytest.raises(VisitorGone):
            response = await client.request(
                OriginRequest(
                    origins.url(kind),
                    "POST",
                    "/sha256",
                    [("Host", "v")],
                    broken(),
                    **origins.kw(kind),
                )
            )
            await read_all(response)
        after = await client.request(_get(origins, origins.url(kind), kind))
        await read_all(after)
        assert after.status == 200

    for kind in KINDS:
        run(lambda client, kind=kind: go(client, kind))  # type: ignore[misc]


# ---------------------------------------------------------------------------- WebSocket


@pytest.mark.parametrize(
    "kind, policy", [("http", "prefer"), ("h2", "prefer"), ("h2", "require"), ("h3", "require")]
)
def test_websocket_echo(origins: Origins, kind: str, policy: str) -> None:
    """``https://`` WebSockets go over post-quantum TLS on TCP (wss), whatever the rule's
    origin protocol; the hop says so."""

    async def go(client: OriginClient) -> dict[str, Any]:
        ws = await client.websocket(
            OriginRequest(
                origins.url(kind),
                path="/ws",
                headers=[("Host", "visitor.example")],
                **origins.kw(kind),
            ),
            ["chat", "other"],
        )
        out: dict[str, Any] = {"status": ws.status, "subprotocol": ws.subprotocol, "hop": ws.hop}
        await ws.send("hello")
        out["text"] = await ws.receive()
        await ws.send(b"\x00\x01" * 50_000)
        out["bytes"] = await ws.receive()
        await ws.send("close:4001")
        out["after_close"] = await ws.receive()
        out["again"] = await ws.receive()
        out["close_code"] = ws.close_code
        await ws.send("ignored after the close")
        await ws.close()
        return out

    out = run(go, policy=policy)
    assert out["status"] == 101 and out["subprotocol"] == "chat"
    assert out["text"] == "hello" and out["bytes"] == b"\x00\x01" * 50_000
    assert out["after_close"] is None and out["again"] is None
    assert out["close_code"] == 4001
    assert out["hop"] == expected_hop("http" if kind == "http" else "h1tls")


def test_websocket_under_require_refuses_a_classical_origin(origins: Origins) -> None:
    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.websocket(
                OriginRequest(
                    origins.stdlib_tls, path="/ws", headers=[("Host", "v")], **origins.kw("h2")
                )
            )
        return caught.value

    error = run(go, policy="require")
    assert error.status == 502 and origins.stdlib_tls in error.reason
    assert "post-quantum" in error.reason


def test_websocket_client_close_and_refusal(origins: Origins) -> None:
    async def go(client: OriginClient) -> tuple[int | None, Any, int, Any]:
        ws = await client.websocket(
            OriginRequest(origins.http, path="/ws", headers=[("Host", "v")])
        )
        await ws.send("ping")
        assert await ws.receive() == "ping"
        await ws.close(1000)
        closed = (ws.close_code, await ws.receive())
        refused = await client.websocket(
            OriginRequest(origins.http, path="/elsewhere", headers=[("Host", "v")])
        )
        return closed[0], closed[1], refused.status, await refused.receive()

    code, after, refused_status, refused_message = run(go)
    assert code == 1000 and after is None
    assert refused_status == 403 and refused_message is None


def test_websocket_refused_connection_is_502() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.websocket(OriginRequest(url, path="/ws", headers=[("Host", "v")]))
        return caught.value

    error = run(go)
    assert error.status == 502 and url in error.reason


def test_the_app_is_importable_by_hypercorn() -> None:
    """Guard: hypercorn finds the test app from tests/apps (the fixture depends on it)."""
    result = subprocess.run(
        [sys.executable, "-c", "import origin_app; print(origin_app.app)"],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
