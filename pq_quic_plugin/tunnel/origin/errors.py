"""The origin client's one error, and how an exception reads inside its reason.

Apart from :mod:`.request` so that the framing rules (:mod:`.framing`), which the request
uses, can raise it too.
"""

from __future__ import annotations

__all__ = ["PUBLIC_TEXT", "OriginError", "plain"]


#: What a visitor is told, by status: generic on purpose (see :attr:`OriginError.public`).
PUBLIC_TEXT = {
    400: "400 Bad Request: the request cannot be forwarded to the origin",
    413: "413 Content Too Large: the request body is too large for this origin",
    502: "502 Bad Gateway: the origin could not be reached",
    504: "504 Gateway Timeout: the origin did not answer in time",
}


class OriginError(Exception):
    """The origin could not be reached or answered badly, or the request cannot be sent.

    ``status`` is what the visitor gets (502; 504 for a timeout; 400 for a request no origin
    may be sent, such as a header that is not valid HTTP or a body longer than its
    ``Content-Length``); ``reason`` is a plain sentence for the connector's log that names the
    origin URL and says what went wrong.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def public(self) -> str:
        """What the visitor may read: the status and a generic sentence. Never the reason,
        which names internal addresses and ports; that goes to the connector's log."""
        return PUBLIC_TEXT.get(self.status, PUBLIC_TEXT[502])


def plain(exc: BaseException) -> str:
    """An exception as the tail of a sentence: ``connection refused``, not ``[Errno 111] ...``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__
