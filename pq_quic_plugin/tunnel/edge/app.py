"""The edge's public side: an ASGI app that relays visitors' requests down a tunnel.

It routes by Host to a tunnel with a live connection and streams both bodies without buffering
them whole. Requests for hosts that belong to no tunnel reach the edge's own pages
(``/pq-report``, ``/status``) or get a 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ...asgi.scope import connection_facts
from ..headers import EDGE_REPLACES, forwardable
from ..wire import FrameType, StreamReset
from .registry import LiveConnection, Registry

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

MAX_REPORT = 16 * 1024


class EdgeApp:
    def __init__(self, store: Any, registry: Registry, stats: Any = None) -> None:
        self.store = store
        self.registry = registry
        self.reports: deque[dict[str, Any]] = deque(maxlen=200)
        self.stats = stats
        self.extra_routes: dict[str, Callable[[dict, Receive, Send], Awaitable[None]]] = {}

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        host = _host(scope)
        record = self.store.by_hostname(host) if host else None
        if record is None:
            await self._own_pages(scope, receive, send, host)
            return
        live = self.registry.pick(record.id)
        if live is None:
            await _plain(send, 502, (
                f"Tunnel {record.name} for {host} has no live connection to its connector. "
                "The connector may be stopped or still reconnecting; try again shortly."
            ), scope)
            return
        if scope["type"] == "websocket":
            await self._proxy_websocket(scope, receive, send, live)
        else:
            await self._proxy_http(scope, receive, send, live)

    # ------------------------------------------------------------------ proxying

    def _head(self, scope: dict, live: LiveConnection) -> dict[str, Any]:
        facts = connection_facts(scope)
        visitor = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        headers = [[k, v] for k, v in forwardable(visitor, drop=EDGE_REPLACES)]
        host = _host(scope) or ""
        client = scope.get("client") or ("", 0)
        headers += [
            ["host", host],
            ["x-forwarded-for", str(client[0])],
            ["x-forwarded-proto", "https" if scope.get("scheme") in ("https", "wss") else "http"],
            ["x-forwarded-host", host],
        ]
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        return {
            "method": scope.get("method", "GET"),
            "path": path.decode("latin-1"),
            "headers": headers,
            "websocket": scope["type"] == "websocket",
            "subprotocols": scope.get("subprotocols", []),
            "hops": [
                {
                    "hop": "visitor-edge",
                    "transport": facts.transport,
                    "http_version": facts.http_version,
                    "group": facts.group,
                    "post_quantum": facts.post_quantum,
                },
                {
                    "hop": "edge-connector",
                    "transport": "quic",
                    "group": live.group,
                    "post_quantum": live.post_quantum,
                },
            ],
        }

    async def _proxy_http(self, scope: dict, receive: Receive, send: Send,
                          live: LiveConnection) -> None:
        started = time.monotonic()
        try:
            channel = live.connection.open_channel()
        except StreamReset as exc:
            await _plain(send, 502, f"tunnel connection lost: {exc}", scope)
            return
        live.requests += 1
        live.in_flight += 1
        upload = asyncio.ensure_future(_pump_request(receive, channel))
        status = 502
        response_started = False
        try:
            await channel.send_json(FrameType.HEADERS, self._head(scope, live))
            head = await channel.read_json(FrameType.HEADERS)
            status = int(head["status"])
            await send({
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1"))
                            for k, v in head.get("headers", [])],
            })
            response_started = True
            while (frame := await channel.read()) is not None:
                if frame[0] == FrameType.DATA and frame[1]:
                    await send({"type": "http.response.body", "body": frame[1],
                                "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except StreamReset as exc:
            if not response_started:
                status = exc.code if isinstance(exc.code, int) and 400 <= exc.code < 600 else 502
                await _plain(send, status, f"The tunnel could not complete the request: {exc}",
                             scope)
            else:
                # A started response cannot change its status. Returning mid-body makes the
                # server abort the visitor's response (HTTP/3: RESET_STREAM; HTTP/1.1: the
                # connection closes), so a cut body is never taken for a complete one.
                logger.warning("tunnel %s: response aborted after the head: %s",
                               live.tunnel_name, exc)
        finally:
            live.in_flight -= 1
            upload.cancel()
            live.connection.forget(channel)
            if self.stats is not None:
                self.stats.request_done(live, status, time.monotonic() - started)

    async def _proxy_websocket(self, scope: dict, receive: Receive, send: Send,
                               live: LiveConnection) -> None:
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        channel = live.connection.open_channel()
        live.requests += 1
        try:
            await channel.send_json(FrameType.HEADERS, self._head(scope, live))
            head = await channel.read_json(FrameType.HEADERS)
        except StreamReset as exc:
            logger.info("websocket through tunnel %s refused: %s", live.tunnel_name, exc)
            await send({"type": "websocket.close", "code": 1011})
            return
        if int(head["status"]) != 101:
            await send({"type": "websocket.close", "code": 1008})
            channel.reset()
            return
        await send({"type": "websocket.accept", "subprotocol": head.get("subprotocol")})

        async def visitor_to_origin() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    if message.get("text") is not None:
                        await channel.send(FrameType.WS_TEXT, message["text"].encode())
                    else:
                        await channel.send(FrameType.WS_BINARY, message.get("bytes") or b"")
                elif message["type"] == "websocket.disconnect":
                    await channel.send_json(FrameType.WS_CLOSE,
                                            {"code": message.get("code", 1000)}, end=True)
                    return

        async def origin_to_visitor() -> None:
            while (frame := await channel.read()) is not None:
                kind, payload = frame
                if kind == FrameType.WS_TEXT:
                    await send({"type": "websocket.send", "text": payload.decode()})
                elif kind == FrameType.WS_BINARY:
                    await send({"type": "websocket.send", "bytes": payload})
                elif kind == FrameType.WS_CLOSE:
                    code = json.loads(payload).get("code", 1000)
                    await send({"type": "websocket.close", "code": code})
                    return
            await send({"type": "websocket.close", "code": 1000})

        tasks = [asyncio.ensure_future(visitor_to_origin()),
                 asyncio.ensure_future(origin_to_visitor())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            live.connection.forget(channel)

    # ------------------------------------------------------------------ edge's own pages

    async def _own_pages(self, scope: dict, receive: Receive, send: Send, host: str) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        path = scope["path"]
        if path == "/pq-report":
            await self._pq_report(scope, receive, send)
            return
        route = self.extra_routes.get(path)
        if route is not None:
            await route(scope, receive, send)
            return
        await _plain(send, 404, f"No tunnel serves the host {host or '(none)'}.", scope)

    async def _pq_report(self, scope: dict, receive: Receive, send: Send) -> None:
        """The collector for connectors' post-quantum failure reports (POST), and a view (GET)."""
        if scope.get("method") == "POST":
            body = await _read_body(receive, MAX_REPORT)
            try:
                report = json.loads(body)
                if not isinstance(report, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                await _plain(send, 400, f"a report is a JSON object: {exc}", scope)
                return
            report = {str(k)[:64]: (v if isinstance(v, (int, float, bool)) or v is None
                                    else str(v)[:500]) for k, v in report.items()}
            report["received_at"] = time.time()
            report["from"] = (scope.get("client") or ["?"])[0]
            self.reports.appendleft(report)
            logger.warning("post-quantum failure report: %s", report)
            await _plain(send, 202, "report received", scope)
            return
        body = json.dumps(list(self.reports), indent=2).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def _pump_request(receive: Receive, channel: Any) -> None:
    """Visitor's body into DATA frames; a visitor disconnect cancels the stream."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                more = message.get("more_body", False)
                if body:
                    await channel.send_data(body, end=not more)
                elif not more:
                    await channel.end()
                if not more:
                    break
            elif message["type"] == "http.disconnect":
                channel.reset()
                return
        # Keep listening: a disconnect after the upload still cancels the request.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                channel.reset()
                return
    except StreamReset:
        return


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return bytes(body[:limit])
        if not message.get("more_body"):
            return bytes(body)


async def _plain(send: Send, status: int, text: str, scope: dict | None = None) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _host(scope: dict) -> str:
    """The request's host name without port, lower-cased (IPv6 literals without brackets)."""
    for key, value in scope.get("headers", []):
        if key in (b"host", b":authority"):
            text = value.decode("latin-1").strip().lower()
            if text.startswith("["):
                return text[1 : text.index("]")] if "]" in text else text[1:]
            return text.rsplit(":", 1)[0] if ":" in text else text
    server = scope.get("server")
    return str(server[0]) if server else ""
