"""The edge and operations parts in one process, no network peers: the observer seam, the
Prometheus metrics, the operations server, the live-connection file, the status page and the
edge's ASGI app for hosts without a live tunnel. Fast; the chains in test_tunnel_operations.py
and test_tunnel_e2e.py cover the same parts with real processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from asgi_util import call
from prometheus_client.parser import text_string_to_metric_families

from pq_quic_plugin.tunnel.config import (
    ConnectorListenerConfig,
    EdgeConfig,
    PublicListenerConfig,
)
from pq_quic_plugin.tunnel.edge.app import EdgeApp
from pq_quic_plugin.tunnel.edge.live_file import LiveFile, read_live_connections
from pq_quic_plugin.tunnel.edge.registry import LiveConnection, Registry
from pq_quic_plugin.tunnel.edge.server import Edge
from pq_quic_plugin.tunnel.edge.store import TunnelStore
from pq_quic_plugin.tunnel.hostnames import HostPort, request_host
from pq_quic_plugin.tunnel.observer import NO_OBSERVER, Observer, Observers
from pq_quic_plugin.tunnel.ops.metrics import Metrics
from pq_quic_plugin.tunnel.ops.server import OpsResponse, OpsServer
from pq_quic_plugin.tunnel.ops.status import render_status, status_data
from pq_quic_plugin.tunnel.wire import TunnelConnection


def _samples(metrics: Metrics, connections: int = 0) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render(connections).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _live(tunnel_id: str, index: int = 0) -> LiveConnection:
    async def connect() -> TunnelConnection:  # a protocol object wants a running loop
        return TunnelConnection(QuicConnection(configuration=QuicConfiguration(is_client=True)))

    connection = asyncio.run(connect())
    return LiveConnection(
        tunnel_id=tunnel_id,
        tunnel_name="demo",
        connector_id="c-1",
        conn_index=index,
        connection=connection,
        group="X25519MLKEM768",
        post_quantum=True,
        remote="127.0.0.1:5000",
    )


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def request_done(self, tunnel_id: str, status: int, seconds: float) -> None:
        self.calls.append(("request_done", (tunnel_id, status)))

    def connector_refused(self, remote: str, reason: str) -> None:
        self.calls.append(("refused", remote))


# ---------------------------------------------------------------------------------- observer


def test_observers_fan_out_in_order_and_skip_the_no_op() -> None:
    a, b = Recorder(), Recorder()
    both = Observers(a, NO_OBSERVER, b)
    assert both.observers == (a, b)
    both.request_started()  # not overridden by Recorder: the base no-op
    both.request_done("t", 200, 0.1)
    both.connector_refused("1.2.3.4:5", "wrong secret")
    assert a.calls == b.calls == [("request_done", ("t", 200)), ("refused", "1.2.3.4:5")]


@pytest.mark.parametrize("role", ["connector", "edge"])
def test_metrics_names_and_what_moves_them(role: str) -> None:
    m = Metrics(role)  # type: ignore[arg-type]
    p = f"pq_tunnel_{role}"
    m.handshake("X25519MLKEM768", True, 0.02)
    m.handshake(None, False, 1.0)
    m.reconnect()
    m.request_started()
    m.request_started()
    m.request_done("t1", 200, 0.01)
    m.relayed("from_origin", 1000)
    m.relayed("to_origin", 10)
    s = _samples(m, connections=3)
    assert s[(f"{p}_ha_connections", ())] == 3
    assert s[(f"{p}_handshakes_total", (("group", "X25519MLKEM768"), ("result", "ok")))] == 1
    assert s[(f"{p}_handshakes_total", (("group", "none"), ("result", "failed")))] == 1
    assert s[(f"{p}_connect_duration_seconds_count", ())] == 1
    # Only the connector reconnects; the edge has no such counter (issue 15).
    assert s.get((f"{p}_reconnects_total", ())) == (1 if role == "connector" else None)
    assert s[(f"{p}_concurrent_requests", ())] == 1
    assert s[(f"{p}_requests_total", (("status", "200"),))] == 1
    assert s[(f"{p}_request_duration_seconds_count", ())] == 1
    assert s[(f"{p}_bytes_total", (("direction", "from_origin"),))] == 1000
    assert s[(f"{p}_bytes_total", (("direction", "to_origin"),))] == 10
    m.request_done("t1", 502, 0.01)
    s = _samples(m)
    assert s[(f"{p}_request_errors_total", ())] == 1
    assert s[(f"{p}_concurrent_requests", ())] == 0
    assert m.recent.rate("t1", window=60) == pytest.approx(2 / 60)
    assert m.recent.rate("other") == 0


def test_edge_metrics_count_registrations_and_refusals() -> None:
    m = Metrics("edge")
    # The listener reports a registered connection's handshake (with its time from the first
    # datagram), then the registration itself.
    m.handshake("X25519MLKEM768", True, 0.05)
    m.connector_registered(_live("t1"))
    m.connector_refused("127.0.0.1:9", "unknown tunnel")
    s = _samples(m)
    ok = ("pq_tunnel_edge_handshakes_total", (("group", "X25519MLKEM768"), ("result", "ok")))
    refused = ("pq_tunnel_edge_handshakes_total", (("group", "none"), ("result", "refused")))
    assert s[ok] == 1 and s[refused] == 1
    assert s[("pq_tunnel_edge_connect_duration_seconds_count", ())] == 1


# ---------------------------------------------------------------------------------- ops server


async def _get(port: int, method: str, target: str, extra: str = "") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_ops_server_routes_actions_and_bind_errors() -> None:
    closed: list[dict[str, str]] = []

    def close(query: Any) -> OpsResponse:
        closed.append(dict(query))
        return OpsResponse(200, "text/plain", b"closed\n")

    async def main() -> None:
        server = OpsServer(
            HostPort("127.0.0.1", 0),
            {"/healthcheck": lambda q: OpsResponse(200, "text/plain", b"OK\n")},
            actions={"/debug/close": close},
        )
        await server.start()
        try:
            assert server.port != 0
            assert await _get(server.port, "GET", "/healthcheck") == (200, b"OK\n")
            assert (await _get(server.port, "GET", "/nope"))[0] == 404
            assert (await _get(server.port, "GET", "/debug/close?a=1"))[0] == 405
            assert (await _get(server.port, "POST", "/debug/close?a=1"))[0] == 403  # no header
            action = "pq-tunnel-action: 1\r\n"
            assert await _get(server.port, "POST", "/debug/close?a=1&b=2", action) == (
                200,
                b"closed\n",
            )
            assert closed == [{"a": "1", "b": "2"}]
            taken = OpsServer(HostPort("127.0.0.1", server.port), {})
            with pytest.raises(OSError):
                await taken.start()
        finally:
            await server.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------------------- edge


def _edge_config(tmp_path: Path) -> EdgeConfig:
    cert = tmp_path / "unused.pem"
    return EdgeConfig(
        public=PublicListenerConfig(HostPort("127.0.0.1", 0), cert, cert),
        connectors=ConnectorListenerConfig(HostPort("127.0.0.1", 0), cert, cert),
        store=tmp_path / "tunnels.db",
        edge_id="edge-<1>",
        location="test",
    )


def test_live_file_written_on_registration_and_read_by_list(tmp_path: Path) -> None:
    registry = Registry()
    live_file = LiveFile(tmp_path / "tunnels.db", registry)
    assert read_live_connections(tmp_path / "tunnels.db") == {}
    live = _live("t1", index=1)
    registry.add(live)
    live_file.connector_registered(live)
    seen = read_live_connections(tmp_path / "tunnels.db")
    assert [c["conn_index"] for c in seen["t1"]] == [1]
    registry.remove(live)
    live_file.connector_unregistered(live)
    assert read_live_connections(tmp_path / "tunnels.db") == {}
    live_file.clear()
    assert not live_file.path.exists()


def test_status_page_lists_tunnels_connections_and_escapes(tmp_path: Path) -> None:
    metrics = Metrics("edge")
    edge = Edge(_edge_config(tmp_path), observer=metrics)
    record, _ = edge.store.create("demo", ["app.example.com"])
    edge.registry.add(_live(record.id))
    metrics.request_done(record.id, 200, 0.01)
    data = status_data(edge, metrics)
    assert data["edge_id"] == "edge-<1>"
    (tunnel,) = data["tunnels"]
    assert tunnel["name"] == "demo" and tunnel["hostnames"] == ["app.example.com"]
    assert tunnel["connections"][0]["group"] == "X25519MLKEM768"
    assert tunnel["requests_per_minute"] == pytest.approx(1.0)
    page = render_status(data)
    assert "edge-&lt;1&gt;" in page and "post-quantum" in page and "<script" not in page
    json.dumps(data)  # /status.json
    edge.store.close()


async def _asgi(app: EdgeApp, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    return (await call(app, scope, body)).sent


def _scope(host: str, path: str = "/", method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "client": ("203.0.113.9", 4000),
        "server": ("127.0.0.1", 8443),
        "scheme": "https",
        "http_version": "1.1",
    }


def test_edge_app_routes_by_normalised_host_and_serves_reports(tmp_path: Path) -> None:
    store = TunnelStore(tmp_path / "tunnels.db")
    store.create("demo", ["app.example.com"])
    recorder = Recorder()
    app = EdgeApp(store, Registry(), recorder)

    async def main() -> None:
        # The tunnel's host in another spelling finds it; it has no live connection.
        sent = await _asgi(app, _scope("App.Example.COM.:8443"))
        assert sent[0]["status"] == 502 and b"no live connection" in sent[1]["body"]
        sent = await _asgi(app, _scope("other.example.com"))
        assert sent[0]["status"] == 404 and b"other.example.com" in sent[1]["body"]
        sent = await _asgi(app, _scope("127.0.0.1:8443", "/status"))
        assert sent[0]["status"] == 404  # the status page is on the metrics address only
        report = json.dumps({"group": "X25519MLKEM768", "error": "x" * 1000}).encode()
        sent = await _asgi(app, _scope("127.0.0.1", "/pq-report", "POST"), report)
        assert sent[0]["status"] == 403  # unsigned, not from loopback (test_tunnel_ops_hardening)
        loopback = {**_scope("127.0.0.1", "/pq-report", "POST"), "client": ("127.0.0.1", 1)}
        sent = await _asgi(app, loopback, report)
        assert sent[0]["status"] == 202
        sent = await _asgi(app, _scope("127.0.0.1", "/pq-report"))
        assert sent[0]["status"] == 405  # read on the metrics address only
        (got,) = app.reports.latest(5)
        assert got["group"] == "X25519MLKEM768" and len(got["error"]) == 500
        assert got["from"] == "127.0.0.1"

    asyncio.run(main())
    assert recorder.calls == []  # no request reached a tunnel
    store.close()


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("Example.COM", "example.com"),
        ("example.com.:443", "example.com"),
        ("[::1]:8443", "::1"),
        ("127.0.0.1:80", "127.0.0.1"),
        (" a.example.com ", "a.example.com"),
    ],
)
def test_request_host(value: str, host: str) -> None:
    assert request_host(value) == host
