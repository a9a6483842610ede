"""The few facts about a live aioquic connection that aioquic has no public API for.

The HTTP/3 client, the tunnel and hypercorn-pq need to know how much of a stream is still
unacknowledged (send backpressure), whether a stream can still be written, who the peer is and
which port a server bound. aioquic keeps all of that in private attributes. Reading them here,
and only here, means an aioquic release that renames one fails the import-time check in
:mod:`.version` (whose ``REQUIRED_INTERNALS`` lists every name read below), not every caller;
everything outside ``aioquic_binding/`` calls these functions instead.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from aioquic.quic.connection import QuicConnection, QuicConnectionState
from cryptography.hazmat.primitives.serialization import Encoding

if TYPE_CHECKING:
    from aioquic.asyncio import QuicConnectionProtocol
    from aioquic.asyncio.server import QuicServer
    from aioquic.h3.connection import H3Connection

__all__ = [
    "SendState",
    "allow_concurrent_streams",
    "can_open_request_stream",
    "peer_address",
    "peer_certificate_der",
    "presented_certificate_der",
    "quic_of",
    "send_buffered",
    "send_state",
    "server_port",
    "unacked_send_bytes",
]

_CLOSED_STATES = (
    QuicConnectionState.CLOSING,
    QuicConnectionState.DRAINING,
    QuicConnectionState.TERMINATED,
)


class SendState(enum.Enum):
    """Where the sending half of a stream is, as far as a writer needs to know."""

    OPEN = "open"  # more data may be written
    ENDED = "ended"  # FIN queued or sent: the writer finished normally
    RESET = "reset"  # RESET_STREAM queued or sent
    GONE = "gone"  # no such stream any more, or the connection is closing


def quic_of(owner: QuicConnectionProtocol | H3Connection) -> QuicConnection:
    """The :class:`QuicConnection` behind an asyncio protocol or an HTTP/3 connection."""
    return owner._quic


def send_buffered(quic: QuicConnection, stream_id: int) -> int:
    """Bytes written to ``stream_id`` and not yet acknowledged by the peer (0 if gone)."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    return len(stream.sender._buffer)


def send_state(quic: QuicConnection, stream_id: int) -> SendState:
    """Whether ``stream_id`` can still be written to, and if not, why."""
    stream = quic._streams.get(stream_id)
    if stream is None or quic._state in _CLOSED_STATES:
        return SendState.GONE
    sender = stream.sender
    if sender._reset_error_code is not None:
        return SendState.RESET
    if sender.is_finished or sender._buffer_fin is not None:
        return SendState.ENDED
    return SendState.OPEN


def can_open_request_stream(quic: QuicConnection) -> bool:
    """Whether a new bidirectional stream would go out now. QUIC's MAX_STREAMS counts every
    stream ever opened; past it aioquic queues the stream until the peer raises the limit,
    which it does as earlier streams end: a request there waits for other requests (128 long
    polls on a hypercorn origin hold the 129th), so a pool opens another connection instead."""
    return quic.get_next_available_stream_id() >> 2 < quic._remote_max_streams_bidi


def allow_concurrent_streams(quic: QuicConnection, count: int) -> None:
    """Let the peer have ``count`` bidirectional streams open at once (aioquic: 128, with no
    setting). Call it before the handshake starts: the transport parameters announce it, and
    aioquic tops the limit up by one for each stream that ends, so ``count`` stays the number
    open at once."""
    limit = quic._local_max_streams_bidi
    limit.value = limit.sent = count


def unacked_send_bytes(quic: QuicConnection) -> int:
    """Bytes (a pending FIN counts as one) written to any stream of ``quic`` and not yet
    acknowledged by the peer; reset streams do not count (nothing of theirs will be delivered).

    Zero means the peer holds every byte we sent: closing the connection now loses nothing,
    which a graceful shutdown must wait for (a response whose writer finished may still be
    sitting in the send buffer).
    """
    total = 0
    for stream in quic._streams.values():
        sender = stream.sender
        if sender._reset_error_code is not None or sender.is_finished:
            continue
        total += len(sender._buffer) + (1 if sender._buffer_fin is not None else 0)
    return total


def peer_address(protocol: QuicConnectionProtocol) -> tuple[str, int]:
    """The peer's address on the connection's first network path (host, port)."""
    host, port = protocol._quic._network_paths[0].addr[:2]
    return str(host), int(port)


def server_port(server: QuicServer) -> int:
    """The UDP port an ``aioquic.asyncio.serve`` server is bound to (useful with port 0)."""
    transport = server._transport
    if transport is None:
        raise RuntimeError("the QUIC server is not bound")
    return int(transport.get_extra_info("sockname")[1])


def peer_certificate_der(protocol: QuicConnectionProtocol) -> bytes | None:
    """The leaf certificate the peer sent in this connection's handshake (DER), as received
    and whether or not it was verified: on a client, the server's; None when none was sent
    (a resumed session, or the handshake is not that far)."""
    cert = protocol._quic.tls._peer_certificate
    return None if cert is None else cert.public_bytes(Encoding.DER)


def presented_certificate_der(protocol: QuicConnectionProtocol) -> bytes | None:
    """On a server, the leaf this handshake presented (DER): of its pairs, the one chosen for
    this client (``pq_presented_certificate``), or stock aioquic's only one; None before the
    Certificate message was sent."""
    ctx = protocol._quic.tls
    if hasattr(ctx, "pq_presented_certificate"):  # ours: only what this handshake sent
        cert = ctx.pq_presented_certificate
    else:
        cert = ctx.certificate
    return None if cert is None else cert.public_bytes(Encoding.DER)
