"""An origin that misbehaves on purpose, for tests/test_tunnel_origin_hardening.py.

Everything of origin_app.py (``/bytes/N``, ``/headers``, ``/ws``, ...), plus:

* ``GET /bodiless/S?length=L``: status S (204 or 304) with ``content-length: L`` and no body,
  as RFC 9110 allows for a 304 (the length of the representation it stands for).
* ``GET /short``: ``content-length: 1000`` and only 500 bytes of body (a broken origin).
* ``GET /bad-length?value=V[&also=W]``: ``content-length: V`` (and a second field ``W``) on a
  two-byte body: an origin whose length cannot be read.
* ``GET /obs-text``: a response header whose value has bytes above 0x7F.
* ``/ws-big?size=N``: a WebSocket that sends one binary message of N bytes, then echoes.
"""

from __future__ import annotations

from typing import Any

from origin_app import app as base_app


async def _start(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


def _query(scope: dict) -> dict[str, str]:
    pairs = scope["query_string"].decode().split("&")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


async def app(scope: dict, receive: Any, send: Any) -> None:
    path = scope.get("path", "")
    if scope["type"] == "http" and path.startswith("/bodiless/"):
        length = _query(scope).get("length", "1000").encode()
        await _start(send, int(path.rsplit("/", 1)[1]), [(b"content-length", length)])
        await send({"type": "http.response.body", "body": b""})
    elif scope["type"] == "http" and path == "/short":
        await _start(send, 200, [(b"content-length", b"1000")])
        await send({"type": "http.response.body", "body": b"x" * 500})
    elif scope["type"] == "http" and path == "/bad-length":
        query = _query(scope)
        lengths = [query["value"]] + ([query["also"]] if "also" in query else [])
        await _start(send, 200, [(b"content-length", v.encode()) for v in lengths])
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "http" and path == "/obs-text":
        await _start(send, 200, [(b"content-length", b"2"), (b"x-obs", b"caf\xe9 \xff")])
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket" and path == "/ws-big":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": b"b" * int(_query(scope)["size"])})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
    else:
        await base_app(scope, receive, send)
