"""Which transport a connection to the edge uses (``protocol``), and opening it.

``quic`` and ``http2`` are what they say. ``auto`` (the default) works as cloudflared's: each
connection starts on QUIC ("Initial protocol quic") and, when a QUIC handshake fails for a
network reason (no answer: UDP dropped; ICMP unreachable), switches to HTTP/2 ("Switching to
fallback protocol http2"). Only a ``network`` failure (:mod:`.failures`) switches: a
post-quantum, TLS or authentication refusal would be the same on the other transport, and
under ``post-quantum`` both transports are post-quantum only, so a fallback never weakens the
key exchange. An HTTP/2 attempt that cannot connect either sends the connection back to QUIC,
so a connector that started while the edge was down does not stay on HTTP/2 for good.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..config import ConnectorConfig
from ..hostnames import HostPort
from ..wire import TunnelConnection, TunnelLink
from ..wire.h2_endpoints import connector_tls, dial_h2
from ..wire.h2_transport import H2TunnelConnection
from .dialer import dial
from .failures import Failure, FailureKind
from .registration import DEFAULT_PQ_GROUPS, auth_policy, edge_configuration

__all__ = ["UDP_BLOCKED_HINT", "LinkFactory", "ProtocolChoice", "initial_protocol"]

logger = logging.getLogger("pq_quic_plugin.tunnel.connector")

#: Added to a QUIC handshake that heard nothing (or ICMP unreachable) under ``protocol: quic``.
UDP_BLOCKED_HINT = (
    "UDP to the edge looks blocked (or the edge is down): if this network drops UDP, set "
    "`protocol: http2` (or --protocol http2), or `protocol: auto` to fall back by itself"
)

StreamHandler = Callable[[Any], Awaitable[None]]


def initial_protocol(configured: str) -> str:
    """The transport a connection starts on: QUIC unless ``http2`` is configured."""
    return "http2" if configured == "http2" else "quic"


class ProtocolChoice:
    """The transport of one HA connection slot, moved by failed attempts under ``auto``."""

    def __init__(self, configured: str) -> None:
        self.configured = configured
        self.current = initial_protocol(configured)

    def after_failure(self, failure: Failure, handshake_failed: bool, index: int) -> Failure:
        """Switch transport if ``auto`` and the attempt could not connect at all; returns the
        failure to report (with :data:`UDP_BLOCKED_HINT` for a ``quic``-only connector)."""
        if failure.kind is not FailureKind.NETWORK or not handshake_failed:
            return failure
        if self.configured == "quic":
            return Failure(failure.kind, f"{failure.reason}; {UDP_BLOCKED_HINT}")
        if self.configured != "auto":
            return failure
        if self.current == "quic":
            self.current = "http2"
            logger.warning(
                "connIndex=%d: QUIC could not connect (%s). Switching to fallback protocol http2",
                index,
                failure.reason,
            )
        else:
            self.current = "quic"
            logger.info("connIndex=%d: http2 could not connect either: trying quic again", index)
        return failure


class LinkFactory:
    """Opens a connection to the edge over either transport, with the connector's settings.

    The TLS context for HTTP/2 is built once (it loads the trust store); QUIC's settings are
    made per attempt, since each picks its key share at random (:mod:`.registration`).
    """

    def __init__(
        self, config: ConnectorConfig, handler: StreamHandler, keepalive: float, idle: float
    ) -> None:
        self.config = config
        self.handler = handler
        self.keepalive = keepalive
        self.idle = idle
        self._tls: ssl.SSLContext | None = None

    def group_tried(self, protocol: str, address: HostPort) -> tuple[Any, str | None]:
        """The QUIC settings (None for HTTP/2) and the post-quantum group whose key share the
        attempt sends (None without ``post-quantum``)."""
        if protocol == "quic":
            return edge_configuration(self.config, address, self.idle)
        if not self.config.post_quantum:
            return None, None
        return None, (self.config.groups or DEFAULT_PQ_GROUPS)[0]

    def _h2_tls(self) -> ssl.SSLContext:
        if self._tls is None:
            c = self.config
            groups = (c.groups or DEFAULT_PQ_GROUPS) if c.post_quantum else c.groups
            self._tls = connector_tls(c.post_quantum, groups, c.ca_file, auth=auth_policy(c))
        return self._tls

    @contextlib.asynccontextmanager
    async def open(
        self,
        protocol: str,
        address: HostPort,
        quic_config: Any,
        on_created: Callable[[TunnelLink], None],
    ) -> AsyncIterator[TunnelLink]:
        """A connected link (handshake done) to ``address``; closed when the block ends."""
        if protocol == "quic":

            def quic_link(*args: Any, **kwargs: Any) -> TunnelConnection:
                conn = TunnelConnection(*args, **kwargs)
                conn.stream_handler = self.handler
                return conn

            async with dial(
                address.host, address.port, quic_config, quic_link, on_created=on_created
            ) as conn:
                yield conn
            return

        def h2_link() -> H2TunnelConnection:
            return H2TunnelConnection(
                "connector",
                stream_handler=self.handler,
                keepalive=self.keepalive,
                idle_timeout=self.idle,
            )

        async with dial_h2(
            address.host,
            address.port,
            self._h2_tls(),
            h2_link,
            server_hostname=self.config.server_name_for(address),
            on_created=on_created,
        ) as link:
            yield link
