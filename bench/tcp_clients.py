"""The clients of the TCP serving benchmark: httpx for requests, httpx and curl for transfers.

httpx's async client takes an ``ssl.SSLContext`` as ``verify``, so the same client code runs
over the post-quantum layer (``ssl_context("prefer")``: X25519MLKEM768 against hypercorn-pq)
and over Python's ``ssl`` (``ssl_context("off")``): only the context differs. For bulk
transfers httpx's own CPU (HTTP/2 framing in Python) caps what it can move, so curl, one C
binary for both servers, measures the servers' data path; the system's curl has no ML-KEM, so
it negotiates x25519 with both, which changes nothing once the handshake is over.
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .load import closed_loop

CURL = shutil.which("curl")
PIECE = 1 << 20  # what an httpx upload hands over per step


def client(ctx: Any, http2: bool, **kwargs: Any) -> Any:
    import httpx

    return httpx.AsyncClient(verify=ctx, http2=http2, http1=not http2, timeout=60, **kwargs)


def _expect(response: Any, http2: bool) -> bool:
    return bool(
        response.status_code == 200 and response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    )


async def new_connection_per_request(
    url: str, ctx: Any, http2: bool, workers: int, duration: float, limit: int
) -> tuple[list[float], int, float]:
    """``workers`` closed loops, each request on a client of its own: a TCP connection and a
    full TLS handshake per request, as a browser's first visit."""

    async def one() -> bool:
        async with client(ctx, http2) as session:
            return _expect(await session.get(url), http2)

    return await closed_loop([one] * workers, duration, limit)


async def reused_connections(
    url: str,
    ctx: Any,
    http2: bool,
    in_flight: int,
    duration: float,
    limit: int,
    headers: dict[str, str] | None = None,
) -> tuple[list[float], int, float]:
    """One client with ``in_flight`` requests at a time: over HTTP/1.1 that many keep-alive
    connections, over HTTP/2 that many streams on one connection. The connections are opened
    (one request each) before the measured loop. ``headers`` go with every request (a
    ``Host`` to reach a tunnel by name through 127.0.0.1)."""
    async with client(ctx, http2, headers=headers) as session:
        warm = await asyncio.gather(*(session.get(url) for _ in range(in_flight)))
        if not all(_expect(r, http2) for r in warm):
            raise RuntimeError(f"warm-up failed: {warm[0]} {warm[0].http_version}")

        async def one() -> bool:
            return _expect(await session.get(url), http2)

        return await closed_loop([one] * in_flight, duration, limit)


async def _zeros(size: int) -> AsyncIterator[bytes]:
    piece = bytes(PIECE)
    while size > 0:
        yield piece[: min(size, PIECE)]
        size -= PIECE


async def httpx_transfer(base: str, ctx: Any, http2: bool, direction: str, size: int) -> float:
    """Seconds to download or upload ``size`` bytes on a connection opened (by one small
    request) before the clock starts."""
    async with client(ctx, http2) as session:
        if not _expect(await session.get(base + "/"), http2):
            raise RuntimeError("the warm-up request failed")
        t0 = time.perf_counter()
        if direction == "download":
            got = 0
            async with session.stream("GET", f"{base}/bytes/{size}") as response:
                async for chunk in response.aiter_raw():
                    got += len(chunk)
            ok = _expect(response, http2) and got == size
        else:
            response = await session.post(
                base + "/upload", content=_zeros(size), headers={"content-length": str(size)}
            )
            ok = _expect(response, http2) and response.text.strip() == str(size)
        elapsed = time.perf_counter() - t0
    if not ok:
        raise RuntimeError(f"httpx {direction} of {size} bytes did not complete")
    return elapsed


def curl_version() -> str | None:
    """curl's first ``--version`` line (its release and the OpenSSL it uses)."""
    if CURL is None:
        return None
    done = subprocess.run([CURL, "--version"], capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.stdout else None


def curl_transfer(
    base: str, ca: Path, http2: bool, direction: str, size: int, upload_file: Path
) -> tuple[float, float]:
    """(seconds from the request to the last byte, curl's CPU seconds) for one transfer.

    curl's clock starts after its handshake (``time_pretransfer``), so process start-up and the
    TLS handshake are left out, as in :func:`httpx_transfer`. ``Expect:`` is sent empty: a
    100-continue round trip would time the server's interim response, not the transfer.
    """
    if CURL is None:
        raise RuntimeError("curl is not installed (apt-get install curl)")
    version = "--http2" if http2 else "--http1.1"
    argv = [CURL, "-sS", "--fail", version, "--cacert", str(ca), "--max-time", "120"]
    if direction == "download":
        argv += ["-o", "/dev/null", f"{base}/bytes/{size}"]
    else:
        argv += ["-H", "Expect:", "-T", str(upload_file), f"{base}/upload"]  # body: the count
    argv += ["-w", "%{http_version} %{size_download} %{size_upload} %{time_pretransfer} "
             "%{time_total}"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"curl {direction} failed ({done.returncode}): {done.stderr.strip()}")
    *answer, http_version, down, up, pretransfer, total = done.stdout.split()
    moved = int(down) if direction == "download" else int(answer[0]) if answer else -1
    if http_version != ("2" if http2 else "1.1") or moved != size:
        raise RuntimeError(f"curl {direction}: HTTP/{http_version}, {moved} of {size} bytes")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return float(total) - float(pretransfer), cpu
