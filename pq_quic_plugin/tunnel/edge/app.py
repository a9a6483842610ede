"""The edge's public side: an ASGI app that relays visitors' requests down a tunnel.

Every request is first checked (:mod:`.visitor_request`: header size, a valid host, unambiguous
body framing, a normalized path), then routed by host to a tunnel with a live connection, within
the visitor's and the tunnel's share of requests in flight (:mod:`.limits`), and both bodies are
streamed without buffering them whole, each cancelled when it stays idle (:mod:`.relay`).
Requests for hosts that belong to no tunnel reach the edge's own endpoint (``/pq-report``) or get
a 404; the status page and metrics are served on the metrics address only (see ``ops``), never
here. What goes wrong inside the tunnel is logged with a request id; the visitor gets the id and
a generic sentence (:func:`.responses.failure_text`), never an internal address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from wsproto.frame_protocol import CloseReason

from ...asgi.scope import connection_facts
from ...asgi.types import Receive, Scope, Send, lifespan
from ..cluster.route import NO_CONNECTION_STATUS, PeerRoute
from ..headers import EDGE_REPLACES, ORIGIN_ONLY, forwardable, forwarding_headers
from ..hop_auth import auth_fields
from ..observer import NO_OBSERVER, Observer
from ..ops.relay_counts import counted as _counted
from ..ops.relay_counts import counting as _counting
from ..wire import MAX_FRAME, FrameType, ProtocolError, StreamReset
from .host_cache import HostCache
from .limits import InFlight, Limits, Refusal, visitor_key
from .registry import LiveConnection, Registry
from .relay import UploadEnd, pump_request, relay_response
from .reports import PqReports
from .responses import failure_text, plain_text
from .store import EdgeStore
from .visitor_request import VisitorRequest, check_request

if TYPE_CHECKING:
    from ..cluster.peers import ClusterPeers

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

#: Where a request goes: a connection of this edge, or a peer edge's (docs/cluster.md).
Route = LiveConnection | PeerRoute
#: Requests a relay may send to a second edge when the first failed before the response head
#: (and they have no body: one streamed to the first edge cannot be sent again).
#: WebSocket close code for a message larger than one tunnel frame (RFC 6455, 7.4.1).
MESSAGE_TOO_BIG = int(CloseReason.MESSAGE_TOO_BIG)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class EdgeApp:
    """Routes each visitor request by host to a live tunnel connection and relays it."""

    def __init__(
        self,
        store: EdgeStore,
        registry: Registry,
        observer: Observer = NO_OBSERVER,
        reports: PqReports | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.hosts = HostCache(store.by_hostname)
        self.registry = registry
        self.observer = observer
        self.reports = reports if reports is not None else PqReports(store)
        self.in_flight = InFlight(limits if limits is not None else Limits())
        #: The cluster's relay (``cluster:`` configured): where a request for a tunnel with no
        #: connection here goes instead of a 502.
        self.peers: ClusterPeers | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        request = check_request(scope)
        if isinstance(request, Refusal):
            await _refuse(scope, send, request)
            return
        host = request.host
        record = self.hosts.lookup(host) if host else None
        if record is None:
            await self._own_pages(scope, receive, send, host)
            return
        live = self.registry.pick(record.id)
        if live is None and self.peers is not None:
            await self._relay(scope, receive, send, record.id, record.name, request)
            return
        if live is None:
            request_id = _request_id()
            logger.warning(
                "request %s: tunnel %s for %s has no live connection", request_id, record.name, host
            )
            text = (
                "This address has no live connection to its service right now; try again "
                f"shortly (request id {request_id})."
            )
            await _refuse(scope, send, Refusal(502, text))
            return
        async with self.in_flight.slot(visitor_key(scope.get("client")), record.id) as refusal:
            if refusal is not None:
                await _refuse(scope, send, refusal)
            elif scope["type"] == "websocket":
                await self._proxy_websocket(scope, receive, send, live, request)
            else:
                await self._proxy_http(scope, receive, send, live, request)

    # ------------------------------------------------------------------ relaying (hop 2)

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        tunnel_id: str,
        tunnel_name: str,
        request: VisitorRequest,
    ) -> None:
        """Through the best peer edge holding a connection of the tunnel; an idempotent
        request without a body that fails there before its head is tried at one more edge."""
        assert self.peers is not None
        async with self.in_flight.slot(visitor_key(scope.get("client")), tunnel_id) as refusal:
            if refusal is not None:
                await _refuse(scope, send, refusal)
                return
            retriable = (
                scope["type"] == "http" and request.bodyless and scope.get("method") in IDEMPOTENT
            )
            attempts = 0
            for peer in await self.peers.candidates(tunnel_id):
                route = await self.peers.route(peer, tunnel_id, tunnel_name)
                if route is None:
                    continue
                if scope["type"] == "websocket":
                    await self._proxy_websocket(scope, receive, send, route, request)
                    return
                retry = retriable and attempts == 0
                if await self._proxy_http(scope, receive, send, route, request, retry, attempts):
                    return
                attempts += 1
        request_id = _request_id()
        logger.warning(
            "request %s: tunnel %s has no live connection at this edge or a reachable peer",
            request_id,
            tunnel_name,
        )
        text = (
            "This address has no live connection to its service right now; try again "
            f"shortly (request id {request_id})."
        )
        await _refuse(scope, send, Refusal(502, text))

    # ------------------------------------------------------------------ proxying

    def _head(
        self, scope: Scope, live: Route, request: VisitorRequest, request_id: str
    ) -> dict[str, Any]:
        facts = connection_facts(scope)
        visitor = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        headers = [[k, v] for k, v in forwardable(visitor, drop=EDGE_REPLACES)]
        client = scope.get("client") or ("", 0)
        server = scope.get("server") or ("", 0)
        proto = "https" if scope.get("scheme") in ("https", "wss") else "http"
        host = f"[{request.host}]" if ":" in request.host else request.host
        headers.append(["host", host])
        headers += [
            [k, v] for k, v in forwarding_headers(str(client[0]), request.host, proto, server[1])
        ]
        relayed = live.head_fields() if isinstance(live, PeerRoute) else {}
        return {
            **relayed,
            "method": scope.get("method", "GET"),
            "path": request.path,
            "headers": headers,
            "websocket": scope["type"] == "websocket",
            "subprotocols": scope.get("subprotocols", []),
            "request_id": request_id,
            "hops": [
                {
                    "hop": "visitor-edge",
                    "transport": facts.transport,
                    "http_version": facts.http_version,
                    "group": facts.group,
                    "post_quantum": facts.post_quantum,
                    "signature_scheme": facts.signature_scheme,
                    "post_quantum_auth": facts.post_quantum_auth,
                },
                *(live.hops() if isinstance(live, PeerRoute) else [connector_hop(live)]),
            ],
        }

    async def _proxy_http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        live: Route,
        request: VisitorRequest,
        retry: bool = False,
        attempt: int = 0,
    ) -> bool:
        """Proxy one request; False only when ``retry`` is allowed and the request failed
        before its response head in a way another edge may not (nothing was answered)."""
        started = time.monotonic()
        request_id = _request_id()
        try:
            channel = live.connection.open_channel()
        except StreamReset as exc:
            logger.warning("request %s: tunnel %s: %s", request_id, live.tunnel_name, exc)
            if retry:
                return False
            await plain_text(send, 502, failure_text(502, request_id))
            return True
        live.requests += 1
        live.in_flight += 1
        if attempt == 0:
            self.observer.request_started(live.tunnel_id)
        idle = self.in_flight.limits.body_idle_timeout
        upload = asyncio.ensure_future(
            pump_request(_counted(receive, self.observer), channel, request.content_length, idle)
        )
        status = 502
        response_started = False
        answered = True
        try:
            await channel.send_json(FrameType.HEADERS, self._head(scope, live, request, request_id))
            if request.bodyless:
                # End the stream now, in the same write as the head rather than one more (the
                # upload task, which runs later, then finds it ended and does nothing).
                await channel.end()
            head = await channel.read_json(FrameType.HEADERS)
            status = _status(head)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": _response_headers(head.get("headers", [])),
                }
            )
            response_started = True
            if not await relay_response(channel, _counting(send, self.observer), idle):
                logger.info(
                    "request %s: tunnel %s: response body idle for %.0fs, cancelled",
                    request_id,
                    live.tunnel_name,
                    idle,
                )
        except (StreamReset, ProtocolError) as exc:
            if isinstance(live, PeerRoute) and not upload.done():
                live.failed()  # the relay's fault, not a visitor that went away
            if not response_started and retry and _retriable(exc, upload):
                logger.info(
                    "request %s: tunnel %s: relay failed before the head (%s); trying another edge",
                    request_id,
                    live.tunnel_name,
                    exc,
                )
                answered = False
            elif not response_started:
                status, text = _failure(exc, upload, request_id)
                logger.warning(
                    "request %s: tunnel %s: %s %s failed (%d): %s",
                    request_id,
                    live.tunnel_name,
                    scope.get("method", "GET"),
                    request.path[:200],
                    status,
                    exc,
                )
                await plain_text(send, status, text)
            else:
                # A started response cannot change its status. Returning mid-body makes the
                # server abort the visitor's response (HTTP/3: RESET_STREAM; HTTP/1.1: the
                # connection closes), so a cut body is never taken for a complete one.
                logger.warning(
                    "request %s: tunnel %s: response aborted after the head: %s",
                    request_id,
                    live.tunnel_name,
                    exc,
                )
        finally:
            live.in_flight -= 1
            upload.cancel()
            live.connection.forget(channel)
            if answered:
                self.observer.request_done(live.tunnel_id, status, time.monotonic() - started)
        return answered

    async def _proxy_websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        live: Route,
        request: VisitorRequest,
    ) -> None:
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        request_id = _request_id()
        try:
            channel = live.connection.open_channel()
        except StreamReset as exc:
            logger.info("request %s: websocket via %s: %s", request_id, live.tunnel_name, exc)
            await send({"type": "websocket.close", "code": 1011})
            return
        live.requests += 1
        try:
            await channel.send_json(FrameType.HEADERS, self._head(scope, live, request, request_id))
            head = await channel.read_json(FrameType.HEADERS)
            status = _status(head)
        except (StreamReset, ProtocolError) as exc:
            logger.info(
                "request %s: websocket through tunnel %s refused: %s",
                request_id,
                live.tunnel_name,
                exc,
            )
            await send({"type": "websocket.close", "code": 1011})
            live.connection.forget(channel)
            return
        if status != 101:
            await send({"type": "websocket.close", "code": 1008})
            channel.reset()
            live.connection.forget(channel)
            return
        await send({"type": "websocket.accept", "subprotocol": head.get("subprotocol")})

        async def visitor_to_origin() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    text = message.get("text")
                    kind = FrameType.WS_TEXT if text is not None else FrameType.WS_BINARY
                    payload = text.encode() if text is not None else message.get("bytes") or b""
                    if len(payload) > MAX_FRAME:
                        # One message is one tunnel frame; the connector closes an origin's
                        # oversized message the same way (1009, "message too big").
                        await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG})
                        await channel.send_json(
                            FrameType.WS_CLOSE, {"code": MESSAGE_TOO_BIG}, end=True
                        )
                        return
                    await channel.send(kind, payload)
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
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    logger.info(
                        "request %s: websocket via %s ended: %s",
                        request_id,
                        live.tunnel_name,
                        task.exception(),
                    )
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


def connector_hop(live: LiveConnection) -> dict[str, Any]:
    """The ``edge-connector`` hop entry, for a request this edge sends down one of its own
    connections (directly, or relayed from a peer edge)."""
    return {
        "hop": "edge-connector",
        "transport": live.connection.transport_name,
        "group": live.group,
        "post_quantum": live.post_quantum,
        **auth_fields(live.connection),  # the edge's view of its own handshake
    }


def _retriable(exc: Exception, upload: asyncio.Future[UploadEnd]) -> bool:
    """Whether a relayed request that failed before its head may go to another edge: the
    link or the peer failed (no HTTP status, or the peer's "no connection here"), not the
    origin, and the visitor is still there."""
    if upload.done():
        return False
    code = exc.code if isinstance(exc, StreamReset) else None
    return not (isinstance(code, int) and 400 <= code < 600) or code == NO_CONNECTION_STATUS


def _request_id() -> str:
    """A short random id a visitor can quote and the edge's log line carries."""
    return secrets.token_hex(6)


def _status(head: dict[str, Any]) -> int:
    """The response status a connector's head carries; ProtocolError if it is not one."""
    status = head.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ProtocolError(f"bad status in the response head: {status!r}"[:200])
    return status


def _failure(exc: Exception, upload: asyncio.Future[UploadEnd], request_id: str) -> tuple[int, str]:
    """The status and text a visitor gets for a request that failed before its response head:
    its own body's fault (idle, or not its declared length), or the tunnel's, whose cause is
    logged and never shown."""
    if upload.done() and not upload.cancelled() and upload.exception() is None:
        end = upload.result()
        if end is UploadEnd.IDLE:
            return 408, failure_text(408, request_id)
        if end is UploadEnd.LENGTH:
            return 400, "Bad request: the body does not match its Content-Length."
    code = exc.code if isinstance(exc, StreamReset) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    return status, failure_text(status, request_id)


def _response_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """The origin's response headers as the visitor gets them (:data:`ORIGIN_ONLY` and
    hop-by-hop ones dropped); a pair that is not two latin-1 strings is dropped too."""
    pairs = [(str(k), str(v)) for k, v in headers if isinstance(k, str) and isinstance(v, str)]
    out = []
    for k, v in forwardable(pairs, drop=ORIGIN_ONLY):
        try:
            out.append((k.encode("latin-1"), v.encode("latin-1")))
        except UnicodeEncodeError:
            logger.info("dropped response header %r: not latin-1", k[:100])
    return out


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    """Answer with the refusal's status and text (a WebSocket is closed before it opens, which
    the server turns into a 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    extra = [(b"retry-after", b"1")] if refusal.status in (429, 503) else []
    await plain_text(send, refusal.status, refusal.text, extra)
