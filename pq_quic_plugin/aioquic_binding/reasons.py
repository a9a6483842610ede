"""Every reason phrase the binding builds, and every peer-supplied list it logs, has a size cap.

A TLS alert's text becomes the reason phrase of the QUIC CONNECTION_CLOSE that carries it, and
before the handshake that frame must fit into one Initial packet (about 1,100 bytes once the
header, the ACK and the AEAD tag are in). A reason built from what the peer sent, such as the
name of every group a ClientHello offered, grows with the ClientHello: 110 unknown groups were
enough for aioquic to raise ``QuicPacketBuilderStop`` out of ``datagrams_to_send`` instead of
sending the alert, which ended hypercorn's whole HTTP/3 listener. A log line built the same way
grew to 200 KB for one 64 KB ClientHello. So reasons go through :func:`bounded_reason` and
peer-supplied lists through :func:`summarize`, which say how many there were and show a few.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_LOG_ITEMS", "MAX_REASON_BYTES", "bounded_reason", "summarize"]

#: The most a reason phrase may take, in UTF-8 bytes. Leaves an Initial packet ample room for
#: the CONNECTION_CLOSE frame's other fields, an ACK frame and the packet header.
MAX_REASON_BYTES = 200
#: How many items of a peer-supplied list a log line or a reason shows.
MAX_LOG_ITEMS = 6
_ELLIPSIS = "..."


def bounded_reason(text: str, limit: int = MAX_REASON_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (ending in "..." when cut), never in the
    middle of a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    room = max(0, limit - len(_ELLIPSIS))
    return encoded[:room].decode("utf-8", errors="ignore") + _ELLIPSIS


def summarize(items: Sequence[str], limit: int = MAX_LOG_ITEMS, total: int | None = None) -> str:
    """``a, b, c`` for a short list; ``110: a, b, c, d, e, f, ...`` (a count, then the first
    ``limit``) for a long one; ``none`` for an empty one. ``total`` is the list's real length
    when the caller named only its first items (naming 32,000 codepoints costs time too)."""
    count = len(items) if total is None else total
    if count == 0:
        return "none"
    if count <= limit:
        return ", ".join(items[:limit])
    return f"{count}: {', '.join(items[:limit])}, ..."
