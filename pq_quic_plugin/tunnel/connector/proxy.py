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

from ... import negotiated_group
from ...asgi.types import HOPS_HEADER, Hop
from ...policy import Policy
from ..config import ConnectorConfig, IngressRule
from ..config.origin_request import OriginSettings
from ..headers import find
from ..observer import Observer
from ..origin import OriginClient, OriginError, OriginHop, OriginRequest
from ..wire import MAX_FRAME, FrameType
from ..wire import TunnelStream as Channel  # either transport's stream
from .hello_world import hello_world

__all__ = ["RequestProxy", "origin_options", "with_hops"]

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


#: How strict each key-exchange policy is, to tell a rule that weakens the connector's.
_STRICTNESS = {Policy.OFF.value: 0, Policy.PREFER.value: 1, Policy.REQUIRE.value: 2}


def origin_options(rule: IngressRule, top: OriginSettings) -> dict[str, Any]:
    """The :class:`OriginRequest` keywords for ``rule``: its ``originRequest`` over the
    top-level one (``top``), with the rule's own keys (``origin-ca-file``,
    ``origin-server-name``, ``origin-protocol``) first. TLS settings at the top level apply to
    TLS services only; ``http2Origin`` turns ``origin-protocol: auto`` into ``http2``."""
    s = rule.origin_request.over(top)
    tls = rule.service.tls
    ca = rule.origin_ca_file or (s.ca_pool if tls else None)
    protocol = rule.origin_protocol
    if protocol == "auto" and tls and s.http2_origin:
        protocol = "http2"
    return {
        "ca_file": _text(ca),
        "server_name": rule.origin_server_name or (s.origin_server_name if tls else None),
        "protocol": protocol,
        "host_header": s.http_host_header,
        "connect_timeout": s.connect_timeout,
        "tls_timeout": s.tls_timeout,
        "verify": not (tls and s.no_tls_verify),
        "policy": s.post_quantum if tls else None,
        "keepalive_timeout": s.keep_alive_timeout,
        "keepalive_connections": s.keep_alive_connections,
        "chunked": not s.disable_chunked_encoding,
    }


class RequestProxy:
    """Answers the edge's request streams from the ingress rules and the origin client."""

    def __init__(self, ingress: ConnectorConfig, origin: OriginClient, observer: Observer) -> None:
        self.ingress = ingress
        self.origin = origin
        self.observer = observer
        self._options = {
            id(rule): origin_options(rule, ingress.origin_request) for rule in ingress.ingress
        }
        self._warn_weaker()

    def _warn_weaker(self) -> None:
        """Say at start which rules verify less, or offer a weaker key exchange, than the
        connector would by itself: a rule may, but the operator should see it."""
        for rule in self.ingress.ingress:
            options = self._options[id(rule)]
            if not options["verify"]:
                logger.warning(
                    "ingress[%d] %s: noTLSVerify: the origin's certificate is not checked",
                    rule.index,
                    rule.service,
                )
            policy = options["policy"]
            if policy is not None and _STRICTNESS[policy] < _STRICTNESS[self.origin.policy]:
                logger.warning(
                    "ingress[%d] %s: postQuantum: %s is weaker than the connector's %s for "
                    "this origin",
                    rule.index,
                    rule.service,
                    policy,
                    self.origin.policy,
                )

    def options(self, rule: IngressRule) -> dict[str, Any]:
        """The origin settings of ``rule`` (computed once per configured rule)."""
        found = self._options.get(id(rule))
        return found if found is not None else origin_options(rule, self.ingress.origin_request)

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
        method = str(head.get("method", "GET"))
        if rule.service.kind == "hello_world":
            return await self._hello_world(channel, method, path, headers, hops, websocket)
        request = OriginRequest(
            service=rule.service,
            method=method,
            path=path,
            headers=headers,
            body=None if websocket else self._body(channel),
            headers_for=lambda hop: with_hops(headers, hops, hop),
            **self.options(rule),
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

    async def _hello_world(
        self,
        channel: Channel,
        method: str,
        path: str,
        headers: Headers,
        hops: list[Hop],
        websocket: bool,
    ) -> int:
        """The connector's own page; a WebSocket to it is refused (404), a body is read and
        dropped."""
        if websocket:
            await channel.send_json(FrameType.HEADERS, {"status": 404, "subprotocol": None})
            await channel.end()
            return 404
        async for _ in self._body(channel):
            pass
        status, out, body = hello_world(method, path, headers, hops)
        await channel.send_json(
            FrameType.HEADERS, {"status": status, "headers": [[k, v] for k, v in out]}
        )
        if body:
            await channel.send_data(body)
        await channel.end()
        return status

    async def _body(self, channel: Channel) -> AsyncIterator[bytes]:
        while (frame := await channel.read()) is not None:
            if frame[0] == FrameType.DATA:
                self.observer.relayed("to_origin", len(frame[1]))
                yield frame[1]

    async def _refuse(self, channel: Channel, exc: OriginError, what: str) -> int:
        """Log why (with the detail) and tell the edge only the status and a generic text."""
        logger.warning("request %s: %s: %s", channel.stream_id, what, exc.reason)
        self.observer.origin_error()
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
            self.observer.origin_error()
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
