"""The benchmarks' own tiny ASGI app: a fixed small response, nothing else.

Served by both hypercorn-pq and stock hypercorn in ``bench.http3_serving`` as
``bench.asgi_app:app`` (run from the repository root), so that the servers, not the app, are
what is compared.
"""

from __future__ import annotations

from typing import Any

BODY = b"hello from the benchmark app\n"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
