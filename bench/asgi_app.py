"""The benchmarks' own tiny ASGI app: a fixed small response, nothing else.

Served by both hypercorn-pq and stock hypercorn in ``bench.http3_serving`` as
``bench.asgi_app:app`` (run from the repository root), so that the servers, not the app, are
what is compared.
"""

from __future__ import annotations

from pq_quic_plugin.asgi.types import Receive, Scope, Send, lifespan

BODY = b"hello from the benchmark app\n"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
