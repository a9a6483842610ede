"""One request's stream on an origin's HTTP/2 connection, and how it can end early.

Apart from the connection (:mod:`.h2`) so that one request's state reads on its own; the
connection fills it from h2's events, the request (:mod:`.h2_request`) reads it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ...message_framing import BodyFraming

__all__ = ["OriginStream", "StreamGone", "StreamRefused"]


class StreamGone(Exception):
    """The stream was reset or its connection closed while the request body was going up:
    the upload stops quietly, and the response (or the reason there is none) tells the story."""


class StreamRefused(Exception):
    """The origin did not process the request: GOAWAY before its stream, REFUSED_STREAM, or
    the connection lost before any answer. Safe to send again on a new connection, if the
    request body can be replayed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OriginStream:
    """One request's stream: its response head, the unread response data, and what ended it."""

    def __init__(self, stream_id: int, method: bytes = b"GET") -> None:
        self.id = stream_id
        self.framing = BodyFraming(method)
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.data: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self.ended = False  # END_STREAM received: the response is complete
        self.error: str | None = None  # reset by the origin, or the connection went away
        self.retryable = False  # refused before the origin processed it (GOAWAY, REFUSED_STREAM)
        self.closed_by_us = False
        self.changed = asyncio.Event()

    def wake(self) -> None:
        self.changed.set()

    async def wait(self) -> None:
        await self.changed.wait()
        self.changed.clear()
