"""The benchmarks' own tiny ASGI app: a fixed small response, a large download, an upload sink.

Served by both hypercorn-pq and stock hypercorn (``bench.http3_serving``, ``bench.tcp_serving``)
as ``bench.asgi_app:app`` (run from the repository root), so that the servers, not the app, are
what is compared. The app does as little as it can: ``/bytes/N`` repeats one preallocated
chunk, ``/upload`` only counts what arrives.

- any other path: 29 bytes of text;
- ``GET /group``: the key-exchange group hypercorn-pq put in the scope (``extensions.pq_quic``),
  ``none`` from stock hypercorn: what the benchmarks' probes check the server negotiated;
- ``GET /bytes/N``: N bytes, sent in 64 KiB pieces (what Starlette's streaming and file responses
  use), with a content-length;
- ``POST`` or ``PUT /upload``: reads the whole body, answers with its length in bytes.
"""

from __future__ import annotations

from pq_quic_plugin.asgi.types import Receive, Scope, Send, lifespan

BODY = b"hello from the benchmark app\n"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
CHUNK = bytes(64 * 1024)
MAX_DOWNLOAD = 1 << 31


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        path = scope["path"]
        if path.startswith("/bytes/"):
            await _download(path, send)
        elif path == "/upload" and scope["method"] in ("POST", "PUT"):
            await _upload(receive, send)
        elif path == "/group":
            group = scope.get("extensions", {}).get("pq_quic", {}).get("group")
            await _text(send, 200, str(group or "none").encode())
        else:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": BODY})


async def _download(path: str, send: Send) -> None:
    try:
        size = int(path.removeprefix("/bytes/"))
    except ValueError:
        size = -1
    if not 0 <= size <= MAX_DOWNLOAD:
        await _text(send, 400, b"want /bytes/N with 0 <= N <= 2**31\n")
        return
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % size)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    view = memoryview(CHUNK)
    while size > len(CHUNK):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        size -= len(CHUNK)
    await send({"type": "http.response.body", "body": bytes(view[:size])})


async def _upload(receive: Receive, send: Send) -> None:
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: nobody to answer
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await _text(send, 200, b"%d\n" % received)


async def _text(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
