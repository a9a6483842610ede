"""An origin that answers every request with what reached it, as JSON.

For the ``originRequest`` chain tests (tests/test_tunnel_origin_request_chain.py): the ``Host``
it got, how the request body was framed, and the hop list the connector sent in
``pq-tunnel-hops``, so a test can see, through the whole tunnel, what a rule changed. Run it
from this directory: ``hypercorn ... request_facts_app:app``.
"""

from __future__ import annotations

import json
from typing import Any

from origin_app import send_json

from pq_quic_plugin.asgi.types import lifespan


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    facts = {
        "path": scope["path"],
        "host": headers.get("host", ""),
        "transfer_encoding": headers.get("transfer-encoding"),
        "content_length": headers.get("content-length"),
        "body_length": size,
        "hops": json.loads(headers.get("pq-tunnel-hops", "[]")),
        "http_version": scope.get("http_version"),
    }
    await send_json(send, facts)
