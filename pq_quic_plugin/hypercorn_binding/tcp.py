"""The TCP listener of hypercorn-pq: post-quantum TLS for HTTP/1.1, HTTP/2 and WebSockets.

hypercorn takes all of its TCP TLS from one method, ``Config.create_ssl_context()``, which each
worker process calls for itself (asyncio and trio alike, any worker count): the asyncio worker
hands the result to ``asyncio.start_server`` and the trio worker to ``trio.SSLListener``, and
both only ever call its ``wrap_bio``. :func:`tcp_context` is what
:meth:`~.config.PostQuantumConfig.create_ssl_context` returns instead: the post-quantum context
of :func:`pq_quic_plugin.ssl_context`, with every TLS setting hypercorn's own method applies
carried over, so ``--certfile``, ``--keyfile``, ``--keyfile-password``, ``--ca-certs``,
``--ciphers``, ``--verify-mode``, ``--verify-flags`` and the ALPN list mean what they meant.

The group list is shared with the QUIC listener (one ``--pq-groups``), but over TCP OpenSSL does
the key exchange and knows only the standard groups. A QUIC-only group (the draft Kyber hybrids,
a plugin's group) is therefore left out of the TCP list with a warning, while a list that leaves
TCP nothing to negotiate, or nothing post-quantum under ``require``, stops hypercorn-pq at
start-up (:func:`check_tcp`), not at the first handshake.

With ``pq_unsent_limit`` set (the tunnel's edge sets it), a connection whose reader stopped
holds little: without it Linux grows a socket's send buffer to ``net.ipv4.tcp_wmem``'s maximum
(4 MiB) while the peer advertises a zero window, and asyncio's TLS transport keeps up to
512 KiB more encrypted before ``drain()`` waits, so every unread response costs the server (and
whatever produces the response, a tunnel) 4.5 MiB of work and memory. :func:`limit_unsent`
bounds the kernel's part on the listening sockets, :func:`limit_connection` the TLS layer's on
each connection.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..groups.base import Group
from ..policy import GroupPolicy, Policy
from .auth import auth_certificates, auth_policy_of

logger = logging.getLogger("pq_quic_plugin.hypercorn")

__all__ = ["TcpPlan", "check_tcp", "limit_connection", "limit_unsent", "tcp_context"]


@dataclass(frozen=True)
class TcpPlan:
    """What the TCP listener will negotiate: the resolved policy and the groups left out."""

    policy: GroupPolicy
    quic_only: tuple[Group, ...]

    def describe(self) -> str:
        text = self.policy.describe()
        if self.quic_only:
            left_out = ",".join(g.name for g in self.quic_only)
            text += f" (left out, QUIC-only: {left_out})"
        return text


def check_tcp(policy: Policy | str, groups: list[str] | None) -> TcpPlan:
    """Resolve the TCP side of a ``pq``/``pq_groups`` setting, or raise ``ValueError`` (which
    names the groups) when TCP could negotiate nothing, or nothing post-quantum under
    ``require``; ``ImportError`` when the OpenSSL in ``cryptography`` has no ML-KEM."""
    from ..tls_binding import split_tls_groups, tls_group_policy

    quic_only: list[Group] = []
    if groups is not None:
        _, quic_only = split_tls_groups(groups)
    resolved = tls_group_policy(policy, groups, server_side=True, skip_quic_only=True)
    return TcpPlan(resolved, tuple(quic_only))


def _tcp_groups(groups: list[str] | None) -> list[str] | None:
    """The part of a shared group list TCP can use. :func:`check_tcp` said at start-up what is
    left out; each worker builds its context from the rest, without warning again. A list with
    nothing usable is passed whole, so that ``ssl_context`` raises naming the groups."""
    if groups is None:
        return None
    from ..tls_binding import split_tls_groups

    usable, _ = split_tls_groups(groups)
    return [g.name for g in usable] or groups


def tcp_context(config: Any) -> ssl.SSLContext:
    """The post-quantum server context for ``config`` (a hypercorn Config with ``pq`` set),
    configured as hypercorn's own ``create_ssl_context`` configures Python's."""
    from .. import ssl_context

    policy = Policy.parse(config.pq)
    context = ssl_context(
        policy,
        _tcp_groups(config.pq_groups),
        server_side=True,
        certfile=config.certfile,
        keyfile=config.keyfile,
        password=config.keyfile_password,
        cafile=config.ca_certs,
        alpn=config.alpn_protocols,
        skip_quic_only=True,
        auth=auth_policy_of(config),
        certificates=auth_certificates(config),
    )
    context.set_ciphers(config.ciphers)  # TLS 1.2 suites; TLS 1.3 keeps OpenSSL's
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 7540 9.2; `require` raises it to 1.3
    context.options |= ssl.OP_NO_COMPRESSION  # RFC 7540 9.2.1 (the layer never compresses)
    if config.verify_mode is not None:
        context.verify_mode = config.verify_mode
    if config.verify_flags is not None:
        context.verify_flags = config.verify_flags
    described = context.group_policy.describe()  # type: ignore[attr-defined]
    logger.info("TCP listener (HTTP/1.1, HTTP/2, WebSockets): post-quantum %s", described)
    return context


def limit_unsent(sockets: Iterable[socket.socket], lowat: int) -> None:
    """Set ``TCP_NOTSENT_LOWAT`` on listening TCP sockets (accepted sockets inherit it on
    Linux): a connection then takes new bytes only while fewer than ``lowat`` wait unsent, so
    the application's writer (hypercorn's ``drain()``) waits instead of the kernel queueing
    megabytes for a reader that does not read. Bytes in flight (the congestion window) are not
    limited, so a fast reader's throughput is unchanged. Sockets that are not TCP, and systems
    without the option, are left alone."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None:
        return
    for sock in sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, option, lowat)


def limit_connection(server: Any, config: Any) -> None:
    """Pause the writer of one accepted connection (hypercorn's asyncio ``TCPServer``) once
    ``config.pq_unsent_limit`` bytes wait in its TLS layer, instead of asyncio's 512 KiB. The
    trio worker's TLS stream keeps no such buffer, so it is left as it is."""
    limit = getattr(config, "pq_unsent_limit", None)
    writer = getattr(server, "writer", None)
    if limit is not None and writer is not None:
        writer.transport.set_write_buffer_limits(high=limit)
