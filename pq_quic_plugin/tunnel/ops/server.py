"""Operations over HTTP on the metrics address: ``/metrics``, ``/ready``, ``/healthcheck``.

As in cloudflared, the connector and the edge each serve, on the address given by ``metrics``
(default: a free port on 127.0.0.1, printed at start): ``/metrics`` (Prometheus text format),
``/ready`` (200 with JSON when at least one tunnel connection is registered, else 503; what
orchestrators probe) and ``/healthcheck``. The edge adds its status page, the post-quantum
failure reports (``/pq-report``) and one operator action. This is a separate tiny HTTP/1.1
server, never the public listener: nothing here is meant for visitors.

Its default address is loopback, which a browser on the same machine can still reach. So an
action (a POST that changes state) must carry the header :data:`ACTION_HEADER`, which a web page
cannot add to a cross-site request without a CORS preflight this server never grants, and is
refused when the browser says it comes from another site (``Origin``, ``Sec-Fetch-Site``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .. import strict_json
from ..hostnames import HostPort
from .metrics import Metrics
from .status import render_status, status_data

if TYPE_CHECKING:
    from ..connector.supervisor import Connector
    from ..edge.server import Edge

__all__ = [
    "ACTION_HEADER",
    "OpsServer",
    "OpsResponse",
    "Route",
    "serve_connector_operations",
    "serve_edge_operations",
]

logger = logging.getLogger("pq_quic_plugin.tunnel")

REQUEST_HEAD_TIMEOUT = 10.0
#: An action needs this request header (any value): ``curl -X POST -H 'pq-tunnel-action: 1'``.
ACTION_HEADER = "pq-tunnel-action"


class OpsResponse(NamedTuple):
    status: int
    content_type: str
    body: bytes


#: A route answers from the query parameters; every answer is small and computed at once.
Route = Callable[[Mapping[str, str]], OpsResponse]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class OpsServer:
    """A tiny HTTP/1.1 server: one request per connection, GET ``routes``, POST ``actions``.

    Actions change state (e.g. drop a connection), so they answer POST only: a browser
    prefetching or a crawler following a link cannot trigger them.
    """

    def __init__(
        self,
        address: HostPort,
        routes: Mapping[str, Route],
        actions: Mapping[str, Route] | None = None,
    ) -> None:
        self.address = address
        self.routes = dict(routes)
        self.actions = dict(actions or {})
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one until :meth:`start`)."""
        return self.address.port

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` if the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._handle, self.address.host, self.address.port
        )
        port = self._server.sockets[0].getsockname()[1]
        self.address = HostPort(self.address.host, int(port))
        logger.info("Starting metrics server on %s/metrics", self.address)
        if self.actions and not _is_loopback(self.address.host):
            logger.warning(
                "the operations address %s is not loopback: whoever reaches it sees the status "
                "page and reports and may use %s (with the %s header)",
                self.address,
                ", ".join(self.actions),
                ACTION_HEADER,
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def answer(
        self, method: str, target: str, headers: Mapping[str, str] | None = None
    ) -> OpsResponse:
        """The response to one request (no I/O, so it is easy to test); ``headers`` by
        lower-case name."""
        path, _, query_text = target.partition("?")
        query = dict(p.split("=", 1) for p in query_text.split("&") if "=" in p)
        action = self.actions.get(path)
        if action is not None:
            if method != "POST":
                return OpsResponse(405, "text/plain", b"POST only\n")
            refusal = _cross_site(headers or {})
            if refusal is not None:
                logger.warning("refused operator action %s: %s", path, refusal)
                return OpsResponse(403, "text/plain", f"{refusal}\n".encode())
            return action(query)
        route = self.routes.get(path)
        if route is None:
            return OpsResponse(404, "text/plain", b"not found\n")
        return route(query)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_HEAD_TIMEOUT)
            first, *lines = request.decode("latin-1").split("\r\n")
            line = first.split()
            method = line[0] if line else "GET"
            target = line[1] if len(line) > 1 else "/"
            headers = {}
            for header in lines:
                name, sep, value = header.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            try:
                status, ctype, body = self.answer(method, target, headers)
            except ValueError as exc:  # e.g. a value JSON cannot carry: an error, not a crash
                logger.error("operations request %s failed: %s", target[:100], exc)
                status, ctype, body = 500, "text/plain", b"internal error\n"
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (
            asyncio.TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()


def _json(status: int, data: Any) -> OpsResponse:
    """Strict JSON: a value JSON cannot carry (NaN) raises instead of breaking a client."""
    return OpsResponse(status, "application/json", strict_json.dumps(data).encode())


def _cross_site(headers: Mapping[str, str]) -> str | None:
    """Why an action request may come from a web page (a cross-site request forgery), or
    ``None`` for a request from a tool such as curl."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request (Sec-Fetch-Site: {site[:40]})"
    origin = headers.get("origin")
    if origin is not None and origin != f"http://{headers.get('host', '')}":
        return f"request from another origin ({origin[:100]})"
    if not headers.get(ACTION_HEADER):
        return f"an operator action needs the header {ACTION_HEADER} (e.g. -H '{ACTION_HEADER}: 1')"
    return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _ready(count: int, **identity: str) -> OpsResponse:
    status = 200 if count else 503
    return _json(status, {"status": status, "readyConnections": count, **identity})


def _health(query: Mapping[str, str]) -> OpsResponse:
    return OpsResponse(200, "text/plain", b"OK\n")


# ---------------------------------------------------------------------------------- connector


async def serve_connector_operations(
    connector: Connector, metrics: Metrics, address: HostPort
) -> OpsServer:
    """Start the connector's operations server; raises ``OSError`` if it cannot bind."""

    def prometheus(query: Mapping[str, str]) -> OpsResponse:
        return OpsResponse(
            200,
            CONTENT_TYPE_LATEST,
            metrics.render(connector.ready_connections, connector.protocols()),
        )

    def ready(query: Mapping[str, str]) -> OpsResponse:
        return _ready(connector.ready_connections, connectorId=connector.connector_id)

    server = OpsServer(address, {"/metrics": prometheus, "/ready": ready, "/healthcheck": _health})
    await server.start()
    return server


# ---------------------------------------------------------------------------------- edge


async def serve_edge_operations(edge: Edge, metrics: Metrics, address: HostPort) -> OpsServer:
    """Start the edge's operations server with its status page; raises ``OSError`` if it
    cannot bind. ``metrics`` must be (among) the observer the edge was built with."""
    if edge.peers is not None:
        from .cluster_metrics import RelayCollector

        metrics.registry.register(RelayCollector(edge.peers))

    def prometheus(query: Mapping[str, str]) -> OpsResponse:
        return OpsResponse(
            200,
            CONTENT_TYPE_LATEST,
            metrics.render(edge.registry.count(), edge.registry.protocols()),
        )

    def ready(query: Mapping[str, str]) -> OpsResponse:
        return _ready(edge.registry.count(), edgeId=edge.config.edge_id)

    def status_page(query: Mapping[str, str]) -> OpsResponse:
        page = render_status(status_data(edge, metrics))
        return OpsResponse(200, "text/html; charset=utf-8", page.encode())

    def status_json(query: Mapping[str, str]) -> OpsResponse:
        return _json(200, status_data(edge, metrics))

    def reports(query: Mapping[str, str]) -> OpsResponse:
        return _json(200, edge.app.reports.latest(200))

    def close_connection(query: Mapping[str, str]) -> OpsResponse:
        """Drop one tunnel connection, e.g. to move a connector to another edge; the connector
        reconnects with backoff."""
        try:
            index = int(query.get("conn_index", ""))
        except ValueError:
            return _json(400, {"error": "conn_index=N is required"})
        tunnel = query.get("tunnel")
        for live in list(edge.registry):
            if live.conn_index == index and tunnel in (None, live.tunnel_name, live.tunnel_id):
                logger.warning(
                    "closing connection %s connIndex=%d on operator request",
                    live.connector_id,
                    index,
                )
                live.close("closed by operator")
                return _json(200, {"closed": live.describe()})
        return _json(404, {"error": f"no live connection with conn_index={index}"})

    server = OpsServer(
        address,
        {
            "/metrics": prometheus,
            "/ready": ready,
            "/healthcheck": _health,
            "/": status_page,
            "/status": status_page,
            "/status.json": status_json,
            "/pq-report": reports,
        },
        actions={"/debug/close-connection": close_connection},
    )
    await server.start()
    return server
