"""The example app: shows visitors how their own connection was protected: the key exchange
(post-quantum or not) and, separately, the server's authentication (ML-DSA or classical).

Run from this directory (see README.md)::

    python -m pq_quic_plugin.devcert /tmp/pq-demo
    hypercorn-pq --pq --certfile /tmp/pq-demo/cert.pem --keyfile /tmp/pq-demo/key.pem app:app

Routes: ``/`` (HTML, rendered on the server), ``/api/connection`` (the same as JSON), ``/ws``
(WebSocket echo), ``/echo`` (POST: streams the body back), ``/bytes/{n}`` (streams n bytes),
``/pid`` (this worker's process id), ``/headers`` (the request headers as JSON).
Behind pq-tunnel the page also shows every hop. ``PQ_DEMO_REQUIRE=1`` turns on the middleware's
require mode: visitors without post-quantum key exchange get an explanation instead.
"""

from __future__ import annotations

import hashlib
import html
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from pq_quic_plugin.asgi.middleware import ConnectionFacts, PostQuantumMiddleware, connection_facts

#: /bytes/{n} serves at most this much (the tunnel tests move 100 MiB).
MAX_BYTES = 1 << 30
_CHUNK = bytes(range(256)) * 256  # 64 KiB of deterministic content, for checksums

STYLE = """
:root{--bg:#f4f6fb;--card:#fff;--fg:#1c2230;--muted:#5b6475;--line:#e3e6ef;--code:#eef1f7;
--ok:#0a7d32;--okbg:#e6f6ec;--bad:#b3261e;--badbg:#fdecea}
@media (prefers-color-scheme:dark){:root{--bg:#11141b;--card:#1a1e27;--fg:#e6e9f0;
--muted:#9aa3b5;--line:#2a303d;--code:#252b37;--ok:#5fd38a;--okbg:#15301f;--bad:#ff8a80;
--badbg:#3a1c1a}}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);
color:var(--fg);margin:0;line-height:1.5}
main{max-width:46em;margin:3em auto;background:var(--card);border-radius:16px;
padding:2em 2.5em;box-shadow:0 6px 24px rgba(20,30,60,.08)}
h1{font-size:1.25em;margin:0 0 .8em;color:var(--muted);font-weight:600}
h2{font-size:1.05em;margin:1.8em 0 .4em}
.verdict{font-size:2.2em;font-weight:750;padding:.35em .6em;border-radius:12px;
margin:0 0 .8em;letter-spacing:-.01em}
.verdict.long{font-size:1.6em}
.pq{color:var(--ok)} .classic{color:var(--bad)}
.verdict.pq{background:var(--okbg)} .verdict.classic{background:var(--badbg)}
table{border-collapse:collapse;width:100%}
td,th{padding:.5em .6em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:500;width:13em}
thead th{width:auto}
code{background:var(--code);padding:.1em .35em;border-radius:4px;font-size:.95em}
small,.note{color:var(--muted)} .note{font-size:.9em;margin-top:1.2em}
.label{color:var(--muted);font-size:.85em;text-transform:uppercase;letter-spacing:.06em;
margin:.4em 0 .2em}
.verdict.auth{font-size:1.4em}
"""


def _css(post_quantum: bool) -> str:
    return "pq" if post_quantum else "classic"


def _hop_table(facts: ConnectionFacts) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(str(h.get('hop') or '?'))}</td>"
        f"<td>{e(str(h.get('transport') or '?'))}</td>"
        f"<td><code>{e(str(h.get('group') or 'unknown'))}</code></td>"
        f"<td class={_css(h['post_quantum'])}>"
        f"{'post-quantum' if h['post_quantum'] else 'not post-quantum'}</td></tr>"
        for h in facts.hops
    )
    return (
        "<h2>Every hop</h2><table><thead><tr><th>hop</th><th>transport</th>"
        f"<th>key exchange</th><th>verdict</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render_page(facts: ConnectionFacts) -> str:
    """The whole HTML page for one visitor's connection (no JavaScript needed)."""
    e = html.escape
    verdict = facts.verdict
    if facts.hops and not facts.all_hops_post_quantum:
        verdict = "not post-quantum"  # which hop failed is in the table below
    css = _css(facts.all_hops_post_quantum) + (" long" if len(verdict) > 24 else "")
    codepoint = f" <small>(0x{facts.codepoint:04X})</small>" if facts.codepoint else ""
    tls = " ".join(x for x in (facts.tls_version, facts.cipher_suite_name) if x)
    if not tls:
        tls = "not reported" if facts.secure else "none (plain HTTP)"
    note = f"<p class=note>{e(facts.note)}</p>" if facts.note else ""
    auth = facts.auth_verdict
    auth_css = "pq" if facts.post_quantum_auth else "classic"
    scheme = facts.signature_scheme
    auth_cell = (
        f"{e(auth)}: <code>{e(scheme)}</code>"
        + (
            f" <small>(0x{facts.signature_scheme_codepoint:04X})</small>"
            if facts.signature_scheme_codepoint
            else ""
        )
        if scheme
        else "not reported by this server"
    )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<meta name=color-scheme content="light dark">
<title>Your connection: {e(verdict)}</title><style>{STYLE}</style></head>
<body><main>
<h1>How was your connection to this site protected?</h1>
<div class=label>Key exchange</div>
<div class="verdict {css}" id=verdict>{e(verdict)}</div>
<div class=label>Authentication</div>
<div class="verdict auth {auth_css}" id=auth-verdict>{e(auth)}</div>
<table>
<tr><th>Protocol</th><td id=protocol>{e(facts.protocol)}</td></tr>
<tr><th>Transport</th><td id=transport>{e(facts.transport)}</td></tr>
<tr><th>Key-exchange group</th><td id=group><code>{e(facts.group or "unknown")}</code>{codepoint}
</td></tr>
<tr><th>Authentication</th><td id=auth>{auth_cell}</td></tr>
<tr><th>TLS</th><td id=tls>{e(tls)}</td></tr>
</table>
{_hop_table(facts) if facts.hops else ""}
{note}
<p class=note>Post-quantum key exchange means the traffic would resist decryption by a future
quantum computer (hybrid ML-KEM, such as <code>X25519MLKEM768</code>); post-quantum
authentication means the server proved its identity with an ML-DSA signature on an all-ML-DSA
certificate chain, which such a computer could not forge (a classical ECDSA signature could be).
Under <code>hypercorn-pq --pq</code> both hold for HTTP/3 and for HTTP/1.1 and HTTP/2 over TCP
alike, whenever your browser offers them (authentication needs <code>--pq-certfile</code>).
JSON: <code>/api/connection</code>.</p>
</main></body></html>
"""


async def homepage(request: Request) -> HTMLResponse:
    return HTMLResponse(render_page(connection_facts(request.scope)))


async def api_connection(request: Request) -> JSONResponse:
    return JSONResponse(connection_facts(request.scope).as_dict())


async def pid(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


class Echo:
    """Streams the request body back chunk by chunk as it arrives (never holds all of it).

    Plain ASGI on purpose: ``StreamingResponse(request.stream())`` is wrong under servers that
    speak ASGI spec < 2.4 (hypercorn says 2.1), because Starlette then runs a disconnect
    listener that calls ``receive()`` concurrently and swallows body chunks.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if message["type"] != "http.request":
                continue
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream")],
                    }
                )
                started = True
            body, more = message.get("body", b""), bool(message.get("more_body", False))
            if body or not more:
                await send({"type": "http.response.body", "body": body, "more_body": more})
            if not more:
                return


async def digest(request: Request) -> JSONResponse:
    """SHA-256 and length of the request body, read as it streams in (uploads of any size)."""
    sha, size = hashlib.sha256(), 0
    async for chunk in request.stream():
        sha.update(chunk)
        size += len(chunk)
    return JSONResponse({"bytes": size, "sha256": sha.hexdigest()})


async def some_bytes(request: Request) -> Response:
    total = int(request.path_params["n"])
    if total > MAX_BYTES:
        return JSONResponse({"error": f"at most {MAX_BYTES} bytes"}, status_code=400)

    async def body() -> AsyncIterator[bytes]:
        left = total
        while left > 0:
            piece = _CHUNK[: min(left, len(_CHUNK))]
            left -= len(piece)
            yield piece

    return StreamingResponse(
        body(), media_type="application/octet-stream", headers={"content-length": str(total)}
    )


async def slow(request: Request) -> JSONResponse:
    """Answers after ``?seconds=N`` (at most 60): lets tests catch a request in flight."""
    import anyio  # not asyncio: hypercorn-pq also runs this app under its trio worker

    seconds = min(float(request.query_params.get("seconds", "2")), 60.0)
    await anyio.sleep(seconds)
    return JSONResponse({"slept": seconds, "pid": os.getpid()})


async def headers(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.headers.items()))


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


routes = [
    Route("/", homepage),
    Route("/api/connection", api_connection),
    Route("/pid", pid),
    Route("/echo", Echo(), methods=["POST", "PUT"]),
    Route("/bytes/{n:int}", some_bytes),
    Route("/sha256", digest, methods=["POST", "PUT"]),
    Route("/headers", headers),
    Route("/slow", slow),
    WebSocketRoute("/ws", ws_echo),
]


def require_from_env() -> bool:
    return os.environ.get("PQ_DEMO_REQUIRE", "").strip().lower() in ("1", "true", "yes")


app = PostQuantumMiddleware(Starlette(routes=routes), require=require_from_env(), header=True)
