"""The http2 tunnel's per-byte and per-request shortcuts (docs/benchmarks.md, "Tunnel over
http2"), each checked for what it must still guarantee:

* the edge joins the tunnel DATA frames that are already in into one body message for the
  visitor (one TLS write), bounded by ``VISITOR_WRITE``, bytes intact;
* the response relay runs in the request's own task, and its idle timeout still cancels a
  stuck send and says so (False), leaving the task usable (not "cancelling");
* the connector hands out an HTTP/2 origin's response in chunks joined from the DATA frames
  that arrived together (and asks the origin for large frames), never more than
  ``JOIN_LIMIT`` at once;
* a request that can have no body is marked so, and the edge ends its tunnel stream with the
  head;
* ``PQ_TUNNEL_PROFILE`` writes a readable cProfile file named after the role and PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pstats
from pathlib import Path
from typing import Any

import pytest
from h2_link_util import Pair, pair, run
from origin_support import Origins, expected_sha256

from pq_quic_plugin.tunnel import profiling
from pq_quic_plugin.tunnel.edge.relay import VISITOR_WRITE, relay_response
from pq_quic_plugin.tunnel.edge.visitor_request import VisitorRequest, check_request
from pq_quic_plugin.tunnel.origin import OriginClient
from pq_quic_plugin.tunnel.origin.h2_request import JOIN_LIMIT
from pq_quic_plugin.tunnel.wire.frames import FrameType, StreamReset
from pq_quic_plugin.tunnel.wire.h2_channel import H2Channel

pytest_plugins = ["origin_fixtures"]  # the session-wide ``origins`` fixture

PIECE = 8 * 1024
PIECES = 96  # 768 KiB: three visitor writes' worth, within one stream window


async def _answer_in_small_frames(channel: H2Channel) -> None:
    """A connector that answers with many small DATA frames, all queued in one turn."""
    await channel.read_json(FrameType.HEADERS)
    await channel.send_json(FrameType.HEADERS, {"status": 200, "headers": []})
    for i in range(PIECES):
        await channel.send(FrameType.DATA, bytes([i]) * PIECE)
    await channel.end()


async def _answer_and_hang(channel: H2Channel) -> None:
    """A connector whose response starts and then stops moving (never ends)."""
    await channel.read_json(FrameType.HEADERS)
    await channel.send_json(FrameType.HEADERS, {"status": 200, "headers": []})
    await channel.send(FrameType.DATA, b"x" * PIECE)
    with contextlib.suppress(StreamReset):
        while await channel.read() is not None:
            pass


async def _get(p: Pair) -> H2Channel:
    """The edge's side of a GET whose response head has arrived (the body is the test's)."""
    channel = p.edge.open_channel()
    await channel.send_json(FrameType.HEADERS, {"method": "GET"}, end=True)
    await channel.read_json(FrameType.HEADERS)
    return channel


def test_the_edge_joins_frames_that_are_in_into_one_visitor_write(pki) -> None:
    async def main() -> None:
        async with pair(pki, _answer_in_small_frames) as p:
            channel = await _get(p)
            while channel.buffered < PIECES * PIECE:  # every frame is in
                await asyncio.sleep(0.01)
            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            assert await relay_response(channel, send, 30.0)
            bodies = [m["body"] for m in sent if m["more_body"]]
            assert b"".join(bodies) == b"".join(bytes([i]) * PIECE for i in range(PIECES))
            assert len(bodies) == (PIECES * PIECE) // VISITOR_WRITE  # 3, not 96
            assert all(len(b) <= VISITOR_WRITE for b in bodies)
            assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}

    run(main())


def _cancelling(task: asyncio.Task[Any] | None) -> int:
    """Cancellations requested and not handled (Python 3.11+; 0 where it is not counted)."""
    assert task is not None
    return int(getattr(task, "cancelling", lambda: 0)())


def test_an_idle_visitor_is_cut_off_in_the_requests_own_task(pki) -> None:
    async def main() -> None:
        async with pair(pki, _answer_and_hang) as p:
            channel = await _get(p)

            async def stuck(message: dict[str, Any]) -> None:
                await asyncio.Event().wait()  # a visitor that never reads

            tasks_before = len(asyncio.all_tasks())
            relaying = asyncio.ensure_future(relay_response(channel, stuck, 0.3))
            await asyncio.sleep(0.1)
            assert len(asyncio.all_tasks()) == tasks_before + 1  # no task of its own
            assert await asyncio.wait_for(relaying, 5) is False
            with pytest.raises(StreamReset):  # the stream was reset (after what was in)
                while await channel.read() is not None:
                    pass
            assert _cancelling(asyncio.current_task()) == 0

            async def in_place() -> tuple[bool, int]:
                done = await relay_response(p.edge.open_channel(), stuck, 0.2)
                await asyncio.sleep(0)  # still usable: no cancellation left pending
                return done, _cancelling(asyncio.current_task())

            assert await asyncio.wait_for(in_place(), 5) == (False, 0)

    run(main())


def test_the_connector_hands_out_an_h2_origins_frames_joined(origins: Origins) -> None:
    size = 4 << 20

    async def main() -> None:
        client = OriginClient(policy="require")
        try:
            response = await client.request(origins.request("h2", f"/bytes/{size}"))
            assert response.hop.http_version == "2"
            digest, sizes = hashlib.sha256(), []
            async for chunk in response.body:
                digest.update(chunk)
                sizes.append(len(chunk))
            assert sum(sizes) == size and digest.hexdigest() == expected_sha256(size)
            assert max(sizes) <= JOIN_LIMIT
            # HTTP/2's default frame is 16 KiB: larger chunks mean large frames, or joined ones.
            assert max(sizes) > 64 * 1024, sizes[:20]
        finally:
            await client.aclose()

    run(main())


def _scope(headers: list[tuple[bytes, bytes]], http_version: str = "1.1") -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": http_version,
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", b"example.test"), *headers],
        "server": ("127.0.0.1", 443),
    }


@pytest.mark.parametrize(
    ("headers", "version", "bodyless"),
    [
        ([], "1.1", True),
        ([], "1.0", True),
        ([(b"content-length", b"0")], "2", True),
        ([(b"content-length", b"5")], "1.1", False),
        ([(b"transfer-encoding", b"chunked")], "1.1", False),
        ([], "2", False),  # HTTP/2 and HTTP/3 may send a body without a length
        ([], "3", False),
    ],
)
def test_a_request_that_can_have_no_body_is_marked(
    headers: list[tuple[bytes, bytes]], version: str, bodyless: bool
) -> None:
    request = check_request(_scope(headers, version))
    assert isinstance(request, VisitorRequest)
    assert request.bodyless is bodyless


def test_the_profile_variable_names_the_file_by_role_and_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert profiling.profile_path("edge", {}) is None
    template = str(tmp_path / "{role}-{pid}.prof")
    monkeypatch.setenv(profiling.PROFILE_ENV, template)
    with profiling.profiled("connector"):
        sum(range(10000))
    written = tmp_path / f"connector-{os.getpid()}.prof"
    assert written.exists()
    assert pstats.Stats(str(written)).total_calls > 0
