"""The edge's visitor-facing rules, in process: host and path normalisation, request framing,
forwarding headers, limits and the idle timer (issue 14, part B). The chain tests in
test_tunnel_visitor_chain.py drive the same rules through real processes.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pq_quic_plugin.tunnel.config.ingress import IngressRule, parse_service
from pq_quic_plugin.tunnel.edge.app import EdgeApp
from pq_quic_plugin.tunnel.edge.idle import IdleTimer
from pq_quic_plugin.tunnel.edge.limits import (
    MAX_HEADER_BYTES,
    QUEUE_FACTOR,
    InFlight,
    Limits,
    Refusal,
    visitor_key,
)
from pq_quic_plugin.tunnel.edge.registry import Registry
from pq_quic_plugin.tunnel.edge.store import TunnelStore
from pq_quic_plugin.tunnel.edge.visitor_request import VisitorRequest, check_request
from pq_quic_plugin.tunnel.headers import (
    EDGE_REPLACES,
    ORIGIN_ONLY,
    forwardable,
    forwarding_headers,
)
from pq_quic_plugin.tunnel.hostnames import hostname_matches, request_host
from pq_quic_plugin.tunnel.paths import normalize_path

HUGE_HOST = "a." * 20_000 + "example.com"  # 40 KB, 20,002 labels


# ------------------------------------------------------------------ finding 1: huge Host


@pytest.mark.parametrize(
    "value",
    [
        HUGE_HOST,
        "a" * 64 + ".example.com",  # a label over 63
        ("abcdefghi." * 26) + "com",  # 263 characters
        "a..example.com",
        "exa mple.com",
        "example.com\n.evil",
        "-bad.example.com",
        "example.com:80x",
        "[::1",
        "[not-v6]:443",
        "é.example.com",
    ],
)
def test_an_invalid_host_names_no_host(value: str) -> None:
    assert request_host(value) == ""
    assert not hostname_matches("*.example.com", value)


def test_valid_hosts_still_normalise() -> None:
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert request_host(longest + ".:8443") == longest
    assert request_host("[2001:DB8::1]:443") == "2001:db8::1"
    assert request_host("App.Example.COM.") == "app.example.com"


def test_tunnel_lookup_of_a_huge_host_is_fast_and_small(tmp_path: Path) -> None:
    """Was one wildcard candidate per label, each as long as the rest of the name: 5 s and
    700 MB for a 40 KB Host. Now a name over 253 characters is refused before it is split."""
    store = TunnelStore(tmp_path / "tunnels.db")
    store.create("demo", ["*.example.com"])
    try:
        tracemalloc.start()
        started = time.perf_counter()
        found = store.by_hostname(HUGE_HOST)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert found is None
        assert elapsed < 0.5, f"lookup took {elapsed:.2f}s"
        assert peak < 2 << 20, f"lookup allocated {peak >> 20} MB"
        assert store.by_hostname("a.b.example.com") is not None  # wildcards still work
    finally:
        store.close()


# ------------------------------------------------------------------ request checks


def _scope(headers: list[tuple[bytes, bytes]], path: bytes = b"/", **extra: Any) -> dict:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.9", 4000),
        "server": ("127.0.0.1", 8443),
        "scheme": "https",
        "http_version": "1.1",
    }
    scope.update(extra)
    return scope


HOST = (b"host", b"app.example.com")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([HOST, (b"transfer-encoding", b"chunked"), (b"content-length", b"5")], 400),
        ([HOST, (b"content-length", b"5"), (b"transfer-encoding", b"CHUNKED")], 400),
        ([HOST, (b"content-length", b"5"), (b"content-length", b"6")], 400),
        ([HOST, (b"content-length", b"5, 6")], 400),
        ([HOST, (b"content-length", b"-5")], 400),
        ([HOST, (b"transfer-encoding", b"gzip, chunked")], 400),
        ([(b"host", HUGE_HOST.encode()[:20_000])], 400),
        ([HOST] + [(b"x-h%d" % i, b"v") for i in range(200)], 431),
        ([HOST, (b"cookie", b"c" * MAX_HEADER_BYTES)], 431),
    ],
)
def test_requests_the_edge_refuses(headers: list[tuple[bytes, bytes]], status: int) -> None:
    refusal = check_request(_scope(headers))
    assert isinstance(refusal, Refusal) and refusal.status == status


def test_accepted_request_carries_normalised_host_path_and_length() -> None:
    got = check_request(
        _scope(
            [(b"host", b"App.Example.com:443"), (b"content-length", b"5, 5")],
            b"/a/./b//%7Ec/../d",
            query_string=b"x=%2F",
        )
    )
    assert got == VisitorRequest("app.example.com", "/a/b/d?x=%2F", 5)


# ------------------------------------------------------------------ finding 6: paths


@pytest.mark.parametrize(
    "raw",
    ["/headers", "/%68eaders", "/%68%65aders", "//headers", "/./headers", "/x/../headers"],
)
def test_every_spelling_of_a_path_meets_the_rule(raw: str) -> None:
    deny = IngressRule(parse_service("http_status:403"), path="^/headers")
    assert normalize_path(raw) == "/headers"
    assert deny.matches("app.example.com", normalize_path(raw))


@pytest.mark.parametrize("raw", ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a\\b", "/%00", "/%g0", "*"])
def test_ambiguous_paths_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_path(raw)


def test_path_normalisation_keeps_reserved_escapes_and_is_idempotent() -> None:
    once = normalize_path("/a/%3a%20b/../c/")
    assert once == "/a/c/"
    assert normalize_path("/q%3fx") == "/q%3Fx"
    assert normalize_path(normalize_path("/%2e%2e/%2E/x//y")) == "/x/y"


# ------------------------------------------------------------------ findings 5 and 7: headers


def test_visitor_forwarding_headers_never_pass() -> None:
    visitor = [
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Prefix", "/admin"),
        ("Forwarded", "for=6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("Connection", "keep-alive, X-Secret"),
        ("X-Secret", "1"),
        ("Accept", "*/*"),
    ]
    assert forwardable(visitor, drop=EDGE_REPLACES) == [("Accept", "*/*")]


def test_edge_forwarding_headers_agree() -> None:
    v4 = dict(forwarding_headers("203.0.113.9", "app.example.com", "https", 8443))
    assert v4["x-forwarded-for"] == "203.0.113.9" and v4["x-forwarded-port"] == "8443"
    assert v4["forwarded"] == 'for=203.0.113.9;host="app.example.com";proto=https'
    v6 = dict(forwarding_headers("2001:db8::1", "::1", "http", None))
    assert v6["forwarded"] == 'for="[2001:db8::1]";host="[::1]";proto=http'
    assert v6["x-forwarded-host"] == "[::1]" and "x-forwarded-port" not in v6
    assert set(v4) <= EDGE_REPLACES  # whatever the edge writes, a visitor cannot


def test_origin_alt_svc_date_and_server_stay_behind() -> None:
    origin = [
        ("alt-svc", 'h3=":50497"; ma=3600'),
        ("Date", "x"),
        ("server", "hypercorn-h2"),
        ("content-type", "text/plain"),
    ]
    assert forwardable(origin, drop=ORIGIN_ONLY) == [("content-type", "text/plain")]


# ------------------------------------------------------------------ finding 3: limits


def test_visitor_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert visitor_key(("2001:db8:1:2:3::9", 1)) == visitor_key(("2001:db8:1:2:ffff::1", 2))
    assert visitor_key(("2001:db8:1:3::1", 1)) != visitor_key(("2001:db8:1:2::1", 1))
    assert visitor_key(("::ffff:192.0.2.7", 1)) == visitor_key(("192.0.2.7", 9)) == "192.0.2.7"


def test_in_flight_limits_per_visitor_and_per_tunnel() -> None:
    async def main() -> None:
        flight = InFlight(Limits(per_visitor=2, per_tunnel=3))
        async with flight.slot("a", "t") as r1, flight.slot("a", "t") as r2:
            assert (r1, r2) == (None, None)
            async with flight.slot("b", "t") as r4, flight.slot("c", "t") as r5:
                assert r4 is None
                assert r5 is not None and r5.status == 503
            # Over its share, "a" waits for one of its own requests (holding nothing) ...
            third = asyncio.ensure_future(_hold(flight, "a", "t"))
            queue = QUEUE_FACTOR * 2  # what may wait: QUEUE_FACTOR times the share of 2
            queued = [asyncio.ensure_future(_hold(flight, "a", "t")) for _ in range(queue - 1)]
            await asyncio.sleep(0.05)
            assert flight.waiting("a") == queue
            # ... and what is over QUEUE_FACTOR times its share is refused at once.
            async with flight.slot("a", "t") as r3:
                assert r3 is not None and r3.status == 429
        assert await third is None  # served once "a" had a free slot
        assert await asyncio.gather(*queued) == [None] * (queue - 1)
        assert flight.visitor("a") == flight.tunnel("t") == flight.waiting("a") == 0

    asyncio.run(main())


async def _hold(flight: InFlight, visitor: str, tunnel: str) -> Refusal | None:
    async with flight.slot(visitor, tunnel) as refusal:
        await asyncio.sleep(0.01)
        return refusal


def test_idle_timer_fires_only_without_progress() -> None:
    async def main() -> tuple[bool, bool]:
        fired: list[str] = []
        busy = IdleTimer(0.2, lambda: fired.append("busy"))
        idle = IdleTimer(0.2, lambda: fired.append("idle"))
        for _ in range(6):
            await asyncio.sleep(0.1)
            busy.progress()
        busy.stop()
        await asyncio.sleep(0.1)
        assert fired == ["idle"]
        return busy.fired, idle.fired

    assert asyncio.run(main()) == (False, True)


# ------------------------------------------------------------------ the app, in process


async def _call(app: EdgeApp, scope: dict) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"hello", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_edge_app_refuses_before_routing(tmp_path: Path) -> None:
    store = TunnelStore(tmp_path / "tunnels.db")
    store.create("demo", ["app.example.com"])
    app = EdgeApp(store, Registry())
    try:
        te_cl = _scope([HOST, (b"transfer-encoding", b"chunked"), (b"content-length", b"5")])
        sent = asyncio.run(_call(app, te_cl))
        assert sent[0]["status"] == 400
        sent = asyncio.run(_call(app, _scope([(b"host", HUGE_HOST.encode())])))
        assert sent[0]["status"] == 431  # 40 KB of headers: refused before the host is read
        sent = asyncio.run(_call(app, _scope([HOST], b"/a%2Fb")))
        assert sent[0]["status"] == 400
        sent = asyncio.run(_call(app, _scope([HOST])))
        body = sent[1]["body"].decode()
        assert sent[0]["status"] == 502 and "demo" not in body and "request id" in body
        assert (b"retry-after", b"1") not in sent[0]["headers"]
    finally:
        store.close()
