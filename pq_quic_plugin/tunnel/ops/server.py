"""Operations: metrics, readiness, the edge's live-connection file and its status page.

A small asyncio HTTP server serves ``/metrics`` (Prometheus text format from
``prometheus_client``), ``/ready`` (200 with JSON when at least one tunnel connection is
registered, else 503) and ``/healthcheck`` on the address given by ``metrics`` (default: a free
port on 127.0.0.1, printed at start), as cloudflared does.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger("pq_quic_plugin.tunnel")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Handler = Callable[..., Awaitable[tuple[int, str, bytes]]]


class Metrics:
    """Every counter an operator needs, on a registry of its own (one per process)."""

    def __init__(self, role: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        p = f"pq_tunnel_{role}"
        self.ha_connections = Gauge(f"{p}_ha_connections", "Registered tunnel connections",
                                    registry=r)
        self.handshakes = Counter(f"{p}_handshakes_total", "Tunnel QUIC handshakes",
                                  ["group", "result"], registry=r)
        self.requests = Counter(f"{p}_requests_total", "Proxied requests by status code",
                                ["status"], registry=r)
        self.errors = Counter(f"{p}_request_errors_total", "Proxied requests that failed "
                              "(status >= 500)", registry=r)
        self.concurrent = Gauge(f"{p}_concurrent_requests", "Requests in flight", registry=r)
        self.latency = Histogram(f"{p}_request_duration_seconds", "Request latency",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.connect_latency = Histogram(f"{p}_connect_duration_seconds",
                                         "Tunnel connection handshake time",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.bytes = Counter(f"{p}_bytes_total", "Body bytes relayed", ["direction"], registry=r)
        self.reconnects = Counter(f"{p}_reconnects_total", "Tunnel reconnect attempts",
                                  registry=r)

    # callbacks used by the connector and the edge
    def handshake(self, state: Any, ok: bool, seconds: float) -> None:
        group = getattr(state, "group", None) or getattr(state, "group_tried", None) or "none"
        self.handshakes.labels(group=group, result="ok" if ok else "failed").inc()
        if ok:
            self.connect_latency.observe(seconds)

    def reconnect(self, state: Any) -> None:
        self.reconnects.inc()

    def request_started(self) -> None:
        self.concurrent.inc()

    def request_done(self, status: int, seconds: float) -> None:
        self.concurrent.dec()
        self.requests.labels(status=str(status)).inc()
        if status >= 500:
            self.errors.inc()
        self.latency.observe(seconds)

    def relayed(self, direction: str, count: int) -> None:
        self.bytes.labels(direction=direction).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class OpsServer:
    """A tiny HTTP/1.1 server for /metrics, /ready, /healthcheck (and the edge's status page)."""

    def __init__(self, host: str, port: int, routes: dict[str, Handler], role: str) -> None:
        self.host, self.port, self.routes, self.role = host, port, routes, role
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("Starting metrics server on %s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            method = line[0] if line else "GET"
            target = line[1] if len(line) > 1 else "/"
            path, _, query = target.partition("?")
            handler = self.routes.get(path)
            if handler is None:
                status, ctype, body = 404, "text/plain", b"not found\n"
            elif path.startswith("/debug/"):
                if method != "POST":
                    status, ctype, body = 405, "text/plain", b"POST only\n"
                else:
                    status, ctype, body = await handler(dict(
                        p.split("=", 1) for p in query.split("&") if "=" in p))
            else:
                status, ctype, body = await handler()
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}.get(status, "")
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _json(status: int, data: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(data).encode()


# ---------------------------------------------------------------------------------- connector


async def attach_connector_operations(connector: Any, config: Any) -> OpsServer:
    metrics = Metrics("connector")
    connector.metrics = metrics

    async def prom() -> tuple[int, str, bytes]:
        metrics.ha_connections.set(connector.ready_connections)
        return 200, CONTENT_TYPE_LATEST, metrics.render()

    async def ready() -> tuple[int, str, bytes]:
        count = connector.ready_connections
        return _json(200 if count else 503, {
            "status": 200 if count else 503,
            "readyConnections": count,
            "connectorId": connector.connector_id,
        })

    async def health() -> tuple[int, str, bytes]:
        return 200, "text/plain", b"OK\n"

    server = OpsServer(config.metrics.host, config.metrics.port,
                       {"/metrics": prom, "/ready": ready, "/healthcheck": health}, "connector")
    await server.start()
    connector.ops_server = server
    return server


# ---------------------------------------------------------------------------------- edge


class EdgeStats:
    """Request counts and rates for the status page and metrics (the edge side)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.recent: deque[tuple[float, str, int]] = deque(maxlen=5000)

    def request_done(self, live: Any, status: int, seconds: float) -> None:
        self.metrics.requests.labels(status=str(status)).inc()
        if status >= 500:
            self.metrics.errors.inc()
        self.metrics.latency.observe(seconds)
        self.recent.append((time.time(), getattr(live, "tunnel_id", "?"), status))

    def rate(self, tunnel_id: str, window: float = 60.0) -> float:
        cutoff = time.time() - window
        return sum(1 for t, tid, _ in self.recent if t >= cutoff and tid == tunnel_id) / window


class LiveFile:
    """``<store>.live.json``: live connections for ``pq-tunnel list`` in another process."""

    def __init__(self, store_path: Path, registry: Any) -> None:
        self.path = store_path.with_name(store_path.name + ".live.json")
        self.registry = registry

    def write(self) -> None:
        tunnels: dict[str, list[dict[str, Any]]] = {}
        for live in self.registry:
            tunnels.setdefault(live.tunnel_id, []).append(live.describe())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"updated": time.time(), "pid": os.getpid(),
                                   "tunnels": tunnels}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def attach_edge_operations(edge: Any, config: Any) -> None:
    metrics = Metrics("edge")
    stats = EdgeStats(metrics)
    edge.app.stats = stats
    live_file = LiveFile(Path(config.store), edge.registry)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "registered":
            metrics.handshakes.labels(group=data.get("group") or "none", result="ok").inc()
        elif kind == "refused":
            metrics.handshakes.labels(group="none", result="refused").inc()
        live_file.write()

    edge.listener.on_event = on_event

    async def prom() -> tuple[int, str, bytes]:
        metrics.ha_connections.set(edge.registry.count())
        return 200, CONTENT_TYPE_LATEST, metrics.render()

    async def ready() -> tuple[int, str, bytes]:
        count = edge.registry.count()
        return _json(200 if count else 503, {"status": 200 if count else 503,
                                             "readyConnections": count,
                                             "edgeId": config.edge_id})

    async def health() -> tuple[int, str, bytes]:
        return 200, "text/plain", b"OK\n"

    async def status_page() -> tuple[int, str, bytes]:
        return 200, "text/html; charset=utf-8", render_status(edge, stats).encode()

    async def status_json() -> tuple[int, str, bytes]:
        return _json(200, status_data(edge, stats))

    async def close_connection(query: dict[str, str]) -> tuple[int, str, bytes]:
        """Operator tool (POST, metrics address only): drop one tunnel connection, e.g. to
        move a connector to another edge; the connector reconnects with backoff."""
        index = int(query.get("conn_index", "-1"))
        for live in list(edge.registry):
            if live.conn_index == index and query.get("tunnel") in (None, live.tunnel_name,
                                                                    live.tunnel_id):
                logger.warning("closing connection %s connIndex=%d on operator request",
                               live.connector_id, index)
                live.connection.close(error_code=0x11, reason_phrase="closed by operator")
                live.connection.transmit()
                return _json(200, {"closed": live.describe()})
        return _json(404, {"error": f"no live connection with conn_index={index}"})

    server = OpsServer(config.metrics.host, config.metrics.port, {
        "/metrics": prom, "/ready": ready, "/healthcheck": health,
        "/": status_page, "/status": status_page, "/status.json": status_json,
        "/debug/close-connection": close_connection,
    }, "edge")

    class _Extra:
        async def start(self) -> None:
            await server.start()
            live_file.write()

        async def stop(self) -> None:
            await server.stop()
            live_file.clear()

    edge.extras.append(_Extra())
    edge.ops_server = server

    async def public_status(scope: dict, receive: Any, send: Any) -> None:
        body = render_status(edge, stats).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": body})

    edge.app.extra_routes["/status"] = public_status


def status_data(edge: Any, stats: EdgeStats) -> dict[str, Any]:
    tunnels = []
    for record in edge.store.list():
        conns = [c.describe() for c in edge.registry.connections(record.id)]
        tunnels.append({"id": record.id, "name": record.name, "hostnames": list(record.hostnames),
                        "connections": conns, "requests_per_minute": stats.rate(record.id) * 60})
    return {"edge_id": edge.config.edge_id, "location": edge.config.location,
            "tunnels": tunnels, "pq_reports": list(edge.app.reports)[:20]}


def render_status(edge: Any, stats: EdgeStats) -> str:
    """Server-side HTML, readable without JavaScript."""
    data = status_data(edge, stats)
    e = html.escape
    rows = []
    for t in data["tunnels"]:
        conns = "".join(
            f"<li>connIndex {c['conn_index']}: <b>{e(str(c['group']))}</b> "
            f"<span class={'pq' if c['post_quantum'] else 'classic'}>"
            f"{'post-quantum' if c['post_quantum'] else 'NOT post-quantum'}</span>"
            f"{' (draining)' if c['draining'] else ''} from {e(c['remote'])}, "
            f"{c['requests']} requests</li>"
            for c in t["connections"]
        ) or "<li class=classic>no live connection</li>"
        rows.append(
            f"<tr><td><b>{e(t['name'])}</b><br><small>{e(t['id'])}</small></td>"
            f"<td>{e(', '.join(t['hostnames']))}</td><td><ul>{conns}</ul></td>"
            f"<td>{t['requests_per_minute']:.1f}/min</td></tr>"
        )
    reports = "".join(
        f"<li>{e(time.strftime('%H:%M:%S', time.gmtime(r.get('received_at', 0))))} UTC: "
        f"group {e(str(r.get('group')))}, {e(str(r.get('version')))}: "
        f"{e(str(r.get('error')))}</li>" for r in data["pq_reports"]
    ) or "<li>none</li>"
    return f"""<!doctype html><html><head><meta charset=utf-8>
<title>pq-tunnel edge {e(data['edge_id'])}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#1d2330;background:#f6f7fb}}
h1{{font-size:1.5em}} table{{border-collapse:collapse;width:100%;background:#fff}}
td,th{{border:1px solid #d5d9e3;padding:.5em;vertical-align:top;text-align:left}}
th{{background:#e9ecf4}} .pq{{color:#0a7d32;font-weight:600}} .classic{{color:#b3261e;
font-weight:600}} ul{{margin:0;padding-left:1.2em}} small{{color:#667}}</style></head><body>
<h1>pq-tunnel edge <code>{e(data['edge_id'])}</code> ({e(data['location'])})</h1>
<table><tr><th>Tunnel</th><th>Hostnames</th><th>Live connections (key exchange)</th>
<th>Requests</th></tr>{''.join(rows) or '<tr><td colspan=4>no tunnels</td></tr>'}</table>
<h2>Recent post-quantum failure reports</h2><ul>{reports}</ul>
<p><small>Refreshed {e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))};
/metrics, /ready and /healthcheck on the metrics address.</small></p></body></html>"""
