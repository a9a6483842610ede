"""Responses: whole (:class:`Response`) or streamed (:class:`StreamedResponse`, whose body is a
:class:`ResponseBody`).

A whole response is only a streamed one read to the end, so both carry the same head and fail
the same way; only the body differs (bytes, or an iterator that grants the server credit as
the reader takes chunks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..groups.base import Group
from .errors import ConnectionClosedError
from .protocol import H3ClientProtocol, RequestStream

__all__ = ["Response", "ResponseBody", "StreamedResponse"]


def _header(headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    key = name.lower().encode()
    for k, v in headers:
        if k == key:
            return v.decode("latin-1")
    return None


@dataclass
class Response:
    """A complete response; ``group`` is the key exchange the connection negotiated."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    group: Group | None
    http_version: str = "3"

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _header(self.headers, name)


class ResponseBody(AsyncIterator[bytes]):
    """A response body, chunk by chunk, as the server sends it.

    Ends quietly only when the server ended the stream; a reset stream raises
    :class:`~.errors.StreamResetError` and a closed connection
    :class:`~.errors.ConnectionClosedError`, at once. The server gets flow-control credit only
    as chunks are taken, so a slow reader holds at most one window in memory. ``aclose()``
    before the end cancels the request (RESET_STREAM and STOP_SENDING), so the server stops
    producing.
    """

    def __init__(self, protocol: H3ClientProtocol, stream: RequestStream) -> None:
        self._protocol = protocol
        self._stream = stream
        self._finished = False

    @property
    def stream_id(self) -> int:
        return self._stream.stream_id

    def __aiter__(self) -> ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        stream = self._stream
        chunk = await stream.chunks.get()
        if chunk is None:
            await self.aclose()
            if stream.error is not None:
                raise stream.error
            if not stream.ended:
                raise ConnectionClosedError("connection closed before the response ended")
            raise StopAsyncIteration
        self._protocol.consumed(stream.stream_id, len(chunk))
        return chunk

    async def aread(self) -> bytes:
        """The rest of the body."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        """Stop reading; cancels the request on the wire unless it had completed."""
        if not self._finished:
            self._finished = True
            self._protocol.release(self._stream)


@dataclass
class StreamedResponse:
    """A response head whose body is still arriving: read ``body``, then (or instead) close.

    ``async with session.stream(...) as response`` closes it on leaving the block.
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    body: ResponseBody
    group: Group | None
    http_version: str = "3"

    @property
    def stream_id(self) -> int:
        return self.body.stream_id

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _header(self.headers, name)

    async def aread(self) -> bytes:
        """The whole (rest of the) body; raises if the stream was reset or the connection
        closed before it ended."""
        return await self.body.aread()

    async def aclose(self) -> None:
        await self.body.aclose()
