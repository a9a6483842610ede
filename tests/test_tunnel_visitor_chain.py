"""What one visitor can make the edge do, through a real chain (origin, edge, connector as
processes on loopback; issue 14, part B). Requests are written by hand (visitor_util) because
the point is bytes that polite clients never send.

The edge runs with small limits (``max-requests-per-visitor: 4``, ``body-idle-timeout: 1s``) so
the limits show in seconds; the connector's ingress has a deny rule for ``^/pid``, a service on
a port where nothing listens (``^/dead``), and the example app for the rest.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tunnel_chain import TUNNEL_HOST, origin_rule, running_chain
from visitor_util import exchange, open_visitor, read_status, request_bytes, tls_context

from pq_quic_plugin.tunnel.edge.limits import QUEUE_FACTOR
from tools.loopback import free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PER_VISITOR = 4  # with QUEUE_FACTOR waiting per slot: 69 streams, under HTTP/2's 100
IDLE = 1.0


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    limits = {"max-requests-per-visitor": PER_VISITOR, "body-idle-timeout": f"{IDLE:g}s"}
    with running_chain(
        tmp_path_factory.mktemp("visitors"), connector=False, edge_public=limits
    ) as c:
        dead = c.dead_port = free_port()  # type: ignore[attr-defined]
        origin = origin_rule(c.origin_port, c.pki.ca_cert, TUNNEL_HOST)
        config = c.connector_config(
            ingress=[
                {"hostname": TUNNEL_HOST, "path": "^/pid", "service": "http_status:403"},
                {
                    "hostname": TUNNEL_HOST,
                    "path": "^/dead",
                    "service": f"http://127.0.0.1:{dead}",
                },
                origin,
                {"service": "http_status:404"},
            ]
        )
        c.connector = c.start_connector(config=config)
        yield c


def _get(chain: Any, path: str, headers: list[tuple[str, str]] = (), **kw: Any) -> Any:  # type: ignore[assignment]
    raw = request_bytes("GET", path, [*headers, ("Connection", "close")])
    return exchange(chain.public_port, chain.pki.ca_cert, raw, **kw)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------ finding 1


def test_huge_host_over_http2_is_refused_at_once(chain: Any) -> None:
    """A 30 KB :authority was split into 15,000 wildcard candidates of up to 30 KB each:
    seconds of a blocked event loop and hundreds of MB that were never given back."""
    huge = "a." * 15_000 + "localhost"
    before = _rss_mb(chain.edge.proc.pid)
    with httpx.Client(http2=True, verify=tls_context(chain.pki.ca_cert), timeout=30) as client:
        started = time.monotonic()
        response = client.get(f"https://127.0.0.1:{chain.public_port}/", headers={"host": huge})
        elapsed = time.monotonic() - started
        assert response.http_version == "HTTP/2"
        assert response.status_code == 400, response.text[:200]
        assert elapsed < 1.5, f"refusing the Host took {elapsed:.1f}s"
        ok = client.get(
            f"https://127.0.0.1:{chain.public_port}/api/connection", headers={"host": TUNNEL_HOST}
        )
        assert ok.status_code == 200
    grown = _rss_mb(chain.edge.proc.pid) - before
    assert grown < 50, f"the edge grew by {grown:.0f} MB"


# ------------------------------------------------------------------ finding 2


def test_transfer_encoding_with_content_length_is_refused(chain: Any) -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    raw = request_bytes(
        "POST",
        "/echo",
        [("Transfer-Encoding", "chunked"), ("Content-Length", "3"), ("Connection", "close")],
        body,
    )
    reply = exchange(chain.public_port, chain.pki.ca_cert, raw)
    assert reply.status == 400, (reply.status, reply.body)
    assert b"Transfer-Encoding" in reply.body
    # The same body chunked alone is fine, and echoed whole.
    raw = request_bytes(
        "POST", "/echo", [("Transfer-Encoding", "chunked"), ("Connection", "close")], body
    )
    reply = exchange(chain.public_port, chain.pki.ca_cert, raw)
    assert (reply.status, reply.body) == (200, b"hello")


# ------------------------------------------------------------------ finding 4


def test_error_page_names_no_internal_address(chain: Any) -> None:
    reply = _get(chain, "/dead")
    text = reply.body.decode()
    assert reply.status == 502
    assert "127.0.0.1" not in text and "http://" not in text, text
    match = re.search(r"request id ([0-9a-f]+)", text)
    assert match, text
    chain.edge.wait_for_log(match.group(1), timeout=10)  # the edge's log has the id ...
    # ... and the connector's log the address the visitor did not see.
    chain.connector.wait_for_log(f"127.0.0.1:{chain.dead_port}", timeout=10)


# ------------------------------------------------------------------ finding 5


def test_origin_alt_svc_date_and_server_stay_behind(chain: Any) -> None:
    reply = _get(chain, "/headers")
    assert reply.status == 200
    assert len(reply.header("date")) == 1
    assert len(reply.header("server")) <= 1
    ports = {int(p) for v in reply.header("alt-svc") for p in re.findall(r':(\d+)"', v)}
    assert ports <= {chain.public_port}, reply.header("alt-svc")


# ------------------------------------------------------------------ finding 6


@pytest.mark.parametrize("path", ["/pid", "/%70id", "/%70%69%64", "//pid", "/./pid", "/x/../pid"])
def test_every_spelling_of_a_denied_path_is_denied(chain: Any, path: str) -> None:
    assert _get(chain, path).status == 403


def test_normalised_path_reaches_the_origin_and_encoded_slash_is_refused(chain: Any) -> None:
    assert _get(chain, "//api/./x/../connection").status == 200
    assert _get(chain, "/api%2Fconnection").status == 400


# ------------------------------------------------------------------ finding 7


def test_visitor_forwarding_headers_are_replaced_or_dropped(chain: Any) -> None:
    import json

    reply = _get(
        chain,
        "/headers",
        [
            ("X-Forwarded-Port", "1"),
            ("X-Forwarded-Prefix", "/admin"),
            ("Forwarded", "for=6.6.6.6;proto=http"),
            ("X-Real-IP", "6.6.6.6"),
            ("X-Secret", "1"),
            ("Connection", "X-Secret"),
        ],
        source="127.0.0.9",
    )
    seen = json.loads(reply.body)
    assert "x-forwarded-prefix" not in seen and "x-real-ip" not in seen
    assert "x-secret" not in seen
    assert seen["x-forwarded-port"] == str(chain.public_port)
    assert seen["x-forwarded-for"] == "127.0.0.9"
    assert seen["forwarded"] == f'for=127.0.0.9;host="{TUNNEL_HOST}";proto=https'


# ------------------------------------------------------------------ finding 3


def test_one_visitor_gets_its_share_and_no_more(chain: Any) -> None:
    """Over its share, a visitor's requests wait for its own to finish (holding no tunnel
    stream); past QUEUE_FACTOR times its share they get 429 at once. Another visitor is served
    at once throughout."""
    base = f"https://127.0.0.1:{chain.public_port}"
    host = {"host": TUNNEL_HOST}

    def client(source: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(
            http2=True, verify=tls_context(chain.pki.ca_cert), local_address=source
        )
        return httpx.AsyncClient(transport=transport, timeout=30)

    async def scenario() -> tuple[list[int], list[tuple[int, float]], int, float, int]:
        async with client("127.0.0.3") as mine, client("127.0.0.4") as other:
            slow = [
                asyncio.ensure_future(mine.get(base + "/slow?seconds=4", headers=host))
                for _ in range(PER_VISITOR)
            ]
            await asyncio.sleep(1.0)
            started = time.monotonic()

            async def queued() -> tuple[int, float]:
                response = await mine.get(base + "/api/connection", headers=host)
                return response.status_code, time.monotonic() - started

            waiting = [asyncio.ensure_future(queued()) for _ in range(QUEUE_FACTOR * PER_VISITOR)]
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            extra = (await mine.get(base + "/api/connection", headers=host)).status_code
            extra_time = time.monotonic() - t0
            others = (await other.get(base + "/api/connection", headers=host)).status_code
            slow_statuses = [r.status_code for r in await asyncio.gather(*slow)]
            return slow_statuses, await asyncio.gather(*waiting), extra, extra_time, others

    slow, waited, extra, extra_time, others = asyncio.run(scenario())
    assert slow == [200] * PER_VISITOR
    assert extra == 429  # refused, where a queued one would have waited and got 200
    assert others == 200
    assert [status for status, _ in waited] == [200] * (QUEUE_FACTOR * PER_VISITOR)
    assert min(seconds for _, seconds in waited) > 1.5  # they waited for the slow ones


def test_a_visitor_that_stops_reading_loses_its_stream(chain: Any) -> None:
    """A download nobody reads is cancelled once it has been idle for body-idle-timeout, and its
    share is free again: the visitor can open PER_VISITOR new requests at once."""
    size = 200 << 20

    async def scenario() -> tuple[int, int, list[int]]:
        stuck = [
            await open_visitor(chain.public_port, chain.pki.ca_cert, "127.0.0.5")
            for _ in range(PER_VISITOR)
        ]
        for _, writer in stuck:
            writer.write(request_bytes("GET", f"/bytes/{size}"))
        await asyncio.sleep(IDLE + 4)  # buffers fill, the bodies stall, the timer fires
        reader, writer = stuck[0]
        got = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 20):
            got += len(chunk)
        fresh = []
        for _ in range(PER_VISITOR):
            fresh.append(
                await asyncio.to_thread(_get, chain, "/api/connection", source="127.0.0.5")
            )
        for _, w in stuck:
            w.close()
        return got, size, [r.status for r in fresh]

    got, size, fresh = asyncio.run(scenario())
    assert got < size  # the connection was cut, not the body completed late
    assert fresh == [200] * PER_VISITOR


def test_a_stalled_upload_gets_408_and_frees_its_stream(chain: Any) -> None:
    async def scenario() -> tuple[int, float]:
        reader, writer = await open_visitor(chain.public_port, chain.pki.ca_cert, "127.0.0.6")
        writer.write(request_bytes("POST", "/sha256", [("Content-Length", "1000")], b"x" * 10))
        started = time.monotonic()
        status = await asyncio.wait_for(read_status(reader), 15)
        writer.close()
        return status, time.monotonic() - started

    status, elapsed = asyncio.run(scenario())
    assert status == 408 and elapsed < IDLE + 5
