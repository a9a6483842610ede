"""Which responses carry a body, and whether the body that arrived matches its Content-Length.

One rule for every client in the package (the HTTP/3 client, and the tunnel's origin client over
HTTP/1.1, HTTP/2 and HTTP/3), because each HTTP library gets it slightly differently and a
proxy that trusts one of them can be made to cut off every other request on a shared
connection: aioquic compares a ``Content-Length`` with the body even for a ``HEAD`` request or a
``304``, where RFC 9110 (sections 6.4.1 and 8.6) says the header describes the resource and no
body follows, and it treats the mismatch as an error of the whole connection.

:class:`BodyFraming` follows one response: told its head and the size of each piece of body
that arrives, it returns a reason (a plain sentence) as soon as the body breaks the rule, so the
caller can reset that one stream.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BodyFraming", "declared_length", "response_has_body"]


def response_has_body(method: str | bytes, status: int) -> bool:
    """Whether a response to ``method`` with ``status`` may carry a body (RFC 9110 6.4.1):
    never for ``HEAD``, a 1xx, a 204 or a 304, whatever ``Content-Length`` says."""
    name = method.decode("latin-1") if isinstance(method, bytes) else method
    return name.upper() != "HEAD" and status >= 200 and status not in (204, 304)


def declared_length(values: Iterable[str | bytes]) -> int | None:
    """The one length the ``Content-Length`` values state (None when there is none).

    Raises ``ValueError`` for a value that is not a non-negative decimal number, or for values
    that disagree (RFC 9110 8.6: a recipient may only accept repeated identical values).
    """
    lengths: set[int] = set()
    for value in values:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        for part in text.split(","):
            part = part.strip(" \t")
            if not part.isdigit() or not part.isascii():
                raise ValueError(f"content-length {text!r} is not a non-negative number")
            lengths.add(int(part))
    if len(lengths) > 1:
        raise ValueError(f"content-length values disagree: {sorted(lengths)}")
    return lengths.pop() if lengths else None


class BodyFraming:
    """The framing of one response body: how much may arrive, and how much did.

    Each method returns None while the body is well framed, else the reason it is not (the
    caller resets the stream with it, and only that stream).
    """

    def __init__(self, method: str | bytes) -> None:
        self.method = method
        self.expected: int | None = None  # None: the body ends when the stream ends
        self.received = 0

    def head(self, status: int, content_length: Iterable[str | bytes]) -> str | None:
        """The final response head arrived with ``status`` and these ``Content-Length`` values."""
        try:
            declared = declared_length(content_length)
        except ValueError as exc:
            return str(exc)
        self.expected = declared if response_has_body(self.method, status) else 0
        return None

    def data(self, size: int) -> str | None:
        """``size`` more bytes of body arrived."""
        self.received += size
        if self.expected is not None and self.received > self.expected:
            return self._mismatch()
        return None

    def end(self) -> str | None:
        """The stream ended: was the body complete?"""
        if self.expected is not None and self.received != self.expected:
            return self._mismatch()
        return None

    def _mismatch(self) -> str:
        if self.expected == 0 and self.received:
            return f"a body of {self.received}+ bytes on a response that has none"
        return (
            f"the body ({self.received} bytes) does not match its content-length ({self.expected})"
        )
