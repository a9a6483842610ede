"""Connections to an origin: a TCP socket to ``HOST:PORT`` or a Unix socket at a path.

Every path to an origin (HTTP/1.1, TLS for HTTP/1.1 and HTTP/2, WebSockets) connects here, so
a ``unix:`` service is the same as an ``http://`` one past the connect, a ``unix+tls:`` one the
same as an ``https://`` one, and a failure to connect reads the same everywhere: it names the
origin and says what to check, and a connect that takes longer than ``connectTimeout`` is a 504.
"""

from __future__ import annotations

import asyncio
import errno
import socket

from ..config import Service
from .errors import OriginError, plain
from .request import OriginHop, OriginRequest

__all__ = [
    "PLAIN_HOP",
    "READ_CHUNK",
    "UNIX_HOP",
    "connect_failure",
    "connect_limit",
    "open_stream",
    "origin_socket",
    "plain_hop",
]

READ_CHUNK = 64 * 1024
#: The hop to an ``http://`` origin: HTTP/1.1 over TCP, no TLS, so no key exchange at all.
PLAIN_HOP = OriginHop.over("tcp", None, http_version="1.1")
#: The hop to a ``unix:`` origin: HTTP/1.1 over a Unix socket, no TLS.
UNIX_HOP = OriginHop.over("unix", None, http_version="1.1")


def plain_hop(service: Service) -> OriginHop:
    """The hop of a connection without TLS to ``service``."""
    return UNIX_HOP if service.is_unix else PLAIN_HOP


def connect_limit(request: OriginRequest, default: float) -> float:
    """How long connecting may take: the rule's ``connectTimeout``, else the client's."""
    return default if request.connect_timeout is None else request.connect_timeout


def connect_failure(service: Service, exc: OSError) -> OriginError:
    """The error for a connection that could not be made: names the origin and what to
    check."""
    where = service.where
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        reason = f"{where} refused the connection (is the origin running?)"
    elif service.is_unix and isinstance(exc, FileNotFoundError):
        reason = f"no socket at {service.socket_path} (is the origin running?)"
    else:
        reason = f"cannot connect to {where}: {plain(exc)}"
    return OriginError(502, f"origin {service.text}: {reason}")


async def open_stream(
    service: Service, limit: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the origin as streams; failures as :func:`origin_socket`."""
    sock = await origin_socket(service, limit)
    return await asyncio.open_connection(sock=sock, limit=READ_CHUNK)


async def origin_socket(service: Service, limit: float) -> socket.socket:
    """A connected socket to the origin (TCP, or Unix for ``unix:`` services), for a TLS
    handshake started on it separately (so a failed handshake is never mistaken for a failed
    connect). Over ``limit`` seconds: a 504; refused or unreachable: a 502."""
    loop = asyncio.get_running_loop()

    async def connect_unix() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, service.socket_path)
        except BaseException:
            sock.close()
            raise
        return sock

    async def connect_tcp() -> socket.socket:
        infos = await loop.getaddrinfo(service.host, service.port, type=socket.SOCK_STREAM)
        failure: OSError = OSError(f"no address for {service.host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
                return sock
            except OSError as exc:
                sock.close()
                failure = exc
            except BaseException:
                sock.close()
                raise
        raise failure

    try:
        return await asyncio.wait_for(connect_unix() if service.is_unix else connect_tcp(), limit)
    except asyncio.TimeoutError:
        raise OriginError(
            504,
            f"origin {service.text}: no connection to {service.where} within {limit:g}s "
            "(connectTimeout)",
        ) from None
    except OSError as exc:
        raise connect_failure(service, exc) from None
