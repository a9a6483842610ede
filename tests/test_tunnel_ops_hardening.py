"""Issue 14, "exposure": reports, operator endpoints and the store's file modes.

In-process with the real parts: the edge's public app (``EdgeApp``) called as ASGI, the edge's
operations server over real TCP on loopback, a real SQLite store on disk, and the connector's own
report signer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from asgi_util import call

from pq_quic_plugin.tunnel.config import ConnectorListenerConfig, EdgeConfig, PublicListenerConfig
from pq_quic_plugin.tunnel.connector.report import report_headers
from pq_quic_plugin.tunnel.credentials import Credentials
from pq_quic_plugin.tunnel.edge.app import EdgeApp
from pq_quic_plugin.tunnel.edge.live_file import LiveFile
from pq_quic_plugin.tunnel.edge.registry import Registry
from pq_quic_plugin.tunnel.edge.reports import MAX_REPORT, MAX_SKEW, PqReports
from pq_quic_plugin.tunnel.edge.server import Edge
from pq_quic_plugin.tunnel.edge.store import TunnelStore
from pq_quic_plugin.tunnel.hostnames import HostPort
from pq_quic_plugin.tunnel.ops.metrics import Metrics
from pq_quic_plugin.tunnel.ops.server import ACTION_HEADER, serve_edge_operations

REPORT = {"group": "X25519MLKEM768", "error": "handshake_failure", "conn_index": 0}


async def _call(
    app: Any,
    path: str,
    method: str = "GET",
    body: bytes = b"",
    client: str = "203.0.113.9",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"203.0.113.1:8443")]
        + [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 4000),
        "server": ("203.0.113.1", 8443),
        "scheme": "https",
        "http_version": "1.1",
    }
    done = await call(app, scope, body)
    return done.status, {k.decode(): v.decode() for k, v in done.start["headers"]}, done.body


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with TunnelStore(tmp_path / "tunnels.db") as s:
        yield s


def _credentials(store: TunnelStore) -> Credentials:
    record, secret = store.create("demo", ["app.example.com"])
    return Credentials(record.id, record.name, secret)


def _signed(creds: Credentials, report: dict | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(report or REPORT).encode()
    return body, report_headers(body, creds)


async def _post_signed(
    app: Any, creds: Credentials, client: str = "203.0.113.9"
) -> tuple[int, dict[str, str], bytes]:
    body, headers = _signed(creds)
    return await _call(app, "/pq-report", "POST", body, client, headers)


# ---------------------------------------------------------------------- the public listener


def test_the_public_listener_shows_no_operator_page(store: TunnelStore) -> None:
    """Reports, status and debug actions are not served to visitors (any host, any method)."""
    app = EdgeApp(store, Registry())
    store.add_report({"group": "X25519MLKEM768", "from": "10.0.0.1"})

    async def main() -> None:
        status, headers, body = await _call(app, "/pq-report")
        assert status == 405 and headers["allow"] == "POST"
        assert b"10.0.0.1" not in body
        for path in ("/status", "/status.json", "/debug/close-connection", "/metrics"):
            for method in ("GET", "POST"):
                status, _, body = await _call(app, path, method)
                assert status == 404, (path, method)

    asyncio.run(main())


def test_reports_need_the_tunnels_proof_or_loopback(store: TunnelStore) -> None:
    creds = _credentials(store)
    app = EdgeApp(store, Registry())
    wrong = Credentials(creds.tunnel_id, "demo", b"w" * 32)
    ghost = Credentials("00000000-0000-4000-8000-000000000001", "ghost", b"g" * 32)

    async def main() -> None:
        body = json.dumps(REPORT).encode()
        unsigned = await _call(app, "/pq-report", "POST", body)
        forged = await _post_signed(app, wrong, client="203.0.113.10")
        unknown = await _post_signed(app, ghost, client="203.0.113.11")
        assert unsigned[0] == forged[0] == unknown[0] == 403
        assert unsigned[2] == forged[2] == unknown[2]  # one answer whatever was wrong
        status, _, _ = await _post_signed(app, creds)
        assert status == 202
        for loopback in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            assert (await _call(app, "/pq-report", "POST", body, client=loopback))[0] == 202

    asyncio.run(main())
    (signed, *_rest) = store.reports()[::-1]
    assert signed["tunnel_id"] == creds.tunnel_id and signed["from"] == "203.0.113.9"
    assert len(store.reports()) == 4


def test_a_replayed_report_is_refused_after_the_allowed_skew(store: TunnelStore) -> None:
    creds = _credentials(store)
    body, headers = _signed(creds)
    now = int(headers["pq-report-time"])
    late = PqReports(store, clock=lambda: now + MAX_SKEW + 5)
    assert asyncio.run(_call(late, "/pq-report", "POST", body, headers=headers))[0] == 403
    fresh = PqReports(store, clock=lambda: now + 5)
    assert asyncio.run(_call(fresh, "/pq-report", "POST", body, headers=headers))[0] == 202


def test_reports_are_sized(store: TunnelStore) -> None:
    app = EdgeApp(store, Registry())
    big = json.dumps({"error": "x" * MAX_REPORT}).encode()

    async def main() -> None:
        assert (await _call(app, "/pq-report", "POST", big, client="127.0.0.1"))[0] == 413
        declared = {"content-length": str(10 * MAX_REPORT)}
        status, _, _ = await _call(app, "/pq-report", "POST", b"{}", "127.0.0.2", declared)
        assert status == 413

    asyncio.run(main())
    assert store.reports() == []


def test_reports_are_rate_limited_per_source_and_per_tunnel(store: TunnelStore, caplog) -> None:  # type: ignore[no-untyped-def]
    creds = _credentials(store)
    app = EdgeApp(store, Registry())

    async def main() -> list[int]:
        body = json.dumps(REPORT).encode()
        flood = [(await _call(app, "/pq-report", "POST", body, client="127.0.0.1"))[0]]
        for _ in range(149):
            flood.append((await _call(app, "/pq-report", "POST", body, client="127.0.0.1"))[0])
        # One tunnel's reports from many addresses: its own bucket runs out too.
        spread = []
        for i in range(40):
            status, headers, _ = await _post_signed(app, creds, client=f"198.51.100.{i}")
            spread.append(status)
        assert "retry-after" in headers
        return flood + spread

    with caplog.at_level(logging.INFO, logger="pq_quic_plugin.tunnel.edge"):
        statuses = asyncio.run(main())
    flood, spread = statuses[:150], statuses[150:]
    assert flood.count(202) <= 6 and flood.count(429) >= 144
    assert 10 <= spread.count(202) <= 21 and spread.count(429) >= 19
    assert len(store.reports()) <= 30
    logged = sum(len(r.getMessage()) for r in caplog.records)
    assert logged < 20_000, logged  # the flood was not logged report by report


@pytest.mark.parametrize(
    "body",
    [b'{"group": NaN}', b'{"error": Infinity}', b'{"n": -Infinity}', b'{"n": 1e999}', b"[1]"],
)
def test_a_report_with_a_non_finite_number_is_refused(store: TunnelStore, body: bytes) -> None:
    app = EdgeApp(store, Registry())
    assert asyncio.run(_call(app, "/pq-report", "POST", body, client="127.0.0.1"))[0] == 400
    assert store.reports() == []


def test_reports_survive_an_edge_restart(tmp_path: Path) -> None:
    with TunnelStore(tmp_path / "tunnels.db") as first:
        body = json.dumps(REPORT).encode()
        app = EdgeApp(first, Registry())
        assert asyncio.run(_call(app, "/pq-report", "POST", body, client="127.0.0.1"))[0] == 202
    with TunnelStore(tmp_path / "tunnels.db") as second:
        (kept,) = EdgeApp(second, Registry()).reports.latest(10)
        assert kept["group"] == "X25519MLKEM768" and kept["from"] == "127.0.0.1"


# ---------------------------------------------------------------------- the operations address


def _edge(tmp_path: Path) -> Edge:
    cert = tmp_path / "unused.pem"
    return Edge(
        EdgeConfig(
            public=PublicListenerConfig(HostPort("127.0.0.1", 0), cert, cert),
            connectors=ConnectorListenerConfig(HostPort("127.0.0.1", 0), cert, cert),
            store=tmp_path / "tunnels.db",
            edge_id="edge-1",
            location="test",
        ),
        observer=Metrics("edge"),
    )


def _http(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_operator_pages_and_actions_on_the_ops_address(tmp_path: Path) -> None:
    edge = _edge(tmp_path)
    metrics = Metrics("edge")
    edge.store.add_report({"group": "X25519MLKEM768", "error": "boom"})

    async def main() -> None:
        ops = await serve_edge_operations(edge, metrics, HostPort("127.0.0.1", 0))
        base = f"http://127.0.0.1:{ops.port}"
        try:
            loop = asyncio.get_running_loop()

            def call(*args: Any) -> tuple[int, bytes]:
                return _http(*args)

            status, body = await loop.run_in_executor(None, call, f"{base}/pq-report")
            assert status == 200 and json.loads(body)[0]["error"] == "boom"
            status, body = await loop.run_in_executor(None, call, f"{base}/status.json")
            assert status == 200 and json.loads(body)["pq_reports"][0]["error"] == "boom"
            action = f"{base}/debug/close-connection?conn_index=0"
            forged = [
                {},  # a plain form post from a page carries no custom header
                {ACTION_HEADER: "1", "Sec-Fetch-Site": "cross-site"},
                {ACTION_HEADER: "1", "Origin": "https://evil.example"},
            ]
            for headers in forged:
                status, body = await loop.run_in_executor(None, call, action, "POST", headers)
                assert status == 403, (headers, body)
            status, body = await loop.run_in_executor(
                None, call, action, "POST", {ACTION_HEADER: "1"}
            )
            assert status == 404 and b"no live connection" in body  # allowed, nothing to close
        finally:
            await ops.stop()

    asyncio.run(main())
    edge.store.close()


def test_status_json_stays_json_whatever_a_report_held(tmp_path: Path) -> None:
    """Reports are refused with NaN on input; should a non-finite value reach the output
    anyway, the page answers an error instead of writing invalid JSON."""
    edge = _edge(tmp_path)
    with pytest.raises(ValueError):
        edge.store.add_report({"x": float("nan")})
    edge.store.close()


# ---------------------------------------------------------------------- the store's modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_world_readable_store_is_made_private_with_a_warning(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "tunnels.db"
    with TunnelStore(db) as s:
        s.create("demo", ["app.example.com"])
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING), TunnelStore(db) as s:
        assert s.get("demo") is not None
    assert _mode(db) == 0o600
    assert any("readable by other users (mode 0644)" in r.getMessage() for r in caplog.records)
    for suffix in ("-wal", "-shm"):
        extra = Path(f"{db}{suffix}")
        if extra.exists():
            assert _mode(extra) == 0o600


def test_under_umask_000_the_store_directory_is_0700_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        db = tmp_path / "new" / "deeper" / "tunnels.db"
        with TunnelStore(db) as s:
            record, _ = s.create("demo", ["app.example.com"])
            live = LiveFile(db, Registry())
            live.write()
        assert _mode(db.parent) == 0o700 and _mode(db.parent.parent) == 0o700
        assert _mode(db) == 0o600
        assert _mode(live.path) == 0o600
        assert record.id
    finally:
        os.umask(old)
