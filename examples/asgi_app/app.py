"""The example app: shows the visitor which key exchange protected their connection.

Run from this directory: ``hypercorn-pq --pq --certfile cert.pem --keyfile key.pem app:app``.
Behind pq-tunnel it also shows every hop. ``PQ_DEMO_REQUIRE=1`` turns on the middleware's
require mode (classical visitors get an explanation instead of the page).
"""

from __future__ import annotations

import html
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pq_quic_plugin.asgi import PostQuantumMiddleware, connection_facts

STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;background:#f4f6fb;color:#1c2230;margin:0}
main{max-width:46em;margin:3em auto;background:#fff;border-radius:14px;padding:2em 2.5em;
box-shadow:0 6px 24px rgba(20,30,60,.08)}
h1{font-size:1.4em;margin-top:0} .verdict{font-size:2em;font-weight:700;margin:.4em 0}
.pq{color:#0a7d32} .classic{color:#b3261e} table{border-collapse:collapse;width:100%}
td,th{padding:.45em .6em;border-bottom:1px solid #e3e6ef;text-align:left} th{color:#556}
code{background:#eef1f7;padding:.1em .35em;border-radius:4px} small{color:#667}
"""


def _verdict(facts) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    if facts.hops:
        ok = facts.all_hops_post_quantum
        return ("post-quantum on every hop", "pq") if ok else ("not post-quantum", "classic")
    if facts.post_quantum:
        return "post-quantum", "pq"
    if facts.transport == "tcp":
        return "not post-quantum (group unknown on TCP)", "classic"
    return "not post-quantum", "classic"


async def homepage(request: Request) -> HTMLResponse:
    facts = connection_facts(request.scope)
    verdict, css = _verdict(facts)
    e = html.escape
    hops = ""
    if facts.hops:
        rows = "".join(
            f"<tr><td>{e(str(h.get('hop')))}</td><td>{e(str(h.get('transport')))}</td>"
            f"<td><code>{e(str(h.get('group')))}</code></td>"
            f"<td class={'pq' if h.get('post_quantum') else 'classic'}>"
            f"{'post-quantum' if h.get('post_quantum') else 'not post-quantum'}</td></tr>"
            for h in facts.hops
        )
        rows += (f"<tr><td>tunnel-origin (this server)</td><td>{e(facts.transport)}</td>"
                 f"<td><code>{e(str(facts.group))}</code></td><td class="
                 f"{'pq' if facts.post_quantum else 'classic'}>"
                 f"{'post-quantum' if facts.post_quantum else 'not post-quantum'}</td></tr>")
        hops = ("<h2>Every hop</h2><table><tr><th>hop</th><th>transport</th><th>group</th>"
                f"<th></th></tr>{rows}</table>")
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>Your connection: {e(verdict)}</title><style>{STYLE}</style></head><body><main>
<h1>How was your connection protected?</h1>
<div class="verdict {css}" id=verdict>{e(verdict)}</div>
<table>
<tr><th>Protocol</th><td id=protocol>{e(facts.protocol)}</td></tr>
<tr><th>Key exchange group</th><td id=group><code>{e(facts.group or 'unknown')}</code>
{f'<small>(0x{facts.codepoint:04X})</small>' if facts.codepoint else ''}</td></tr>
<tr><th>TLS</th><td>{e(facts.tls_version or 'none')} {e(facts.cipher_suite_name or '')}</td></tr>
</table>{hops}
<p><small>{e(facts.note or '')}</small></p>
<p><small>Served by pq-quic-plugin's example app. JSON: <code>/api/connection</code>.</small></p>
</main></body></html>"""
    return HTMLResponse(page)


async def api_connection(request: Request) -> JSONResponse:
    return JSONResponse(connection_facts(request.scope).as_dict())


async def pid(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


async def echo(request: Request) -> StreamingResponse:
    return StreamingResponse(request.stream(), media_type="application/octet-stream")


async def some_bytes(request: Request) -> Response:
    total = int(request.path_params["n"])
    chunk = bytes(range(256)) * 256  # 64 KiB, deterministic content for checksums

    async def body():  # type: ignore[no-untyped-def]
        left = total
        while left > 0:
            piece = chunk[: min(left, len(chunk))]
            left -= len(piece)
            yield piece

    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={"content-length": str(total)})


async def headers(request: Request) -> JSONResponse:
    return JSONResponse({k: v for k, v in request.headers.items()})


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
    Route("/echo", echo, methods=["POST", "PUT"]),
    Route("/bytes/{n:int}", some_bytes),
    Route("/headers", headers),
    WebSocketRoute("/ws", ws_echo),
]

app = PostQuantumMiddleware(
    Starlette(routes=routes),
    require=os.environ.get("PQ_DEMO_REQUIRE") == "1",
    header=True,
)
