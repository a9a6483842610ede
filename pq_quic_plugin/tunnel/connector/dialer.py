"""Open one QUIC connection to an edge, on a *connected* UDP socket.

``aioquic.asyncio.connect`` sends from an unconnected socket, and Linux reports ICMP errors
(port unreachable: nothing listens on the edge's port) only to connected UDP sockets. With
aioquic's socket an edge that is down looks like a silent network, and every attempt waits for
the handshake's idle timeout before it can say no more than "timeout". Connecting the socket
lets the connector say "UDP unreachable" at once (``TunnelConnection.error_received``), which
is the difference between "the edge is down" and "something drops UDP" in the log.

Only aioquic's public API is used: the same steps as ``connect``, plus ``sock.connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from ..wire import TunnelConnection

__all__ = ["dial"]


@contextlib.asynccontextmanager
async def dial(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    create_protocol: Callable[..., TunnelConnection],
    on_created: Callable[[TunnelConnection], None] | None = None,
) -> AsyncIterator[TunnelConnection]:
    """Connect to ``host:port`` and wait for the handshake, as ``aioquic.asyncio.connect``.

    ``on_created`` sees the protocol before the handshake, so a failed handshake's close code
    and reason can be read from it afterwards (``connect`` raises a bare ``ConnectionError``).
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(addr)
    except BaseException:
        sock.close()
        raise
    connection = QuicConnection(configuration=configuration)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: create_protocol(connection), sock=sock
    )
    tunnel: Any = protocol
    if on_created is not None:
        on_created(tunnel)
    try:
        tunnel.connect(addr)
        await tunnel.wait_connected()
        yield tunnel
    finally:
        tunnel.close()
        await tunnel.wait_closed()
        transport.close()
