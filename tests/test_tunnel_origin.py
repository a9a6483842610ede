"""The connector's origin client against real origins on loopback (no mocks).

Three origins run the small ASGI app in tests/apps/origin_app.py:

* plain hypercorn (``http://``: HTTP/1.1 over TCP),
* ``hypercorn-pq --pq`` (``https://``: HTTP/3 with X25519MLKEM768, plus TLS over TCP for wss),
* ``hypercorn-pq --pq --pq-groups x25519``: a classical-only HTTP/3 origin.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
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


@dataclass
class Origins:
    http: str
    https: str
    classical: str
    ca: str
    logs: Path

    def url(self, kind: str) -> str:
        return self.http if kind == "http" else self.https

    def kw(self, kind: str) -> dict[str, Any]:
        return {"ca_file": self.ca, "server_name": "localhost"} if kind == "https" else {}


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
    http_port, pq_port, classical_port = free_port(), free_port(), free_port()
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    plain = start(
        [sys.executable, "-m", "hypercorn", "-b", f"127.0.0.1:{http_port}", "origin_app:app"],
        logs / "plain.log",
        cwd=APPS,
    )
    try:
        _wait_tcp(http_port, plain)
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
                str(pki.ca_cert),
                logs,
            )
    finally:
        stop(plain.proc)


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


KINDS = ["http", "https"]


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
    hop = OriginHop("connector-origin", "quic", "X25519MLKEM768", True)
    assert hop.as_dict() == {
        "hop": "connector-origin",
        "transport": "quic",
        "group": "X25519MLKEM768",
        "post_quantum": True,
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
    if kind == "http":
        assert seen["http_version"] == "1.1"
        assert response.hop == OriginHop("connector-origin", "http/1.1", None, False)
    else:
        assert seen["http_version"] == "3"
        assert response.hop == OriginHop("connector-origin", "quic", "X25519MLKEM768", True)


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
    if kind == "http":
        assert ["transfer-encoding", "chunked"] in streamed["headers"]
        assert ["content-length", "5"] in with_length["headers"]
        assert ["content-length", "0"] in empty["headers"]


def test_hops_callback_tells_the_origin_the_negotiated_group(origins: Origins) -> None:
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
                **origins.kw("https"),
            )
        )
        return json.loads(await read_all(response))

    seen = run(go)
    hops = json.loads(dict(seen["headers"])["pq-tunnel-hops"])
    assert hops[-1] == {
        "hop": "connector-origin",
        "transport": "quic",
        "group": "X25519MLKEM768",
        "post_quantum": True,
    }


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
            await asyncio.sleep(5)  # time enough for the origin to send a lot more
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
        return statuses, client.quic_sessions

    statuses, sessions = run(go)
    assert statuses == [200, 200, 200]
    assert sessions == (1 if kind == "https" else 0)


def test_http_keepalive_reuses_the_connection(origins: Origins) -> None:
    async def go(client: OriginClient) -> list[list]:
        ports = []
        for _ in range(3):
            response = await client.request(
                OriginRequest(origins.http, "GET", "/headers", [("Host", "v")], nothing())
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
        return list(statuses), client.quic_sessions

    statuses, sessions = run(go)
    assert statuses == [200] * 30
    assert sessions == (1 if kind == "https" else 0)


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


def test_https_origin_not_answering_quic_is_504_naming_the_origin() -> None:
    url = f"https://127.0.0.1:{free_port()}"

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(OriginRequest(url, "GET", "/", [("Host", "v")], nothing()))
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


def test_origin_that_stops_reading_the_upload_holds_it_back(origins: Origins) -> None:
    body = Produced(512 * MB)

    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(
                OriginRequest(origins.http, "POST", "/stall", [("Host", "v")], body(), timeout=2)
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


def test_require_policy_refuses_a_classical_origin(origins: Origins) -> None:
    async def go(client: OriginClient) -> OriginError:
        with pytest.raises(OriginError) as caught:
            await client.request(
                OriginRequest(
                    origins.classical,
                    "GET",
                    "/headers",
                    [("Host", "v")],
                    nothing(),
                    **origins.kw("https"),
                )
            )
        return caught.value

    error = run(go, policy="require")
    assert error.status == 502
    assert origins.classical in error.reason
    assert "post-quantum" in error.reason and "x25519" in error.reason


def test_prefer_policy_reports_a_classical_origin_honestly(origins: Origins) -> None:
    async def go(client: OriginClient) -> OriginResponse:
        response = await client.request(
            OriginRequest(
                origins.classical,
                "GET",
                "/headers",
                [("Host", "v")],
                nothing(),
                **origins.kw("https"),
            )
        )
        await read_all(response)
        return response

    response = run(go)
    assert response.status == 200
    assert response.hop == OriginHop("connector-origin", "quic", "x25519", False)


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
        after = await client.request(
            OriginRequest(
                origins.url(kind), "GET", "/headers", [("Host", "v")], nothing(), **origins.kw(kind)
            )
        )
        await read_all(after)
        assert after.status == 200

    for kind in KINDS:
        run(lambda client, kind=kind: go(client, kind))  # type: ignore[misc]


# ---------------------------------------------------------------------------- WebSocket


@pytest.mark.parametrize("kind", KINDS)
def test_websocket_echo(origins: Origins, kind: str) -> None:
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

    out = run(go)
    assert out["status"] == 101 and out["subprotocol"] == "chat"
    assert out["text"] == "hello" and out["bytes"] == b"\x00\x01" * 50_000
    assert out["after_close"] is None and out["again"] is None
    assert out["close_code"] == 4001
    assert out["hop"] == OriginHop("connector-origin", "http/1.1", None, False, tls=kind == "https")


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
