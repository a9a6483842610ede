"""What one request may put on a connection to the origin that other requests share.

The connector keeps one HTTP/2 or HTTP/3 connection per origin (and a keep-alive pool for
HTTP/1.1), so a request it forwards badly framed can do more than fail: an origin whose HTTP
stack sees a body that does not match its ``Content-Length``, or a header it cannot parse,
may close the whole connection, cutting off every other visitor's response on it. So, for
every origin protocol, in one place:

* **Headers are bytes.** The edge hands them over decoded as Latin-1 (each character one byte,
  obs-text above 0x7F included, RFC 9110 5.5); :func:`wire_headers` turns them back into the
  same bytes, strips the whitespace around values that HTTP/2 and HTTP/3 forbid, and refuses
  (400) a name that is not a token or a value with CR, LF or NUL, before anything is sent.
* **One body length.** :func:`body_length` reads the request's framing: with
  ``Transfer-Encoding`` the length is unknown and ``Content-Length`` is dropped (RFC 9112 6.3:
  the chunked framing wins, and a proxy must not forward both); conflicting or invalid lengths
  are a 400. :class:`LengthChecked` then makes sure a declared length is what goes up: a body
  that runs longer or shorter fails that request (its stream is reset) and is never sent under
  the wrong length.
* **Responses that have no body** (``HEAD``, 1xx, 204, 304) carry none, whatever their
  ``Content-Length`` says, and a body that breaks its length ends that response with an error
  (:class:`FramedBody`, on top of each protocol's own checks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ...message_framing import BodyFraming, declared_length
from ..config import Service
from .errors import OriginError

__all__ = [
    "FORBIDDEN_IN_VALUE",
    "TCHAR",
    "FramedBody",
    "LengthChecked",
    "body_length",
    "latin1",
    "wire_headers",
    "without_stale_length",
]

#: RFC 9110 5.6.2 ``tchar``: what a header name may be made of.
TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
FORBIDDEN_IN_VALUE = frozenset(b"\r\n\x00")


def latin1(text: str, what: str) -> bytes:
    """``text`` as the bytes it stands for (the edge decodes every header and path as Latin-1);
    a character no byte stands for is the request's fault: 400."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise OriginError(400, f"the request's {what} has characters beyond Latin-1") from None


def wire_headers(headers: Sequence[tuple[str, str]], *, lower: bool) -> list[tuple[bytes, bytes]]:
    """Headers as bytes, checked so that no origin stack can take them for a broken message.

    ``lower`` lower-cases names (HTTP/2 and HTTP/3 require it). Raises :class:`OriginError`
    (400) naming the header, never sends it.
    """
    out = []
    for name, value in headers:
        key = latin1(name.strip(), "header name")
        if lower:
            key = key.lower()
        if not key or not TCHAR.issuperset(key):
            raise OriginError(400, f"the request header name {key[:64]!r} is not a valid token")
        data = latin1(value, f"header {key.decode()}").strip(b" \t")
        if FORBIDDEN_IN_VALUE.intersection(data):
            raise OriginError(400, f"the request header {key.decode()} has CR, LF or NUL")
        out.append((key, data))
    return out


def body_length(headers: Sequence[tuple[str, str]]) -> int | None:
    """The request body's declared length, or None when the body ends with the stream.

    ``Transfer-Encoding`` makes it None (its ``Content-Length`` is then dropped on the way,
    :func:`without_stale_length`); several different or invalid ``Content-Length`` values are
    a 400. Read from the request's ``headers`` (the visitor's), for the check of the body and
    for the header sent alike.
    """
    if any(k.strip().lower() == "transfer-encoding" for k, _ in headers):
        return None
    try:
        return declared_length(v for k, v in headers if k.strip().lower() == "content-length")
    except ValueError as exc:
        raise OriginError(400, f"the request's {exc}") from None


def without_stale_length(length: int | None, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``out`` (the headers to send) framed by ``length`` (:func:`body_length` of the request):
    one ``Content-Length`` when it is known, none when the body ends with the stream (as after
    ``Transfer-Encoding``, a hop-by-hop header already gone from ``out``)."""
    kept = [(k, v) for k, v in out if k.strip().lower() != "content-length"]
    if length is not None and len(kept) < len(out):
        kept.append(("content-length", str(length)))
    return kept


class LengthChecked(AsyncIterator[bytes]):
    """A request body that must be exactly ``length`` bytes (when not None).

    Raises :class:`OriginError` (400) before yielding a chunk that would go past it, or at the
    end when the body fell short, so the request fails (its stream reset) instead of reaching
    the origin under a wrong ``Content-Length``.
    """

    def __init__(self, chunks: AsyncIterator[bytes], length: int | None) -> None:
        self._chunks, self._length, self._sent = chunks, length, 0

    def __aiter__(self) -> LengthChecked:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            if self._length is not None and self._sent != self._length:
                raise OriginError(
                    400,
                    f"the request body ended after {self._sent} bytes; its Content-Length "
                    f"says {self._length}",
                ) from None
            raise
        self._sent += len(chunk)
        if self._length is not None and self._sent > self._length:
            raise OriginError(
                400, f"the request body is longer than its Content-Length ({self._length})"
            )
        return chunk


class FramedBody(AsyncIterator[bytes]):
    """A response body relayed under the framing its head declares.

    A response that has no body (:func:`~pq_quic_plugin.message_framing.response_has_body`)
    yields nothing; the underlying body is still read to its end, so an HTTP/1.1 connection
    goes back to its pool. Bytes beyond, or short of, a ``Content-Length`` end the body with an
    :class:`OriginError` (the caller resets the visitor's stream) and cancel the origin's.
    """

    def __init__(
        self,
        body: AsyncIterator[bytes],
        method: str,
        status: int,
        headers: Sequence[tuple[str, str]],
        service: Service,
    ) -> None:
        self._body, self._service = body, service
        self._framing = BodyFraming(method)
        broken = self._framing.head(
            status, [v for k, v in headers if k.lower() == "content-length"]
        )
        if broken is not None:
            raise OriginError(502, f"origin {service.text}: bad response head: {broken}")

    def __aiter__(self) -> FramedBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._body.__anext__()
        except StopAsyncIteration:
            broken = self._framing.end()
            if broken is not None:
                raise OriginError(502, f"origin {self._service.text}: {broken}") from None
            raise
        broken = self._framing.data(len(chunk))
        if broken is not None:
            await self.aclose()
            raise OriginError(502, f"origin {self._service.text}: {broken}")
        return chunk

    async def aclose(self) -> None:
        close = getattr(self._body, "aclose", None)
        if close is not None:
            await close()
