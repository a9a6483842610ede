"""The edge's public side: an ASGI app that relays visitors' requests down a tunnel.

It routes by Host to a tunnel with a live connection and streams both bodies without buffering
them whole. Requests for hosts that belong to no tunnel reach the edge's own endpoint
(``/pq-report``) or get a 404; the status page and metrics are served on the metrics address
only (see ``ops``), never here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ...asgi.scope import connection_facts
from ...asgi.types import Receive, Scope, Send, lifespan
from ..headers import EDGE_REPLACES, forwardable
from ..hostnames import request_host
from ..observer import NO_OBSERVER, Observer
from ..wire import Channel, FrameType, StreamReset
from .registry import LiveConnection, Registry
from .reports import PqReports
from .responses import plain_text
from .store import TunnelStore

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")


class EdgeApp:
    """Routes each visitor request by host to a live tunnel connection and relays it."""

    def __init__(
        self,
        store: TunnelStore,
        registry: Registry,
        observer: Observer = NO_OBSERVER,
        reports: PqReports | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.observer = observer
        self.reports = reports if reports is not None else PqReports()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        host = _host(scope)
        record = self.store.by_hostname(host) if host else None
        if record is None:
            await self._own_pages(scope, receive, send, host)
            return
        live = self.registry.pick(record.id)
        if live is None:
            await plain_text(
                send,
                502,
                (
                    f"Tunnel {record.name} for {host} has no live connection to its connector. "
                    "The connector may be stopped or still reconnecting; try again shortly."
                ),
            )
            return
        if scope["type"] == "websocket":
            await self._proxy_websocket(scope, receive, send, live)
        else:
            await self._proxy_http(scope, receive, send, live)

    # ------------------------------------------------------------------ proxying

    def _head(self, scope: Scope, live: LiveConnection) -> dict[str, Any]:
        facts = connection_facts(scope)
        visitor = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        headers = [[k, v] for k, v in forwardable(visitor, drop=EDGE_REPLACES)]
        host = _host(scope)
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

    async def _proxy_http(
        self, scope: Scope, receive: Receive, send: Send, live: LiveConnection
    ) -> None:
        started = time.monotonic()
        try:
            channel = live.connection.open_channel()
        except StreamReset as exc:
            await plain_text(send, 502, f"tunnel connection lost: {exc}")
            return
        live.requests += 1
        live.in_flight += 1
        self.observer.request_started()
        upload = asyncio.ensure_future(_pump_request(receive, channel))
        status = 502
        response_started = False
        try:
            await channel.send_json(FrameType.HEADERS, self._head(scope, live))
            head = await channel.read_json(FrameType.HEADERS)
            status = int(head["status"])
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in head.get("headers", [])
                    ],
                }
            )
            response_started = True
            while (frame := await channel.read()) is not None:
                if frame[0] == FrameType.DATA and frame[1]:
                    await send({"type": "http.response.body", "body": frame[1], "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except StreamReset as exc:
            if not response_started:
                status = exc.code if isinstance(exc.code, int) and 400 <= exc.code < 600 else 502
                await plain_text(send, status, f"The tunnel could not complete the request: {exc}")
            else:
                # A started response cannot change its status. Returning mid-body makes the
                # server abort the visitor's response (HTTP/3: RESET_STREAM; HTTP/1.1: the
                # connection closes), so a cut body is never taken for a complete one.
                logger.warning(
                    "tunnel %s: response aborted after the head: %s", live.tunnel_name, exc
                )
        finally:
            live.in_flight -= 1
            upload.cancel()
            live.connection.forget(channel)
            self.observer.request_done(live.tunnel_id, status, time.monotonic() - started)

    async def _proxy_websocket(
        self, scope: Scope, receive: Receive, send: Send, live: LiveConnection
    ) -> None:
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
                    await channel.send_json(
                        FrameType.WS_CLOSE, {"code": message.get("code", 1000)}, end=True
                    )
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

        tasks = [
            asyncio.ensure_future(visitor_to_origin()),
            asyncio.ensure_future(origin_to_visitor()),
        ]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            live.connection.forget(channel)

    # ------------------------------------------------------------------ edge's own pages

    async def _own_pages(self, scope: Scope, receive: Receive, send: Send, host: str) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"] == "/pq-report":
            await self.reports(scope, receive, send)
            return
        await plain_text(send, 404, f"No tunnel serves the host {host or '(none)'}.")


async def _pump_request(receive: Receive, channel: Channel) -> None:
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


def _host(scope: Scope) -> str:
    """The host the request names (see :func:`request_host`), else the address it reached."""
    for key, value in scope.get("headers", []):
        if key in (b"host", b":authority"):
            return request_host(value.decode("latin-1"))
    server = scope.get("server")
    return str(server[0]) if server else ""
