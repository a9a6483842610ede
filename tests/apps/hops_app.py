"""The tunnel chain's origin in tests/test_tunnel_tcp.py: the example app, plus ``/ws-facts``.

``/ws-facts`` is a WebSocket whose first message is the origin's own view of the connection
(``connection_facts(scope).as_dict()``: its group, and every hop the tunnel reported), then an
echo. The example app's ``/ws`` only echoes, so without this a WebSocket through the tunnel could
not show which hops it crossed. Run from this directory: ``hypercorn-pq ... hops_app:app``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pq_quic_plugin.asgi import PostQuantumMiddleware, connection_facts

EXAMPLE_APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "asgi_app"
if str(EXAMPLE_APP_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_APP_DIR))

from app import app as example  # noqa: E402


async def _facts_then_echo(scope: Any, receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    facts = json.dumps(connection_facts(scope).as_dict())
    await send({"type": "websocket.send", "text": facts})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        echo = {"type": "websocket.send"}
        echo["text" if message.get("text") is not None else "bytes"] = (
            message["text"] if message.get("text") is not None else message.get("bytes") or b""
        )
        await send(echo)


#: The middleware turns the connector's ``pq-tunnel-hops`` header into the scope's hops.
facts_websocket = PostQuantumMiddleware(_facts_then_echo)


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket" and scope.get("path") == "/ws-facts":
        await facts_websocket(scope, receive, send)
    else:
        await example(scope, receive, send)
