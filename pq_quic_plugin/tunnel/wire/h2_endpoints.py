"""Where HTTP/2 tunnel connections come from: the edge's TCP listener and the connector's dial,
both TLS 1.3 through :func:`pq_quic_plugin.ssl_context` with the tunnel's ALPN.

The key exchange follows the same policy words as on QUIC: a connector with ``post-quantum``
offers post-quantum groups only (``require``: against an edge without them the handshake
fails with ``PostQuantumRefusedError`` and no connection is made), otherwise it prefers
post-quantum; the edge accepts what its policy and groups allow. A group list shared with the
QUIC listener may name QUIC-only groups (the draft Kyber ones): they are left out over TCP with
a warning rather than refused (``skip_quic_only``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from ...policy import Policy
from ...tcp_tls import CertificatePair, PathLike, ssl_context
from .h2_transport import H2_ALPN, H2TunnelConnection

__all__ = ["connector_tls", "dial_h2", "edge_tls", "listen_h2"]

#: From the TCP connection to a finished TLS handshake, at most (both sides).
HANDSHAKE_TIMEOUT = 10.0


def edge_tls(
    certfile: PathLike,
    keyfile: PathLike,
    policy: Policy | str = Policy.PREFER,
    groups: Iterable[str] | None = None,
    certificates: Sequence[CertificatePair] = (),
) -> ssl.SSLContext:
    """The edge's TLS server context for connectors over TCP; ``certificates`` are more pairs
    (an ML-DSA one), OpenSSL picks per connector (docs/auth.md)."""
    return ssl_context(
        policy,
        list(groups) if groups is not None else None,
        server_side=True,
        certfile=certfile,
        keyfile=keyfile,
        alpn=[H2_ALPN],
        skip_quic_only=True,
        certificates=certificates,
    )


def connector_tls(
    post_quantum: bool,
    groups: Iterable[str] | None = None,
    cafile: PathLike | None = None,
    auth: str = "prefer",
) -> ssl.SSLContext:
    """The connector's TLS client context: post-quantum only under ``post_quantum``; ``auth``
    ``require`` refuses an edge that does not authenticate with ML-DSA."""
    return ssl_context(
        Policy.REQUIRE if post_quantum else Policy.PREFER,
        list(groups) if groups is not None else None,
        server_side=False,
        cafile=cafile,
        alpn=[H2_ALPN],
        skip_quic_only=True,
        auth=auth,
    )


async def listen_h2(
    host: str,
    port: int,
    tls: ssl.SSLContext,
    create_link: Callable[[], H2TunnelConnection],
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
) -> asyncio.Server:
    """Accept connectors on TCP ``host:port``: each connection, once its TLS handshake is done,
    is the :class:`H2TunnelConnection` that ``create_link`` makes (``role="edge"``)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        create_link, host, port, ssl=tls, ssl_handshake_timeout=handshake_timeout
    )


#: Tries to find a port free on both UDP and TCP when the configured port is 0.
SAME_PORT_ATTEMPTS = 20

_Quic = TypeVar("_Quic")


async def listen_quic_and_h2(
    host: str,
    port: int,
    bind_quic: Callable[[int], Awaitable[_Quic]],
    port_of: Callable[[_Quic], int],
    close_quic: Callable[[_Quic], None],
    tls: ssl.SSLContext,
    create_link: Callable[[], H2TunnelConnection],
) -> tuple[_Quic, asyncio.Server, int]:
    """Bind QUIC (UDP) and then HTTP/2 (TCP) on the same port; return both servers and the port.

    With port 0 the OS picks a port free for UDP, which some TCP socket may hold: then both
    are tried again on another port, rather than failing an edge (or a test) at random.
    """
    for attempt in range(1 if port else SAME_PORT_ATTEMPTS):
        quic = await bind_quic(port)
        bound = int(port_of(quic))
        try:
            return quic, await listen_h2(host, bound, tls, create_link), bound
        except OSError as exc:
            close_quic(quic)
            if port or exc.errno != errno.EADDRINUSE or attempt == SAME_PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


@contextlib.asynccontextmanager
async def dial_h2(
    host: str,
    port: int,
    tls: ssl.SSLContext,
    create_link: Callable[[], H2TunnelConnection],
    server_hostname: str | None = None,
    timeout: float = HANDSHAKE_TIMEOUT,
    on_created: Callable[[H2TunnelConnection], None] | None = None,
) -> AsyncIterator[H2TunnelConnection]:
    """Connect to the edge at ``host:port`` and finish TLS within ``timeout``; the link is
    closed (GOAWAY, then TLS close_notify) when the block ends.

    Failures are the transport's own exceptions: ``ConnectionRefusedError`` (nothing listens
    on TCP there), ``asyncio.TimeoutError``, ``ssl.SSLCertVerificationError``,
    ``PostQuantumRefusedError`` (an ``ssl.SSLError``: the edge refused every post-quantum
    group we offered). The link it yields may already be closed (an edge that refuses right
    after the handshake, a peer without the tunnel's ALPN): as on QUIC, its ``close_reason``
    says why and its first stream fails with that reason. ``on_created`` sees the link before
    the handshake, as the QUIC dialer's does.
    """
    loop = asyncio.get_running_loop()

    def factory() -> H2TunnelConnection:
        link = create_link()
        if on_created is not None:
            on_created(link)
        return link

    _, link = await asyncio.wait_for(
        loop.create_connection(
            factory,
            host,
            port,
            ssl=tls,
            server_hostname=server_hostname or host,
            ssl_handshake_timeout=timeout,
        ),
        timeout,
    )
    try:
        yield link
    finally:
        link.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(link.wait_closed(), 1.0)
