"""origin_app plus what the TCP tests of hypercorn-pq need (tests/test_hypercorn_tcp*.py).

Extra routes:

* ``GET /scope``: JSON with the scope's ``http_version``, ``scheme`` and its ``tls`` and
  ``pq_quic`` extensions, exactly as the server filled them.
* ``GET /broken``: promises 1,000,000 bytes, sends 10,000, then returns: an app that leaves its
  response unfinished (HTTP/2 must reset the stream, HTTP/1.1 close short of the length).
* ``GET /pid``: the worker's process id.

Everything else is origin_app's (``/echo``, ``/bytes/N``, ``/sha256``, ``/ws``, ...).
"""

from __future__ import annotations

import os
from typing import Any

from origin_app import app as origin_app
from origin_app import send_json

PROMISED = 1_000_000
SENT = b"0123456789" * 1000


async def app(scope: dict, receive: Any, send: Any) -> None:
    path = scope.get("path")
    if scope["type"] == "http" and path == "/scope":
        extensions = scope.get("extensions") or {}
        await send_json(
            send,
            {
                "http_version": scope["http_version"],
                "scheme": scope["scheme"],
                "tls": extensions.get("tls"),
                "pq_quic": extensions.get("pq_quic"),
            },
        )
        return
    if scope["type"] == "http" and path == "/pid":
        await send_json(send, {"pid": os.getpid()})
        return
    if scope["type"] == "http" and path == "/broken":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(PROMISED).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": SENT, "more_body": True})
        return  # never finishes the body
    await origin_app(scope, receive, send)
