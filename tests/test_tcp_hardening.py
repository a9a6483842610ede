"""hypercorn-pq's TCP listener over the post-quantum TLS layer, under hostile and heavy clients.

The HTTP/3 side of the same questions is tests/test_h3_hardening.py. Here, under both of
hypercorn's worker classes (asyncio, trio), every client is post-quantum (httpx's async client
on ``pq_quic_plugin.ssl_context``) unless the test is about one that is not:

* an app that leaves a response unfinished: HTTP/2 resets the stream at once (hypercorn-pq's
  ``h2_streams`` fix), HTTP/1.1 closes short of the content-length;
* a client that uploads and never reads: flow control (TCP's and HTTP/2's) stops the upload,
  the server's memory stays bounded and other clients are served meanwhile;
* clients that break off handshakes or send garbage: the listener keeps serving, nothing
  crashes;
* bulk transfers both ways arrive intact (SHA-256): ``PQ_BULK_MB`` MB each way (default 32;
  ``PQ_BULK_MB=100`` for the long form).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import free_port, hypercorn_pq
from tcp_util import TCP_APP_DIR, curl, pq_client, pq_get_json, tls_args
from waiting import wait_until_steady_async

from pq_quic_plugin.devcert import DevPKI

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # hypercorn-pq under both worker classes

BULK_MB = int(os.environ.get("PQ_BULK_MB", "32"))
#: What origin_app's /bytes/N repeats (64 KiB), so the download's hash is known in advance.
BLOCK = bytes(range(256)) * 256


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, pki: DevPKI, tmp_path_factory: Any) -> Any:
    port = free_port()
    args = ["--pq", "-k", request.param, *tls_args(pki, port), "tcp_app:app"]
    with hypercorn_pq(args, tmp_path_factory.mktemp("logs"), port, cwd=TCP_APP_DIR) as proc:
        yield port, proc


def _url(server: Any, path: str) -> str:
    return f"https://localhost:{server[0]}{path}"


# ---------------------------------------------------------------- an unfinished response


def test_http2_unfinished_response_is_reset_at_once(server: Any, pki: DevPKI) -> None:
    async def visit() -> BaseException:
        async with pq_client(pki, http2=True, timeout=20) as client:
            async with client.stream("GET", _url(server, "/broken")) as resp:
                assert resp.http_version == "HTTP/2" and resp.status_code == 200
                try:
                    async for _ in resp.aiter_bytes():
                        pass
                except httpx.RemoteProtocolError as exc:
                    return exc
        raise AssertionError("the short body ended without an error")

    started = time.monotonic()
    error = asyncio.run(visit())
    assert "StreamReset" in str(error), error  # not a wait for the keep-alive timeout
    assert time.monotonic() - started < 10
    assert "Traceback" not in server[1].log()


def test_http11_unfinished_response_closes_short(server: Any, pki: DevPKI) -> None:
    async def visit() -> tuple[int, BaseException | None]:
        received = 0
        async with pq_client(pki, timeout=20) as client:
            async with client.stream("GET", _url(server, "/broken")) as resp:
                assert resp.http_version == "HTTP/1.1" and resp.status_code == 200
                try:
                    async for chunk in resp.aiter_bytes():
                        received += len(chunk)
                except httpx.RemoteProtocolError as exc:
                    return received, exc
        return received, None

    received, error = asyncio.run(visit())
    assert received == 10_000 and error is not None, (received, error)


# ---------------------------------------------------------------- a client that never reads


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_a_slow_reader_stalls_nobody_and_memory_stays_bounded(
    server: Any, pki: DevPKI, http2: bool
) -> None:
    """Uploads to /echo and never reads the echo: the upload must stop (flow control reaches
    the client), the server holds a bounded amount, and others are served meanwhile."""
    offered = 512 << 20
    taken = 0

    async def upload() -> Any:
        nonlocal taken
        chunk = b"x" * 65536
        while taken < offered:
            taken += len(chunk)
            yield chunk

    async def scenario() -> tuple[float, float]:
        pid = (await pq_get_json(pki, _url(server, "/pid")))["pid"]
        before = _rss_mb(pid)
        async with pq_client(pki, http2=http2, timeout=60) as client:
            stuck = asyncio.create_task(client.post(_url(server, "/echo"), content=upload()))
            try:
                await wait_until_steady_async(
                    lambda: taken, quiet=1.0, timeout=30, what="flow control to stop the upload"
                )
                other = await pq_get_json(pki, _url(server, "/scope"), http2=not http2)
                assert other["pq_quic"]["group"] == "X25519MLKEM768"
                after = _rss_mb(pid)
            finally:
                stuck.cancel()
                with pytest.raises((asyncio.CancelledError, httpx.HTTPError)):
                    await stuck
        return before, after

    before, after = asyncio.run(scenario())
    print(
        f"offered {offered >> 20} MB; server took {taken / 2**20:.1f} MB; "
        f"RSS {before:.0f} -> {after:.0f} MB"
    )
    # Stock hypercorn's HTTP/2 took all 512 MB here (see hypercorn_binding/h2_streams.py).
    assert taken < 32 << 20, f"the server accepted {taken >> 20} MB nobody reads"
    assert after - before < 40, f"server RSS grew by {after - before:.0f} MB"


# ---------------------------------------------------------------- broken and foreign clients


def test_broken_handshakes_and_garbage_do_not_hurt_the_listener(server: Any, pki: DevPKI) -> None:
    port, proc = server
    for payload in (
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",  # plain HTTP on the TLS port
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40),  # half a ClientHello
        os.urandom(3000),  # noise
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(payload)
            sock.settimeout(5)
            try:
                while sock.recv(4096):
                    pass
            except (ConnectionResetError, TimeoutError):
                pass
    # A TLS client that gives up in the middle of the handshake, and one that resets after it.
    outgoing = ssl.MemoryBIO()
    hello = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing, server_hostname="localhost"
    )
    with contextlib.suppress(ssl.SSLWantReadError):
        hello.do_handshake()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(outgoing.read())  # the ClientHello; gone before the server's answer
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n")
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    # Everyone else is still served: a classical curl and a post-quantum client.
    assert curl(pki, _url(server, "/scope")).returncode == 0
    scope = asyncio.run(pq_get_json(pki, _url(server, "/scope"), http2=True))
    assert scope["pq_quic"]["group"] == "X25519MLKEM768"
    assert "Traceback" not in proc.log(), proc.log_tail()


# ---------------------------------------------------------------- bulk, both ways


def _expected_sha256(size: int) -> str:
    digest, left = hashlib.sha256(), size
    while left:
        digest.update(BLOCK[: min(left, len(BLOCK))])
        left -= min(left, len(BLOCK))
    return digest.hexdigest()


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_bulk_up_and_down_intact(server: Any, pki: DevPKI, http2: bool) -> None:
    size = BULK_MB << 20
    piece = os.urandom(1 << 20)

    async def body() -> Any:
        for i in range(BULK_MB):
            yield piece[i:] + piece[:i]  # every MiB different

    upload_digest = hashlib.sha256()
    for i in range(BULK_MB):
        upload_digest.update(piece[i:] + piece[:i])

    async def transfer() -> tuple[dict, str, int, float, float]:
        async with pq_client(pki, http2=http2, timeout=120) as client:
            started = time.monotonic()
            up = await client.post(_url(server, "/sha256"), content=body())
            up_seconds = time.monotonic() - started
            digest, received = hashlib.sha256(), 0
            started = time.monotonic()
            async with client.stream("GET", _url(server, f"/bytes/{size}")) as resp:
                assert resp.status_code == 200
                async for chunk in resp.aiter_raw():
                    digest.update(chunk)
                    received += len(chunk)
            down_seconds = time.monotonic() - started
            return json.loads(up.content), digest.hexdigest(), received, up_seconds, down_seconds

    up, down_digest, received, up_s, down_s = asyncio.run(transfer())
    print(f"{BULK_MB} MB up {BULK_MB / up_s:.0f} MB/s, down {BULK_MB / down_s:.0f} MB/s")
    assert up == {"length": size, "sha256": upload_digest.hexdigest()}
    assert received == size and down_digest == _expected_sha256(size)


def test_the_request_limit_never_strands_a_response_in_flight(server: Any, pki: DevPKI) -> None:
    """2,100 HTTP/2 requests, 8 at a time, on one connection: past hypercorn's
    ``keep_alive_max_requests`` (1,000) its GOAWAY came at once, h2 sent no response after it,
    and the requests in flight got nothing until the keep-alive timeout closed the connection.
    hypercorn-pq no longer ends HTTP/2 connections after a number of requests
    (hypercorn_binding/h2_streams.py says why)."""

    async def visit() -> tuple[int, float, set[str]]:
        slowest, done, versions = 0.0, 0, set()
        left = iter(range(2_100))
        async with pq_client(pki, http2=True, timeout=20) as client:

            async def worker() -> None:
                nonlocal slowest, done
                for _ in left:  # the short wait keeps responses in flight
                    started = time.monotonic()
                    resp = await client.get(_url(server, "/slow?delay=0.005"))
                    assert resp.status_code == 200 and resp.content == b"slow"
                    versions.add(resp.http_version)
                    slowest = max(slowest, time.monotonic() - started)
                    done += 1

            await asyncio.gather(*(worker() for _ in range(8)))
        return done, slowest, versions

    done, slowest, versions = asyncio.run(visit())
    assert (done, versions) == (2_100, {"HTTP/2"})
    assert slowest < 2.5, f"a request took {slowest:.2f} s (a response stranded by a GOAWAY)"
    assert "Traceback" not in server[1].log()
