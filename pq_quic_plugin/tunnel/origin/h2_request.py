"""One request over an origin's HTTP/2 connection (:class:`~.h2.H2Session`): the request head,
the upload racing the wait for the response head, and the response body handed out as taken.

Apart from the connection because a request's life (timeouts, an origin that answers before
the upload ends, a visitor that goes away) is its own job; the connection only moves frames.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..config import Service
from .errors import OriginError
from .framing import latin1, wire_headers
from .h2 import H2Session, OriginStream, StreamGone, StreamRefused
from .request import OriginRequest, OriginResponse, PeekedBody
from .request import retrieve as _retrieve

__all__ = ["JOIN_LIMIT", "H2Body", "send_request"]


async def send_request(
    session: H2Session, service: Service, request: OriginRequest, body: PeekedBody
) -> OriginResponse:
    """Send one request on a new stream of ``session``; return once the response head is in.

    Raises :class:`OriginError`, or :class:`StreamRefused` when the origin did not process the
    request (the caller may send it again on a new connection).
    """
    out = request.headers_to_send(session.hop, service)
    authority = next((v for k, v in out if k.lower() == "host"), service.host)
    headers = [
        (b":method", latin1(request.method, "method")),
        (b":scheme", b"https"),
        (b":authority", latin1(authority.strip(), "host")),
        (b":path", latin1(request.target(service), "path")),
        *wire_headers([(k, v) for k, v in out if k.lower() != "host"], lower=True),
    ]
    stream = await session.open_stream(headers, body.empty, request.timeout)
    return await _StreamExchange(session, stream, request).run(body)


class _StreamExchange:
    """One request on one stream: the upload runs alongside the wait for the response head,
    and the clock for the head starts once the body is all sent (as over HTTP/1.1)."""

    def __init__(self, session: H2Session, stream: OriginStream, request: OriginRequest) -> None:
        self.session, self.stream, self.request = session, stream, request
        self.what = f"{request.method} {request.path}"
        self.timed_out = False

    def _no_answer(self) -> OriginError:
        return OriginError(
            504,
            f"origin {self.session.service.text} did not answer {self.what} within "
            f"{self.request.timeout:g}s",
        )

    def _time_out(self) -> None:
        self.timed_out = True
        self.stream.wake()

    async def _head(self) -> None:
        while self.stream.status == 0:
            if self.timed_out:
                raise self._no_answer()
            if self.stream.error is not None:
                if self.stream.retryable:
                    raise StreamRefused(self.stream.error)
                raise OriginError(
                    502,
                    f"origin {self.session.service.text} sent no response to {self.what}: "
                    f"{self.stream.error}",
                )
            await self.stream.wait()

    async def run(self, body: PeekedBody) -> OriginResponse:
        session, stream = self.session, self.stream
        if body.empty:
            return await self._run_without_body()
        uploading = asyncio.ensure_future(session.upload(stream, body, self.request.timeout))
        reading = asyncio.ensure_future(self._head())
        try:
            await self._race(reading, uploading)
        except BaseException:
            for task in (uploading, reading):
                if not task.done():
                    task.cancel()
            for task in (uploading, reading):
                with contextlib.suppress(BaseException):
                    await task
            session.cancel(stream)
            raise
        return OriginResponse(
            stream.status, stream.headers, H2Body(session, stream, uploading), session.hop
        )

    async def _run_without_body(self) -> OriginResponse:
        """No upload to race (the head went with END_STREAM): wait for the response head in
        this task, under one timer, with no task of its own (most requests are like this)."""
        session, stream = self.session, self.stream
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.request.timeout, self._time_out)
        try:
            await self._head()
        except BaseException:
            session.cancel(stream)
            raise
        finally:
            timer.cancel()
        sent = loop.create_future()  # the upload, done: there is none
        sent.set_result(None)
        return OriginResponse(
            stream.status, stream.headers, H2Body(session, stream, sent), session.hop
        )

    async def _race(self, reading: asyncio.Task[None], uploading: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        timeout = self.request.timeout
        while True:
            waiting: set[asyncio.Future[Any]] = {reading}
            if not uploading.done():
                waiting.add(uploading)
            elif deadline is None:
                deadline = loop.time() + timeout
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if reading in done:
                reading.result()
                return
            if uploading in done:
                failure = _retrieve(uploading)
                if failure is not None and not isinstance(failure, StreamGone):
                    raise failure
                continue  # sent (or the stream went away: the head or its error follows)
            if not done:
                raise self._no_answer()


#: The most response body :class:`H2Body` hands out in one chunk, joined from DATA frames that
#: have arrived already (never waiting for more): the connector then sends one tunnel write per
#: read from the origin, not one per 16 KiB HTTP/2 frame.
JOIN_LIMIT = 256 * 1024


def _join_ready(stream: OriginStream, data: bytes, flow: int) -> tuple[bytes, int]:
    """``data`` plus the stream's other received DATA up to :data:`JOIN_LIMIT` bytes, and the
    flow-controlled length of all of it."""
    parts, size = [data], len(data)
    while stream.data and size < JOIN_LIMIT:
        more, more_flow = stream.data.popleft()
        parts.append(more)
        size += len(more)
        flow += more_flow
    return b"".join(parts), flow


class H2Body(AsyncIterator[bytes]):
    """A response body from an HTTP/2 origin; each chunk taken opens the window that much.
    Chunks that arrived together are handed out as one (:data:`JOIN_LIMIT`)."""

    def __init__(
        self, session: H2Session, stream: OriginStream, upload: asyncio.Future[None]
    ) -> None:
        self._session, self._stream, self._upload = session, stream, upload
        self._done = False

    def __aiter__(self) -> H2Body:
        return self

    async def __anext__(self) -> bytes:
        stream = self._stream
        while not self._done:
            if stream.data:
                data, flow = stream.data.popleft()
                if stream.data and len(data) < JOIN_LIMIT:
                    data, flow = _join_ready(stream, data, flow)
                self._session.taken(stream, flow)
                if data:
                    return data
                continue
            if stream.ended:
                self._finish()
                break
            if stream.error is not None:
                self._abort()
                failure = _retrieve(self._upload)
                if failure is not None and not isinstance(failure, (StreamGone, OriginError)):
                    raise failure  # the request body failed: that is the story
                raise OriginError(
                    502,
                    f"origin {self._session.service.text} broke off the response body: "
                    f"{stream.error}",
                )
            await stream.wait()
        raise StopAsyncIteration

    def _finish(self) -> None:
        """The response is complete. A request body still going up is no longer wanted."""
        self._done = True
        if not self._upload.done():
            self._upload.cancel()
            self._session.cancel(self._stream)
        else:
            _retrieve(self._upload)
            self._session.forget(self._stream)

    def _abort(self) -> None:
        self._done = True
        if not self._upload.done():
            self._upload.cancel()
        self._session.cancel(self._stream)

    async def aclose(self) -> None:
        if not self._done:
            self._abort()
