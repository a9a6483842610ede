"""A tiny ASGI origin for the connector-to-origin tests (tests/test_tunnel_origin.py).

Routes:

* ``POST /echo``: streams the request body back as it arrives (the response starts before the
  upload ends, so neither side may buffer the whole body).
* ``GET /bytes/N``: N deterministic bytes (see :func:`pattern`), streamed in 64 KiB chunks.
* ``GET|POST /headers``: JSON with the method, path, query, HTTP version, client address and
  received headers (the path may carry a prefix: ``/base/headers``).
* ``POST /sha256``: reads the body as it arrives; JSON with its length and SHA-256.
* ``POST /stall``: does not read the body; answers after 5 s (tests upload backpressure).
* ``GET /slow?delay=S``: answers after S seconds (default 5).
* ``GET /status/N``: an empty response with status N.
* ``/ws``: WebSocket echo; accepts the first offered subprotocol; a text message ``close:CODE``
  makes the server close with that code.

Served by hypercorn (plain HTTP/1.1) or ``python -m pq_quic_plugin.hypercorn_binding --pq``
(HTTP/3 with post-quantum key exchange, plus TLS over TCP on the same port).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import anyio

from pq_quic_plugin.asgi.types import lifespan

CHUNK = 64 * 1024
_BLOCK = bytes(range(256)) * (CHUNK // 256)


def pattern(n: int) -> bytes:
    """The first ``n`` bytes ``/bytes/N`` sends (tests hash it incrementally instead)."""
    return (_BLOCK * (n // CHUNK + 1))[:n]


async def _start(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _body(send: Any, data: bytes, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def send_json(send: Any, data: object, *headers: tuple[bytes, bytes]) -> None:
    """A complete ``application/json`` response with its ``content-length`` (and ``headers``
    after them); the apps of this directory that answer with facts share it."""
    body = json.dumps(data).encode()
    length = str(len(body)).encode()
    await _start(
        send, 200, [(b"content-type", b"application/json"), (b"content-length", length), *headers]
    )
    await _body(send, body)


async def _echo(receive: Any, send: Any) -> None:
    await _start(send, 200, [(b"content-type", b"application/octet-stream")])
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
        await _body(send, message.get("body", b""), more)
        if not more:
            return


async def _bytes(send: Any, n: int) -> None:
    await _start(
        send,
        200,
        [(b"content-type", b"application/octet-stream"), (b"content-length", str(n).encode())],
    )
    sent = 0
    while sent < n:
        size = min(CHUNK, n - sent)
        sent += size
        await _body(send, _BLOCK[:size], sent < n)
    if n == 0:
        await _body(send, b"")


async def _drain(receive: Any) -> int:
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return total
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return total


async def http(scope: dict, receive: Any, send: Any) -> None:
    path: str = scope["path"]
    if path == "/echo":
        await _echo(receive, send)
        return
    if path.startswith("/bytes/"):
        await _bytes(send, int(path.rsplit("/", 1)[1]))
        return
    if path == "/sha256":
        digest, length = hashlib.sha256(), 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunk = message.get("body", b"")
            digest.update(chunk)
            length += len(chunk)
            if not message.get("more_body", False):
                break
        body = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
        await _start(send, 200, [(b"content-type", b"application/json")])
        await _body(send, body)
        return
    if path == "/stall":
        await anyio.sleep(5)  # longer than the test's timeout; short enough for shutdown
        await _start(send, 200, [(b"content-type", b"text/plain")])
        await _body(send, b"stalled")
        return
    received = await _drain(receive)
    if path.endswith("/headers"):
        facts = {
            "method": scope["method"],
            "path": path,
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "client": list(scope.get("client") or []),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body_length": received,
        }
        await send_json(send, facts, (b"x-origin", b"origin-app"))
        return
    if path == "/slow":
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        await anyio.sleep(float(query.get("delay", "5")))  # anyio: trio workers run this too
        await _start(send, 200, [(b"content-type", b"text/plain")])
        await _body(send, b"slow")
        return
    if path.startswith("/status/"):
        await _start(send, int(path.rsplit("/", 1)[1]), [(b"content-length", b"0")])
        await _body(send, b"")
        return
    await _start(send, 404, [(b"content-type", b"text/plain")])
    await _body(send, b"not found")


async def websocket(scope: dict, receive: Any, send: Any) -> None:
    message = await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if scope.get("subprotocols"):
        accept["subprotocol"] = scope["subprotocols"][0]
    await send(accept)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            await send({"type": "websocket.close", "code": int(text.split(":", 1)[1])})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
