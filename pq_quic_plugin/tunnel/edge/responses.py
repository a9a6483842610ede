"""The two tiny ASGI helpers the edge's own answers share: a plain-text response and a bounded
body read. The edge writes its own short answers (no tunnel for this host, the tunnel is down, a
report was received) and must never read an unbounded body from a visitor.
"""

from __future__ import annotations

from ...asgi.types import Receive, Send

__all__ = ["plain_text", "read_body"]


async def plain_text(send: Send, status: int, text: str) -> None:
    """A complete ``text/plain`` response whose body is ``text`` and a newline."""
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, cut at ``limit`` bytes (the rest is left unread)."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return bytes(body[:limit])
        if not message.get("more_body"):
            return bytes(body)
