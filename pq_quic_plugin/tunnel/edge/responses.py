"""The edge's own short answers and the bounded body read they share.

The edge writes its own answers (no tunnel for this host, the tunnel is down, a refused or
failed request, a report was received) and must never read an unbounded body from a visitor.
What went wrong inside the tunnel (an origin's address, a connector's reason) is for the logs:
a visitor gets :func:`failure_text`, the same few words whatever the cause, and a request id
that finds the detail in the edge's log.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...asgi.types import Receive, Send

__all__ = ["failure_text", "plain_text", "read_body"]

#: What a visitor is told when a tunnelled request fails, by status; the cause is logged.
_FAILURES = {
    408: "The request body stopped arriving.",
    502: "The service behind this address could not be reached.",
    503: "The service behind this address is unavailable; try again shortly.",
    504: "The service behind this address did not answer in time.",
}


def failure_text(status: int, request_id: str) -> str:
    """The visitor's text for a tunnelled request that failed with ``status``."""
    reason = _FAILURES.get(status, "The request could not be completed.")
    return f"{reason} (request id {request_id})"


async def plain_text(
    send: Send, status: int, text: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A complete ``text/plain`` response whose body is ``text`` and a newline."""
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
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
