"""An HTTP/2 client connection on which a bad ``Content-Length`` is one stream's error.

RFC 9113 8.1.1 makes a response whose ``content-length`` is not a number (or contradicts
itself) *malformed*, and a malformed response is a stream error. h2 4.4 reads the field in
``H2Stream._initialize_content_length``, called while it processes the HEADERS frame, and raises
``ProtocolError`` there: h2 then ends the whole connection with a GOAWAY, before any event
reaches its user. On the connection the connector shares to an origin, one response with
``content-length: abc`` would cut off every other visitor's download on it.

:func:`client_connection` builds an ``H2Connection`` whose streams, given such a value, let it
pass (they stop checking the body against a length they could not read) instead of raising. The
check itself stays where the connector makes it for every transport: its body framing
(:class:`pq_quic_plugin.message_framing.BodyFraming`) refuses the head, and the connector resets
that one stream (``tests/test_tunnel_origin_hardening.py``). A valid length is checked by h2
exactly as before. Servers (hypercorn's h2) are not affected: only this constructor changes
anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.stream

__all__ = ["client_connection"]

_Header = tuple[Any, Any]


class _StreamLeavingLengthToItsUser(h2.stream.H2Stream):
    """A stream that does not raise for a ``content-length`` it cannot read."""

    def _initialize_content_length(self, headers: Iterable[_Header]) -> None:
        try:
            super()._initialize_content_length(headers)
        except h2.exceptions.ProtocolError:
            # Unreadable or contradictory: nothing to check the body against. The head is
            # refused by the caller's framing, which resets this stream only.
            self._expected_content_length = None


class _ClientConnection(h2.connection.H2Connection):
    """``H2Connection`` whose every stream is a :class:`_StreamLeavingLengthToItsUser`."""

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        # Same layout (a subclass adding no state): only the one method differs.
        stream.__class__ = _StreamLeavingLengthToItsUser
        return stream


def client_connection(config: h2.config.H2Configuration) -> h2.connection.H2Connection:
    """An ``H2Connection`` for ``config`` that leaves a malformed ``content-length`` to its
    user (see the module docstring); otherwise exactly h2's."""
    return _ClientConnection(config)
