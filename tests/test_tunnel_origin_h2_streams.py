"""One request's trouble on the shared HTTP/2 connection to an origin stays that request's.

* A malformed response head (or trailer section) is a stream error (RFC 9113 8.1.1): that
  request gets the usual 502, the reason names the fault, and the request in flight beside it
  on the same connection finishes, as does the next one (``tests/h2_raw_origin.py`` sends the
  malformed heads: no real server does).
* Visitors that stop reading hold at most their streams' windows, and never the connection's:
  16 stalled downloads on one connection leave bounded memory and another download flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from h2_raw_origin import MALFORMED, MALFORMED_TRAILERS, SLOW_PIECES
from origin_support import BIG, MB, Memory, Origins, expected_sha256, read_all, run

from pq_quic_plugin.tunnel.headers import HOP_BY_HOP
from pq_quic_plugin.tunnel.origin import OriginClient, OriginRequest
from pq_quic_plugin.tunnel.origin.h2 import (
    CONNECTION_WINDOW,
    MAX_STREAMS,
    STREAM_WINDOW,
)
from pq_quic_plugin.tunnel.origin.h2_head import CONNECTION_SPECIFIC
from tools.loopback import free_port, start, stop
from tools.readiness import wait_listening

pytest_plugins = ["origin_fixtures"]  # the session-wide ``origins`` fixture
pytestmark = pytest.mark.slow  # origin servers as processes

RAW_ORIGIN = Path(__file__).resolve().parent / "h2_raw_origin.py"


@pytest.fixture(scope="module")
def raw_origin(pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running ``h2_raw_origin.py`` (TLS with the tests' dev PKI, ALPN h2)."""
    port = free_port()
    log = tmp_path_factory.mktemp("h2-raw-origin") / "origin.log"
    origin = start([sys.executable, str(RAW_ORIGIN), str(port), str(pki.cert), str(pki.key)], log)
    try:
        wait_listening(origin, "127.0.0.1", port, quic=False)
        yield f"https://127.0.0.1:{port}"
    finally:
        stop(origin.proc)


def _request(url: str, pki: Any, path: str) -> OriginRequest:
    return OriginRequest(
        url,
        "GET",
        path,
        [("Host", "v")],
        None,
        ca_file=str(pki.ca_cert),
        server_name="localhost",
        protocol="http2",
    )


async def _connection_number(client: OriginClient, url: str, pki: Any) -> bytes:
    """Which of the origin's TCP connections served the request (``ok N``)."""
    return await read_all(await client.request(_request(url, pki, "/ok")))


async def _beside_one_in_flight(
    client: OriginClient, url: str, pki: Any, path: str
) -> tuple[Exception, bytes, bytes, bytes]:
    """Request ``path`` while ``/slow`` is in flight on the same connection: what ``path``
    failed with, ``/slow``'s whole body, and the connection before and after."""
    before = await _connection_number(client, url, pki)
    slow = await client.request(_request(url, pki, "/slow"))
    failure: Exception
    try:
        response = await client.request(_request(url, pki, path))
        await read_all(response)
    except Exception as exc:  # the test inspects it
        failure = exc
    else:
        raise AssertionError(f"{path}: the malformed response was forwarded")
    try:
        body = await asyncio.wait_for(read_all(slow), 20)
    except Exception as exc:  # shown in the assertion
        body = f"/slow failed: {exc!r}".encode()
    after = await _connection_number(client, url, pki)
    return failure, body, before, after


#: (path, what the 502's reason says) per malformed case: heads, then trailer sections.
BAD_RESPONSES = {
    **{f"head-{case}": (f"/bad/{case}", "malformed response head") for case in MALFORMED},
    **{
        f"trailers-{case}": (f"/bad-trailers/{case}", "malformed trailers")
        for case in MALFORMED_TRAILERS
    },
}


@pytest.mark.parametrize("case", sorted(BAD_RESPONSES))
def test_a_malformed_head_or_trailer_fails_only_its_own_request(
    raw_origin: str, pki: Any, case: str
) -> None:
    """The visitor of that request gets 502 with the reason; the request in flight beside it
    on the same origin connection finishes whole, and the connection stays."""
    path, reason = BAD_RESPONSES[case]
    failure, body, before, after = run(
        lambda client: _beside_one_in_flight(client, raw_origin, pki, path)
    )
    assert getattr(failure, "status", None) == 502, repr(failure)
    assert reason in str(failure), str(failure)
    assert body == b"x" * SLOW_PIECES * 1024, f"the request in flight beside it: {body[-120:]!r}"
    assert before == after, f"the connection was replaced ({before!r} -> {after!r})"


def test_a_good_head_still_passes(raw_origin: str, pki: Any) -> None:
    """The checks refuse what is malformed, not the ordinary response of a raw h2 server."""

    async def go(client: OriginClient) -> tuple[int, list[tuple[str, str]], bytes]:
        response = await client.request(_request(raw_origin, pki, "/ok"))
        return response.status, response.headers, await read_all(response)

    status, headers, body = run(go)
    assert status == 200 and ("content-type", "text/plain") in headers
    assert body.startswith(b"ok ")


def test_connection_specific_headers_are_hop_by_hop() -> None:
    """What HTTP/2 forbids in a head is a subset of what no hop forwards (headers.py), so the
    two rules cannot drift into forwarding one of them."""
    assert {name.decode() for name in CONNECTION_SPECIFIC} <= HOP_BY_HOP


STALLED = 16


def test_stalled_readers_never_stall_another_download(origins: Origins) -> None:
    """16 visitors each take nothing of a 20 MiB download on the one shared connection while
    another downloads: memory stays within their stream windows (the origin is not allowed to
    send more) and the other download still gets its whole body.

    Before, the connection's window was 16 MiB and given back only as bodies were read: 16
    stalled streams of 1 MiB held all of it and the 17th download never got a byte.
    """

    async def go(client: OriginClient) -> tuple[int, str, int, int, int]:
        def request() -> OriginRequest:
            return origins.request("h2", f"/bytes/{BIG}", body=None)

        digest, length = hashlib.sha256(), 0
        with Memory() as memory:
            stalled = [await client.request(request()) for _ in range(STALLED)]
            await asyncio.sleep(2)  # time enough for the origin to fill every window it has
            held = memory.now()
            response = await client.request(request())

            async def download() -> None:
                nonlocal length
                async for chunk in response.body:
                    digest.update(chunk)
                    length += len(chunk)

            with contextlib.suppress(asyncio.TimeoutError):  # the length tells
                await asyncio.wait_for(download(), 60)
            for one in stalled:
                await one.aclose()
        return length, digest.hexdigest(), held, memory.peak, client.h2_sessions

    length, sha, held, peak, sessions = run(go)
    assert sessions == 1, "the downloads did not share one connection"
    assert length == BIG, f"the other download stalled after {length} of {BIG} bytes"
    assert sha == expected_sha256(BIG)
    bound = STALLED * STREAM_WINDOW + 4 * MB  # the stream windows, plus the client's own
    assert held < bound, f"{held} bytes held by {STALLED} stalled readers (bound {bound})"
    assert peak < bound + 4 * MB, f"{peak} bytes at the peak of the other download"


def test_no_request_waits_on_a_connection_the_origin_recycles(origins: Origins) -> None:
    """2,100 requests, 8 at a time, over the shared connection to a hypercorn origin, which
    ends a connection after 1,000 requests with a GOAWAY after which it sends no response still
    in flight: those requests waited 5 s (its keep-alive timeout) and were retried, every 1,000
    requests (about half the requests/s through the tunnel in bench/tunnel.py). The connector
    now moves to a new connection after MAX_REQUESTS, so the origin never gets there."""
    total, at_once = 2_100, 8  # past two of the origin's 1,000-request limits

    async def go(client: OriginClient) -> list[float]:
        loop = asyncio.get_running_loop()
        times: list[float] = []
        left = iter(range(total))

        async def worker() -> None:  # a short wait at the origin keeps responses in flight
            for _ in left:
                started = loop.time()
                request = origins.request("h2", "/slow?delay=0.01", body=None)
                response = await client.request(request)
                assert response.status == 200
                await read_all(response)
                times.append(loop.time() - started)

        await asyncio.gather(*(worker() for _ in range(at_once)))
        return times

    times = run(go)
    assert len(times) == total
    assert max(times) < 2.5, f"slowest request {max(times):.2f} s (stranded by a GOAWAY)"


def test_the_connection_window_covers_every_streams_window() -> None:
    """The invariant that keeps stalled streams from holding the connection's window."""
    assert CONNECTION_WINDOW >= MAX_STREAMS * STREAM_WINDOW
    assert CONNECTION_WINDOW < 2**31  # HTTP/2's largest window
