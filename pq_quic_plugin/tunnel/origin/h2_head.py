"""Whether a response head (or trailer section) from an HTTP/2 origin is well formed.

RFC 9113 8.1.1 makes a malformed response a *stream* error, but the ``h2`` library, when it
validates inbound headers, raises a protocol error of the whole connection (GOAWAY): every
other visitor's request on the connection the connector shares to the origin would fail with
it. So :class:`~.h2.H2Session` turns h2's inbound validation off and asks
:func:`head_problem` instead, per stream, then resets only that stream.

Checked here, at least everything h2 checked (RFC 9113 8.2 and 8.3): field names non-empty,
lower-case and tokens (the same ``tchar`` rule :func:`~.framing.wire_headers` applies to what
the connector sends; stricter than h2, which let through any visible ASCII), values without NUL,
CR or LF and without whitespace around them, no connection-specific field
(:data:`CONNECTION_SPECIFIC`; ``te`` only as ``trailers``), and pseudo-headers: only one
``:status``, before every regular field, three digits; none in trailers. Which of the good
fields are then passed on is :func:`~pq_quic_plugin.tunnel.headers.forwardable`'s rule.
``Content-Length`` is the body framing's rule
(:class:`~pq_quic_plugin.message_framing.BodyFraming`, the same for every origin protocol);
h2, which would read it first and end the connection, is told to leave it to us
(:mod:`pq_quic_plugin.h2_binding.stream_length`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .framing import FORBIDDEN_IN_VALUE, TCHAR  # one token rule and one value rule

__all__ = ["CONNECTION_SPECIFIC", "head_problem"]

#: Fields that describe one HTTP/1.1 connection and make an HTTP/2 message malformed
#: (RFC 9113 8.2.2); all are in :data:`~pq_quic_plugin.tunnel.headers.HOP_BY_HOP` too.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_UPPER = frozenset(range(ord("A"), ord("Z") + 1))
#: A good HTTP/2 field name's bytes: one subset test per field; the two rules it joins are
#: told apart only when it fails.
_LOWER_TCHAR = TCHAR - _UPPER
_WHITESPACE = frozenset(b" \t")


def head_problem(headers: Iterable[tuple[bytes, bytes]], *, trailers: bool = False) -> str | None:
    """Why this header block (a response head, 1xx included, or with ``trailers`` a trailer
    section) is malformed, as a short phrase for the log; None when it is well formed."""
    status: bytes | None = None
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if trailers:
                return f"pseudo-header {_shown(name)} in trailers"
            if regular:
                return f"pseudo-header {_shown(name)} after a regular field"
            if name != b":status":
                return f"pseudo-header {_shown(name)} in a response"
            if status is not None:
                return "more than one :status"
            status = value
            continue
        regular = True
        problem = _field_problem(name, value)
        if problem is not None:
            return problem
    if trailers:
        return None
    if status is None:
        return "no :status"
    if len(status) != 3 or not status.isdigit():
        return f":status {_shown(status)} is not three digits"
    return None


def _field_problem(name: bytes, value: bytes) -> str | None:
    if not name:
        return "an empty field name"
    if not _LOWER_TCHAR.issuperset(name):
        if _UPPER.intersection(name):
            return f"the field name {_shown(name)} is not lower-case"
        return f"the field name {_shown(name)} is not a token"
    if name in CONNECTION_SPECIFIC:
        return f"the connection-specific field {_shown(name)}"
    if name == b"te" and value.lower() != b"trailers":
        return f"te: {_shown(value)} (only 'trailers' is allowed)"
    if FORBIDDEN_IN_VALUE.intersection(value):
        return f"the field {_shown(name)} has CR, LF or NUL in its value"
    if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
        return f"the field {_shown(name)} has whitespace around its value"
    return None


def _shown(data: bytes) -> str:
    """``data`` for the log: short, and with control bytes escaped."""
    return repr(data[:64])[1:]
