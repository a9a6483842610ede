"""What can go wrong with an HTTP/3 request, as one exception hierarchy.

Every failure the client reports is an :class:`HTTP3Error`, so ``except HTTP3Error`` catches
them all, and the subclasses say which part failed: the connection could not be opened
(:class:`ConnectError`, :class:`HandshakeError`), the server gave up on one request
(:class:`StreamResetError`), the whole connection ended (:class:`ConnectionClosedError`), the
server broke HTTP/3's rules (:class:`RemoteProtocolError`) or it took too long
(:class:`ReadTimeout`, :class:`WriteTimeout`).

:class:`HTTP3Error` stays a :class:`ConnectionError` and the timeouts stay
:class:`asyncio.TimeoutError`, so code written against the earlier client (which raised those
two) keeps catching the same failures.
"""

from __future__ import annotations

import asyncio

from aioquic.quic import events

__all__ = [
    "ConnectError",
    "ConnectionClosedError",
    "HTTP3Error",
    "HandshakeError",
    "ReadTimeout",
    "RemoteProtocolError",
    "StreamResetError",
    "TimeoutException",
    "WriteTimeout",
    "connect_error",
]

#: QUIC's CRYPTO_ERROR range (RFC 9001 section 4.8): 0x100 plus a TLS alert.
_CRYPTO_ERRORS = range(0x100, 0x200)


class HTTP3Error(ConnectionError):
    """Base class: the request or the connection failed; the message says why."""


class ConnectError(HTTP3Error):
    """The QUIC connection could not be established (the peer went quiet or closed it)."""

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class HandshakeError(ConnectError):
    """The TLS handshake was refused: a certificate, ALPN or key-exchange problem.

    A post-quantum refusal (``policy="require"`` against a classical-only peer, or the other
    way round) lands here, with the binding's explanation as the message.
    """


class ConnectionClosedError(HTTP3Error):
    """The connection closed while a request was still waiting for (part of) its response."""

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamResetError(HTTP3Error):
    """The server abandoned one request: RESET_STREAM, or STOP_SENDING with an error code.

    ``error_code`` is the HTTP/3 application error code the server sent (for instance
    ``H3_REQUEST_CANCELLED``, 0x10c); the connection itself stays usable.
    """

    def __init__(self, stream_id: int, error_code: int, message: str) -> None:
        super().__init__(f"{message} (HTTP/3 error 0x{error_code:x})")
        self.stream_id = stream_id
        self.error_code = error_code


class RemoteProtocolError(HTTP3Error):
    """The server's response broke HTTP/3's rules (say, a stream ended without a head)."""


class TimeoutException(HTTP3Error, asyncio.TimeoutError):
    """Base class of the timeouts; also an :class:`asyncio.TimeoutError`."""


class ReadTimeout(TimeoutException):
    """No response head (or, for a whole-body request, no complete response) in time."""


class WriteTimeout(TimeoutException):
    """The server took no request body bytes for longer than the request's timeout."""


def connect_error(event: events.ConnectionTerminated) -> ConnectError:
    """How a connection that closed during its handshake is reported.

    aioquic itself raises a bare :class:`ConnectionError`; the reason (such as the
    post-quantum binding's explanation of a refused handshake) is only on the event.
    """
    reason = event.reason_phrase or f"handshake failed (error {event.error_code})"
    if event.error_code in _CRYPTO_ERRORS:
        return HandshakeError(reason, event.error_code)
    return ConnectError(reason, event.error_code)
