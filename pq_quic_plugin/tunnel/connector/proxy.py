"""Serving one tunnelled request: match the ingress rule, hand it to the origin, relay back.

The edge opens a stream per visitor request and sends its head (method, path, headers, the hop
list so far, whether it is a WebSocket); this module answers it on that stream. It also writes
the hop list the origin receives in ``pq-tunnel-hops``: the edge's hops (the visitor-edge hop
with the visitor's transport, ``tcp`` or ``quic``, and HTTP version), with the edge-connector
hop as this connector saw it, plus the connector-origin hop once that connection is up, so its
transport (``tcp`` with ``http_version`` ``1.1``/``2`` and ``tls``, or ``quic``) and its group
are the ones actually negotiated (read off the TLS object, never assumed).

What a visitor is told when the origin fails is generic (:attr:`OriginError.public`, say "502
Bad Gateway: the origin could not be reached"): the detail names internal addresses and ports,
so it goes to the connector's log only, with the request's stream number to find it by.
WebSocket messages are limited to :data:`~pq_quic_plugin.tunnel.wire.MAX_FRAME` bytes (1 MiB),
what one tunnel frame carries: a larger one from the origin closes the WebSocket with 1009
"message too big".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ...aioquic_binding import negotiated_group
from ...asgi.types import HOPS_HEADER, Hop
from ..config import ConnectorConfig
from ..headers import find
from ..observer import Observer
from ..origin import OriginClient, OriginError, OriginHop, OriginRequest
from ..wire import MAX_FRAME, Channel, FrameType

__all__ = ["RequestProxy", "with_hops"]

logger = logging.getLogger("pq_quic_plugin.tunnel.connector")

Headers = list[tuple[str, str]]


def with_hops(headers: Headers, hops: list[Hop], origin_hop: OriginHop | None) -> Headers:
    """``headers`` with one ``pq-tunnel-hops`` header: ``hops`` plus ``origin_hop`` if given."""
    out = [(k, v) for k, v in headers if k.lower() != HOPS_HEADER]
    all_hops = list(hops)
    if origin_hop is not None:
        all_hops.append(origin_hop.as_dict())
    out.append((HOPS_HEADER, json.dumps(all_hops, separators=(",", ":"))))
    return out


def _close_code(payload: bytes) -> int:
    """The close code in a WS_CLOSE frame from the edge; 1000 when it has no valid one."""
    try:
        code = json.loads(payload).get("code", 1000)
    except (ValueError, AttributeError):
        return 1000
    return code if isinstance(code, int) and 1000 <= code < 5000 else 1000


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


class RequestProxy:
    """Answers the edge's request streams from the ingress rules and the origin client."""

    def __init__(self, ingress: ConnectorConfig, origin: OriginClient, observer: Observer) -> None:
        self.ingress = ingress
        self.origin = origin
        self.observer = observer

    async def serve(self, channel: Channel) -> int:
        """Serve the request on ``channel``; returns the status the visitor got."""
        head = await channel.read_json(FrameType.HEADERS)
        headers = [(str(k), str(v)) for k, v in head.get("headers", [])]
        path = str(head.get("path", "/"))
        rule = self.ingress.ingress_match(find(headers, "host") or "", path.split("?", 1)[0])
        if rule.service.kind == "http_status":
            await channel.send_json(
                FrameType.HEADERS, {"status": rule.service.status, "headers": []}
            )
            await channel.end()
            return int(rule.service.status)
        hops = self._hops(head, channel)
        websocket = bool(head.get("websocket"))
        request = OriginRequest(
            service=rule.service,
            method=str(head.get("method", "GET")),
            path=path,
            headers=headers,
            body=None if websocket else self._body(channel),
            ca_file=_text(rule.origin_ca_file),
            server_name=rule.origin_server_name,
            headers_for=lambda hop: with_hops(headers, hops, hop),
            protocol=rule.origin_protocol,
        )
        if websocket:
            return await self._serve_websocket(channel, request, list(head.get("subprotocols", [])))
        return await self._serve_http(channel, request)

    @staticmethod
    def _hops(head: dict[str, Any], channel: Channel) -> list[Hop]:
        """The edge's hop list, with this connector's own view of the tunnel hop."""
        hops: list[Hop] = list(head.get("hops", []))
        tunnel_group = negotiated_group(channel.connection)
        if tunnel_group is not None:
            for hop in hops:
                if hop.get("hop") == "edge-connector":
                    hop["group"] = tunnel_group.name
                    hop["post_quantum"] = tunnel_group.post_quantum
        return hops

    async def _body(self, channel: Channel) -> AsyncIterator[bytes]:
        while (frame := await channel.read()) is not None:
            if frame[0] == FrameType.DATA:
                self.observer.relayed("to_origin", len(frame[1]))
                yield frame[1]

    @staticmethod
    async def _refuse(channel: Channel, exc: OriginError, what: str) -> int:
        """Log why (with the detail) and tell the edge only the status and a generic text."""
        logger.warning("request %s: %s: %s", channel.stream_id, what, exc.reason)
        await channel.send_json(
            FrameType.ERROR, {"status": exc.status, "reason": exc.public}, end=True
        )
        return exc.status

    async def _serve_http(self, channel: Channel, request: OriginRequest) -> int:
        service = str(request.service)
        try:
            response = await self.origin.request(request)
        except OriginError as exc:
            return await self._refuse(channel, exc, f"{request.method} to origin {service}")
        try:
            await channel.send_json(
                FrameType.HEADERS,
                {"status": response.status, "headers": [[k, v] for k, v in response.headers]},
            )
            async for chunk in response.body:
                self.observer.relayed("from_origin", len(chunk))
                await channel.send_data(chunk)
            await channel.end()
        except OriginError as exc:
            # The head already went out, so no error page is possible: cancel the visitor's
            # stream (a reset, never a silently truncated body) and say why.
            logger.warning(
                "request %s: origin %s: %s (response cancelled after the head)",
                channel.stream_id,
                service,
                exc.reason,
            )
            await response.aclose()
            channel.reset()
            return exc.status
        except BaseException:
            # The visitor went away (StreamReset), the tunnel connection broke, or the connector
            # is stopping: cancel the origin request (HTTP/2: RST_STREAM) rather than leave it
            # holding a connection or a stream's window.
            await response.aclose()
            raise
        return response.status

    async def _serve_websocket(
        self, channel: Channel, request: OriginRequest, subprotocols: list[str]
    ) -> int:
        try:
            ws = await self.origin.websocket(request, subprotocols, max_message=MAX_FRAME)
        except OriginError as exc:
            return await self._refuse(channel, exc, f"WebSocket to origin {request.service}")
        await channel.send_json(
            FrameType.HEADERS, {"status": ws.status, "subprotocol": ws.subprotocol}
        )
        if ws.status != 101:
            await channel.end()
            return int(ws.status)

        async def edge_to_origin() -> None:
            while (frame := await channel.read()) is not None:
                kind, payload = frame
                if kind == FrameType.WS_TEXT:
                    try:
                        text = payload.decode()
                    except UnicodeDecodeError:
                        await ws.close(1007, "text message is not UTF-8")
                        return
                    await ws.send(text)
                elif kind == FrameType.WS_BINARY:
                    await ws.send(payload)
                elif kind == FrameType.WS_CLOSE:
                    await ws.close(_close_code(payload))
                    return

        async def origin_to_edge() -> None:
            while (message := await ws.receive()) is not None:
                if isinstance(message, str):
                    await channel.send(FrameType.WS_TEXT, message.encode())
                else:
                    await channel.send(FrameType.WS_BINARY, message)
            await channel.send_json(FrameType.WS_CLOSE, {"code": ws.close_code or 1000}, end=True)

        tasks = [asyncio.ensure_future(edge_to_origin()), asyncio.ensure_future(origin_to_edge())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            # Every task's outcome is collected here: none is left "never retrieved".
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            ws.abort()
        failures = [o for o in outcomes if isinstance(o, Exception)]
        if failures:
            logger.info("request %s: WebSocket ended: %s", channel.stream_id, failures[0])
            channel.reset()
        return 101
