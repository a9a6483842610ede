"""A minimal ASGI app for hypercorn-pq that also registers a buggy group plugin.

hypercorn-pq builds its HTTP/3 listener's group list (every registered group, without
``--pq-groups``) after it imported the app, so importing the plugin here puts the broken group
on the listener (tests/test_fuzz_clienthello.py). ``GET /objects`` counts the connection
objects the worker holds, to tell a leak from memory that is merely not returned to the OS.
"""

from __future__ import annotations

import gc
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import broken_group_plugin  # noqa: E402

broken_group_plugin.register()

#: What ``GET /objects`` counts in the worker: a leak of connections shows there first.
OBJECTS = ("QuicConnection", "H3Protocol", "PostQuantumContext", "_Connection")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b"ok"
    if scope["path"] == "/objects":  # how many connections the worker still holds
        gc.collect()
        counts = Counter(type(o).__name__ for o in gc.get_objects())
        body = json.dumps({name: counts[name] for name in OBJECTS}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
