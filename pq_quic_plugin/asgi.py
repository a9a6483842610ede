"""``PostQuantumMiddleware``: show and enforce the key exchange a request arrived over.

Pure ASGI (in the style of Starlette's small middlewares), so it wraps any ASGI app. It reads
the facts hypercorn-pq puts in ``scope["extensions"]["pq_quic"]`` (see
:mod:`pq_quic_plugin.scope`), optionally adds a response header naming the group, and with
``require=True`` refuses requests that did not arrive over post-quantum key exchange — over
every hop, behind the tunnel — without ever calling the app for them.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .scope import ConnectionFacts, connection_facts

__all__ = ["PostQuantumMiddleware", "connection_facts", "ConnectionFacts", "HOPS_HEADER"]

logger = logging.getLogger("pq_quic_plugin.asgi")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Set by the tunnel's connector; the edge strips it from visitors' requests.
HOPS_HEADER = "pq-tunnel-hops"
LOOPBACK = ("127.0.0.1", "::1")


class PostQuantumMiddleware:
    """Expose, label and (optionally) enforce post-quantum key exchange.

    ``require``: refuse anything not post-quantum end to end. Over TCP (HTTP/1.1, HTTP/2, never
    post-quantum here) the answer is **421 Misdirected Request** with an explanation page and an
    ``Alt-Svc`` header: 421 tells a browser this connection cannot serve the request and that a
    retry on another connection may work, and Alt-Svc names the HTTP/3 endpoint to retry on.
    Over classical QUIC, or behind a tunnel hop that was classical, the answer is **403**
    naming the group used: retrying elsewhere would not help, the client must change.

    ``header``: add ``pq-key-exchange: X25519MLKEM768; post-quantum`` (or ``x25519; classical``,
    ``unknown; tcp``) to every HTTP response.

    ``trust_hops_from``: addresses whose ``pq-tunnel-hops`` header is believed (the connector's);
    the header from anyone else is dropped, so it cannot be spoofed by talking to the origin
    directly.
    """

    def __init__(
        self,
        app: ASGIApp,
        require: bool = False,
        header: bool = True,
        header_name: str = "pq-key-exchange",
        alt_svc: str | None = None,
        trust_hops_from: Iterable[str] = LOOPBACK,
    ) -> None:
        self.app = app
        self.require = require
        self.header = header
        self.header_name = header_name.lower().encode()
        self.alt_svc = alt_svc
        self.trusted = {ipaddress.ip_address(a) for a in trust_hops_from}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self._take_hops(scope)
        facts = connection_facts(scope)
        if self.require and not facts.all_hops_post_quantum:
            await self._refuse(scope, receive, send, facts)
            return
        if self.header and scope["type"] == "http":
            send = self._labelled(send, facts)
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------ hops

    def _take_hops(self, scope: Scope) -> None:
        """Move the connector's hop list from its header into the scope (if we trust it)."""
        headers = scope.get("headers") or []
        raw = [v for k, v in headers if k.lower() == HOPS_HEADER.encode()]
        if not raw:
            return
        scope["headers"] = [(k, v) for k, v in headers if k.lower() != HOPS_HEADER.encode()]
        client = (scope.get("client") or ("",))[0]
        try:
            trusted = ipaddress.ip_address(client) in self.trusted
        except ValueError:
            trusted = False
        if not trusted:
            logger.warning("ignored %s header from untrusted client %s", HOPS_HEADER, client)
            return
        try:
            hops = json.loads(raw[-1])
        except ValueError:
            logger.warning("ignored malformed %s header from %s", HOPS_HEADER, client)
            return
        if not isinstance(hops, list):
            return
        pq = scope.setdefault("extensions", {}).setdefault("pq_quic", {})
        pq["hops"] = [h for h in hops if isinstance(h, dict)]

    # ------------------------------------------------------------------ header

    def _labelled(self, send: Send, facts: ConnectionFacts) -> Send:
        if facts.group:
            kind = "post-quantum" if facts.post_quantum else "classical"
            value = f"{facts.group}; {kind}"
        else:
            value = f"unknown; {facts.transport}"
        if facts.hops:
            value += "; all-hops=" + ("post-quantum" if facts.all_hops_post_quantum else "no")
        encoded = value.encode()

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (self.header_name, encoded)]
            await send(message)

        return wrapped

    # ------------------------------------------------------------------ refusal

    async def _refuse(self, scope: Scope, receive: Receive, send: Send,
                      facts: ConnectionFacts) -> None:
        client = (scope.get("client") or ("?",))[0]
        classical_hops = [h for h in facts.hops if not h.get("post_quantum")]
        logger.warning(
            "refused %s %s from %s: transport=%s group=%s%s (post-quantum required)",
            scope["type"], scope.get("path"), client, facts.transport, facts.group,
            f" classical hops={[h.get('hop') for h in classical_hops]}" if classical_hops else "",
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if facts.transport == "tcp" or (facts.transport == "unknown" and not facts.group):
            await self._explain_tcp(scope, send)
            return
        if facts.post_quantum and classical_hops:
            hop = classical_hops[0]
            text = (f"This site requires post-quantum key exchange on every hop, but the "
                    f"{hop.get('hop')} hop negotiated {hop.get('group') or 'an unknown group'}, "
                    "which is not post-quantum.")
        else:
            text = (f"This site requires post-quantum key exchange. Your connection negotiated "
                    f"{facts.group or 'an unknown group'}, which is not post-quantum. Use a "
                    "client that supports X25519MLKEM768.")
        await _respond(send, 403, text.encode() + b"\n", b"text/plain; charset=utf-8")

    async def _explain_tcp(self, scope: Scope, send: Send) -> None:
        server = scope.get("server") or ("", 443)
        alt_svc = self.alt_svc or f'h3=":{server[1]}"; ma=3600'
        body = f"""<!doctype html><html><head><meta charset=utf-8>
<title>Post-quantum connection required</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40em;margin:3em auto">
<h1>Post-quantum connection required</h1>
<p>This site only answers over HTTP/3 with post-quantum key exchange
(X25519MLKEM768). This request came over {html.escape(_protocol(scope))} on TCP, whose key
exchange is not post-quantum here.</p>
<p>Reload the page: browsers that support HTTP/3 (current Chrome, Edge, Firefox, Safari) switch
to it by themselves after this answer, which names the HTTP/3 endpoint
(<code>Alt-Svc: {html.escape(alt_svc)}</code>). If it keeps failing, UDP may be blocked on
your network.</p></body></html>
""".encode()
        await _respond(send, 421, body, b"text/html; charset=utf-8",
                       [(b"alt-svc", alt_svc.encode())])


def _protocol(scope: Scope) -> str:
    return {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2", "3": "HTTP/3"}.get(
        str(scope.get("http_version")), "HTTP"
    )


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()), *(extra or [])],
    })
    await send({"type": "http.response.body", "body": body})
