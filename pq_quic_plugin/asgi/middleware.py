"""``PostQuantumMiddleware``: label and enforce the key exchange a request arrived over.

Pure ASGI, in the style of Starlette's small middlewares but without importing Starlette, so it
wraps any ASGI application. It reads the facts hypercorn-pq puts in
``scope["extensions"]["pq_quic"]`` (see :mod:`pq_quic_plugin.asgi.scope`; read them
yourself with
:func:`connection_facts`), optionally adds a response header naming the group, and with
``require=True`` refuses requests that did not arrive over post-quantum key exchange (on every
hop, behind pq-tunnel) without ever calling the application for them.

hypercorn-pq reports the group on both of its listeners, QUIC and TLS over TCP, and under
``--pq require`` refuses classical handshakes on both before any request exists; what still
reaches this middleware there is plain HTTP (an ``--insecure-bind``). Other servers (stock
hypercorn, uvicorn: Python's ``ssl``) cannot report the group over TCP at all.

Status codes chosen for refusals (``require=True``):

- **Group unknown on TCP (plain HTTP, a TLS listener that cannot report its group), or a
  server that reports nothing: 403 Forbidden**, an HTML page explaining what to do,
  ``Alt-Svc: h3=":PORT"; ma=3600`` and ``Cache-Control: no-store``.
  Not 421 Misdirected Request: Chromium answers a 421 by silently re-sending the request with
  alternative services *disabled* (so never over HTTP/3) and only processes ``Alt-Svc`` on the
  second 421, so 421 costs a round trip and steers away from the very protocol we want. Not 426
  Upgrade Required: it MUST carry an ``Upgrade`` header, which has no token for HTTP/3 and is a
  connection-specific header that HTTP/2 forbids. 403 is rendered by every browser, is never
  retried automatically, and the ``Alt-Svc`` it carries makes the browser's next request (a
  reload) go over HTTP/3.
- **A classical group (over QUIC, or over TCP from a server that reports it), or a classical
  tunnel hop: 403 Forbidden** naming the group negotiated: retrying elsewhere does not help,
  the client itself has to offer X25519MLKEM768.
- **A tunnel hop list (``pq-tunnel-hops``) that is not believed** (from an address outside
  ``trust_hops_from``, repeated or malformed): **403 Forbidden** saying so and naming the
  setting; the hops before this server cannot be confirmed, so the request is not judged on
  the last hop alone.
- **WebSocket**: refused before ``websocket.accept``; with the ``websocket.http.response``
  extension a 403 denial response, otherwise ``websocket.close`` with code 1008 (policy
  violation), which servers turn into an HTTP 403 on the handshake.

Request bodies of refused requests are drained, but only up to ``DRAIN_LIMIT`` bytes (256 KiB,
as Go's net/http does): a small form post is read and discarded so the connection closes (or is
reused) cleanly, while a large upload is not read any further, since reading an upload nobody wants
would cost bandwidth and time. If the limit is reached, an HTTP/1.x refusal also carries
``Connection: close``. A client that disconnects while its body is being drained gets no answer.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterable

from .hop_trust import LOOPBACK, TrustedPeers, take_hops
from .scope import ConnectionFacts, connection_facts
from .types import HOPS_HEADER, ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HOPS_HEADER",
    "ConnectionFacts",
    "PostQuantumMiddleware",
    "connection_facts",
    "header_value",
]

logger = logging.getLogger("pq_quic_plugin.asgi")

#: At most one warning per this many seconds about ignored hop lists (under ``prefer``).
WARN_EVERY = 60.0
#: How much of a refused request's body is read and discarded (see the module docstring).
DRAIN_LIMIT = 256 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def header_value(facts: ConnectionFacts) -> str:
    """The ``pq-key-exchange`` value: ``X25519MLKEM768; post-quantum``, ``x25519; classical``,
    ``unknown; tcp`` and, behind the tunnel, ``; all-hops=post-quantum`` (or ``classical``)."""
    if facts.group:
        value = f"{facts.group}; {'post-quantum' if facts.post_quantum else 'classical'}"
    else:
        value = f"unknown; {facts.transport}"
    if facts.hops:
        value += "; all-hops=" + ("post-quantum" if facts.all_hops_post_quantum else "classical")
    return _printable(value)


class PostQuantumMiddleware:
    """Label every HTTP response with the key exchange used and, optionally, refuse anything
    that was not post-quantum end to end.

    :param app: any ASGI application.
    :param require: refuse requests (and WebSockets) not over post-quantum key exchange; when
        the scope lists tunnel hops, every hop must be post-quantum too. The app is never
        called for a refused request. Status codes: see the module docstring (403 throughout,
        with ``Alt-Svc`` and an explanation page when the group is unknown on TCP).
    :param header: add ``header_name: <group>; post-quantum|classical`` (or ``unknown;
        <transport>``) to every HTTP response, refusals included.
    :param header_name: the response header's name.
    :param alt_svc: the ``Alt-Svc`` value sent with the TCP refusal; default
        ``h3=":PORT"; ma=3600`` with the port the request arrived on (set it when a proxy or NAT
        changes the public port).
    :param trust_hops_from: client addresses or networks (pq-tunnel connectors) whose
        ``pq-tunnel-hops`` header is turned into ``scope["extensions"]["pq_quic"]["hops"]``
        (IPv4-mapped IPv6 addresses count as their IPv4 address). A hop list from anyone else
        (or repeated, or malformed) never reaches the app: with ``require`` the request is
        refused with a 403 that says to set this (failing open would judge a tunnelled
        request on its last hop alone); without, the header is dropped with a warning, at
        most one a minute. Hops the server already put in the scope always win.
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
        if not _TOKEN.fullmatch(header_name):
            raise ValueError(f"not a valid header name: {header_name!r}")
        if alt_svc is not None and _UNPRINTABLE.search(alt_svc):
            raise ValueError(f"Alt-Svc value must be printable ASCII: {alt_svc!r}")
        self.app = app
        self.require = require
        self.header = header
        self.header_name = header_name.lower().encode("ascii")
        self.alt_svc = alt_svc
        self.trusted = TrustedPeers(trust_hops_from)
        self._last_warning = -WARN_EVERY
        self._suppressed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):  # lifespan and anything else
            await self.app(scope, receive, send)
            return
        verdict = take_hops(scope, self.trusted)
        scope = verdict.scope
        facts = connection_facts(scope)
        if verdict.distrusted is not None:
            if self.require:
                await self._refuse(scope, receive, send, facts, _distrusted(verdict.distrusted))
                return
            self._warn_distrusted(verdict.distrusted)
        if self.require and not facts.all_hops_post_quantum:
            await self._refuse(scope, receive, send, facts)
            return
        if self.header and scope["type"] == "http":
            send = self._labelled(send, facts)
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------ hops

    def _warn_distrusted(self, reason: str) -> None:
        """One line per ignored hop list, at most one a minute (a flood of forged headers must
        not flood the log), saying how many were ignored in between."""
        now = time.monotonic()
        if now - self._last_warning < WARN_EVERY:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last warning)" if self._suppressed else ""
        self._last_warning, self._suppressed = now, 0
        logger.warning(
            "ignored %s header %s%s; set trust_hops_from to the connector's address "
            "(hypercorn-pq: --pq-trust-hops-from)",
            HOPS_HEADER,
            _printable(reason)[:200],
            more,
        )

    # ------------------------------------------------------------------ header

    def _labelled(self, send: Send, facts: ConnectionFacts) -> Send:
        name = self.header_name
        value = header_value(facts).encode("ascii")

        async def labelled_send(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if bytes(k).lower() != name
                ]
                message = {**message, "headers": [*headers, (name, value)]}
            await send(message)

        return labelled_send

    # ------------------------------------------------------------------ refusal

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        facts: ConnectionFacts,
        reason: str | None = None,
    ) -> None:
        """Answer 403 without calling the app; ``reason`` replaces the sentence naming the
        classical hop (a hop list that could not be believed has no hop to name)."""
        hops = facts.classical_hops
        logger.info(
            "refused %s from %s: not post-quantum (transport=%s http=%s group=%s%s)",
            scope["type"],
            _client(scope),
            _printable(facts.transport),
            _printable(facts.http_version),
            _printable(str(facts.group)),
            f" classical hops={[_printable(str(h.get('hop')))[:40] for h in hops[:8]]}"
            if hops
            else f": {_printable(reason)[:300]}"
            if reason
            else "",
        )
        why = reason or _reason(facts)
        extra: list[tuple[bytes, bytes]] = []
        if self.header:
            extra.append((self.header_name, header_value(facts).encode("ascii")))
        if scope["type"] == "websocket":
            if "websocket.http.response" in (scope.get("extensions") or {}):
                body = (why + "\n").encode()
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": 403,
                        "headers": [*_body_headers(body, b"text/plain; charset=utf-8"), *extra],
                    }
                )
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        drained = await _drain(receive, DRAIN_LIMIT)
        if drained is None:
            return  # the client went away
        if not drained and facts.http_version in ("1.0", "1.1"):
            extra.append((b"connection", b"close"))  # HTTP/2 and /3 forbid this header
        if reason is not None or facts.hops or facts.transport == "quic" or facts.group:
            title = "Post-quantum key exchange required"
            page = _page(title, f"<p>{html.escape(why)}</p>{_ADVICE}")
        else:
            alt_svc = self.alt_svc or f'h3=":{_port(scope)}"; ma=3600'
            extra.append((b"alt-svc", alt_svc.encode("ascii")))
            title = "Post-quantum connection required"
            page = _page(title, _tcp_explanation(facts, alt_svc))
        body = page.encode()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [*_body_headers(body, b"text/html; charset=utf-8"), *extra],
                }
            )
            await send(
                {
                    "type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else body,
                }
            )
        except OSError as exc:  # e.g. the connection closed under an undrained upload
            logger.debug("refusal to %s not delivered: %s", _client(scope), exc)


# ---------------------------------------------------------------------- helpers


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub("?", text)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    if isinstance(client, (list, tuple)) and client:
        host = _printable(str(client[0]))
        if len(client) > 1 and client[1] is not None:
            return f"[{host}]:{client[1]}" if ":" in host else f"{host}:{client[1]}"
        return host
    return "unknown"


def _port(scope: Scope) -> int:
    """The port the request arrived on: the server's socket, else the Host header, else 443."""
    server = scope.get("server")
    if isinstance(server, (list, tuple)) and len(server) > 1 and isinstance(server[1], int):
        return server[1]
    for key, value in scope.get("headers") or ():
        if bytes(key).lower() in (b"host", b":authority"):
            match = re.search(rb":(\d{1,5})$", bytes(value))
            if match:
                return int(match.group(1))
    return 443


async def _drain(receive: Receive, limit: int) -> bool | None:
    """Read and discard the request body: True when all of it was read, False when it is
    longer than ``limit`` (the rest stays unread), None when the client disconnected."""
    seen = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return None
        if message.get("type") != "http.request":
            continue
        seen += len(message.get("body") or b"")
        if not message.get("more_body", False):
            return True
        if seen >= limit:
            return False


def _body_headers(body: bytes, content_type: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),  # the answer depends on the connection, not the URL
    ]


def _distrusted(detail: str) -> str:
    """The refusal sentence for a hop list that was sent but not believed."""
    return (
        "This site requires post-quantum key exchange on every hop. The request carries a "
        f"pq-tunnel hop list ({HOPS_HEADER}) that this server does not believe "
        f"({_printable(detail)[:200]}), so the hops before it cannot be confirmed "
        "post-quantum. If this server runs behind pq-tunnel, its operator should add the "
        "connector's address to trust_hops_from (hypercorn-pq: --pq-trust-hops-from)."
    )


def _reason(facts: ConnectionFacts) -> str:
    """One sentence naming what was not post-quantum."""
    hops = facts.classical_hops
    if hops:
        hop = hops[0]
        group = hop.get("group") or "an unknown group"
        return (
            f"This site requires post-quantum key exchange on every hop, but the "
            f"{hop.get('hop') or 'unnamed'} hop negotiated {group}, which is not "
            "post-quantum."
        )
    if facts.hops:
        return (
            f"This site requires post-quantum key exchange on every hop, but the "
            f"connection into this server negotiated {facts.group or 'an unknown group'} "
            f"over {facts.transport}, which is not post-quantum."
        )
    if facts.group:
        return (
            f"This site requires post-quantum key exchange. Your connection negotiated "
            f"{facts.group}, which is not post-quantum."
        )
    if facts.transport == "quic":
        return (
            "This site requires post-quantum key exchange. The key-exchange group of "
            "your HTTP/3 connection is unknown to this server, so it cannot be confirmed "
            "post-quantum."
        )
    if not facts.secure:
        return (
            "This site requires post-quantum key exchange (X25519MLKEM768). Your request "
            f"came over {facts.protocol} without TLS, which has no key exchange at all."
        )
    return (
        "This site requires post-quantum key exchange (X25519MLKEM768). Your request came "
        f"over {facts.protocol} on {facts.transport}, whose key-exchange group this server "
        "cannot report, so it cannot be confirmed post-quantum."
    )


_ADVICE = (
    "<p>Use a client that offers the hybrid key exchange <b>X25519MLKEM768</b>: current "
    "Chrome, Edge and Firefox do by default, over HTTPS (HTTP/1.1, HTTP/2) and HTTP/3.</p>"
)

_STYLE = (
    "body{font-family:system-ui,-apple-system,sans-serif;background:#f4f6fb;color:#1c2230;"
    "margin:0;line-height:1.5}main{max-width:40em;margin:3em auto;background:#fff;"
    "border-radius:14px;padding:1.5em 2.2em;box-shadow:0 6px 24px rgba(20,30,60,.08)}"
    "h1{font-size:1.4em;color:#b3261e}code{background:#eef1f7;padding:.1em .35em;"
    "border-radius:4px}li{margin:.3em 0}"
)


def _page(title: str, content: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{content}</main></body></html>\n"
    )


def _tcp_explanation(facts: ConnectionFacts, alt_svc: str) -> str:
    """The page for a TCP request whose group is unknown: plain HTTP, or TLS from a server that
    cannot report the group (Python's ``ssl``). HTTP/3 is where such a server can be
    post-quantum, hence the ``Alt-Svc`` it carries."""
    how = f"{facts.protocol} over TCP" + ("" if facts.secure else " without TLS")
    e = html.escape
    if facts.secure:
        why = "whose key exchange this server cannot report, so it cannot confirm it post-quantum"
        first = ""
    else:
        why = "which has no encryption at all"
        first = "<li>Use the site's <b>https://</b> address.</li>"
    return (
        "<p>This site answers only connections protected by the post-quantum hybrid key "
        f"exchange <b>X25519MLKEM768</b>. Your browser connected with {e(how)}, {why}.</p>"
        f"<p>What to do:</p><ul>{first}"
        "<li>Use a current browser with X25519MLKEM768, such as current Chrome, Edge or "
        "Firefox.</li>"
        '<li><a href="">Reload this page</a>. This answer tells your browser where this site\'s '
        f"HTTP/3 is (<code>Alt-Svc: {e(alt_svc)}</code>), where it can be post-quantum, so it "
        "switches by itself.</li>"
        "<li>If this page keeps coming back, HTTP/3 is blocked on the way: a firewall, VPN or "
        "proxy that lets only TCP through (HTTP/3 runs over UDP), or HTTP/3 switched off in "
        "the browser's settings.</li></ul>"
    )
