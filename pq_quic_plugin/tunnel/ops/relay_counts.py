"""Body bytes a visitor sends and receives through the edge, for ``bytes_total``.

The edge relays bodies between ASGI messages and tunnel frames (``edge/relay.py``), which
should not know about metrics; wrapping the ASGI ``receive`` and ``send`` it is given counts
the same bytes without touching the relay.
"""

from __future__ import annotations

from typing import Any

from ...asgi.types import Receive, Send
from ..observer import Observer

__all__ = ["counted", "counting"]


def counted(receive: Receive, observer: Observer) -> Receive:
    """``receive``, reporting each request body chunk as bytes towards the origin."""

    async def wrapped() -> Any:
        message = await receive()
        if message.get("type") == "http.request":
            size = len(message.get("body") or b"")
            if size:
                observer.relayed("to_origin", size)
        return message

    return wrapped


def counting(send: Send, observer: Observer) -> Send:
    """``send``, reporting each response body chunk as bytes from the origin."""

    async def wrapped(message: Any) -> None:
        if message.get("type") == "http.response.body":
            size = len(message.get("body") or b"")
            if size:
                observer.relayed("from_origin", size)
        await send(message)

    return wrapped
