"""The connector's origin client streams: bounded memory, flow control, cancellation, reuse."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import pytest
from origin_support import (
    BIG,
    KINDS,
    MB,
    Memory,
    Origins,
    Produced,
    expected_sha256,
    pattern,
    read_all,
    run,
)

from pq_quic_plugin.tunnel.origin import OriginClient
from pq_quic_plugin.tunnel.origin.h2 import MAX_STREAMS as H2_MAX_STREAMS

pytest_plugins = ["origin_fixtures"]  # the session-wide ``origins`` fixture
pytestmark = pytest.mark.slow  # three origin servers as processes


@pytest.mark.parametrize("kind", KINDS)
def test_large_upload_streams_with_bounded_memory(origins: Origins, kind: str) -> None:
    body = Produced(BIG)

    async def go(client: OriginClient) -> tuple[dict, int]:
        with Memory() as memory:
            response = await client.request(
                origins.request(kind, "/sha256", "POST", body=body, timeout=120)
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
            response = await client.request(origins.request(kind, f"/bytes/{BIG}"))
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
        response = await client.request(origins.request(kind, f"/bytes/{BIG}"))
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

        response = await client.request(origins.request(kind, "/echo", "POST", body=body))
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
        response = await client.request(origins.request(kind, f"/bytes/{BIG}"))
        await response.body.__anext__()
        await response.aclose()
        await response.aclose()  # twice is fine
        for _ in range(3):
            again = await client.request(origins.request(kind))
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
            response = await client.request(origins.request("h2", f"/bytes/{BIG}", body=None))
            await asyncio.wait_for(response.body.__anext__(), 30)
            await asyncio.sleep(0.05)  # let the origin fill the stream's window
            await response.aclose()
        response = await client.request(origins.request("h2", f"/bytes/{BIG}", body=None))
        length = len(await asyncio.wait_for(read_all(response), 60))
        return length, client.h2_sessions

    assert run(go) == (BIG, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_requests_reuse_the_connection(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> list[list]:
        ports = []
        for _ in range(3):
            response = await client.request(origins.request(kind))
            ports.append(json.loads(await read_all(response))["client"])
        return ports

    ports = run(go)
    assert ports[0] == ports[1] == ports[2]


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_requests_share_connections(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[list[int], int]:
        async def one(i: int) -> int:
            response = await client.request(origins.request(kind, f"/bytes/{1000 + i}"))
            body = await read_all(response)
            assert body == pattern(1000 + i)
            return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(30)))
        return list(statuses), (client.quic_sessions, client.h2_sessions)

    statuses, sessions = run(go)
    assert statuses == [200] * 30
    assert sessions == (int(kind == "h3"), int(kind == "h2"))  # one connection, multiplexed


#: Requests one connection carries at once: ours for HTTP/2 (hypercorn allows 100 too), the
#: origin's MAX_STREAMS for HTTP/3 (aioquic, under hypercorn-pq, grants 128).
STREAM_LIMIT = {"h2": H2_MAX_STREAMS, "h3": 128}


@pytest.mark.parametrize("kind", ["h2", "h3"])
def test_a_request_past_the_stream_limit_opens_another_connection(
    origins: Origins, kind: str
) -> None:
    """Slow requests (long polls, event streams) fill every stream one connection may have
    open. The next request is answered on a second connection while all of them still wait
    at the origin (it used to queue behind them until one ended); afterwards nothing is left
    in flight."""
    slow, limit = 10.0, STREAM_LIMIT[kind]  # the next request needs far less than ``slow``

    def in_flight(client: OriginClient) -> int:
        return client.h2_streams if kind == "h2" else client.quic_streams

    def connections(client: OriginClient) -> int:
        return client.h2_sessions if kind == "h2" else client.quic_sessions

    async def go(client: OriginClient) -> tuple[bool, int, int, bytes, int]:
        async def held() -> None:
            await read_all(await client.request(origins.request(kind, f"/slow?delay={slow}")))

        holding = [asyncio.ensure_future(held()) for _ in range(limit)]
        try:
            while in_flight(client) < limit:
                await asyncio.sleep(0.05)
            response = await client.request(origins.request(kind, "/bytes/1000", body=None))
            body = await read_all(response)
            all_waiting = not any(task.done() for task in holding)
            during = connections(client)
        finally:
            for task in holding:
                task.cancel()
            await asyncio.gather(*holding, return_exceptions=True)
        await read_all(await client.request(origins.request(kind, "/bytes/10", body=None)))
        return all_waiting, during, response.status, body, in_flight(client)

    all_waiting, during, status, body, left = run(go)
    assert status == 200 and len(body) == 1000
    assert all_waiting, "the request past the limit waited for one of the others to end"
    assert during == 2
    assert left == 0
