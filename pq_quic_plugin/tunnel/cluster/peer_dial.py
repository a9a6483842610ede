"""The relaying edge's transports to a peer (hop 2): a QUIC connection, or HTTP/2 on TLS over
TCP, post-quantum only (``require``), with the cluster's ALPN and nothing said on it yet.

By default the peer's certificate is not checked against a CA (edges' certificates are for
visitors' names, not relay addresses; :mod:`.peer_client` binds the cluster proofs to it
instead); with ``cluster.ca-file`` it is (:class:`PeerVerify`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aioquic.quic.configuration import QuicConfiguration

from ...aioquic_binding import configure
from ...aioquic_binding.auth_config import configure_auth
from ...policy import Policy
from ...tcp_tls import ssl_context
from ..connector.dialer import dial
from ..hostnames import HostPort
from ..wire import ALPN, CONTROL_STREAM_ID, TunnelConnection, TunnelLink, TunnelStream
from ..wire.h2_endpoints import dial_h2
from ..wire.h2_transport import H2_ALPN, H2TunnelConnection

__all__ = ["IDLE_TIMEOUT", "PING_INTERVAL", "PeerVerify", "dial_peer", "failure_text"]

#: How often the control stream carries a ping (RTT, load, keepalive).
PING_INTERVAL = 1.0
#: A link that hears nothing for this long is closed.
IDLE_TIMEOUT = 10.0


class PeerVerify:
    """``cluster.ca-file``: the CA peers' certificates must chain to, and the name to check."""

    def __init__(self, ca_file: Path, name: str) -> None:
        self.ca_file = ca_file
        self.name = name


async def dial_peer(
    stack: contextlib.AsyncExitStack,
    transport: str,
    address: HostPort,
    groups: Sequence[str] | None,
    verify: PeerVerify | None = None,
) -> tuple[TunnelLink, TunnelStream]:
    """An open link and its control stream (handshake done, nothing said yet)."""
    if transport == "quic":
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            idle_timeout=IDLE_TIMEOUT,
            verify_mode=ssl.CERT_NONE if verify is None else ssl.CERT_REQUIRED,
        )
        if verify is not None:
            config.load_verify_locations(cafile=str(verify.ca_file))
            config.server_name = verify.name
        configure(config, Policy.REQUIRE, groups=groups)
        configure_auth(config, "prefer")
        created: list[TunnelConnection] = []
        try:
            conn = await stack.enter_async_context(
                dial(address.host, address.port, config, TunnelConnection, created.append)
            )
        except ConnectionError as exc:  # aioquic's says nothing; the close reason does
            said = created[0].close_reason if created else ""
            raise ConnectionError(said or failure_text(exc)) from None
        return conn, conn.open_channel()
    control: asyncio.Future[TunnelStream] = asyncio.get_running_loop().create_future()
    holder: list[H2TunnelConnection] = []

    async def take_control(channel: Any) -> None:
        if channel.stream_id == CONTROL_STREAM_ID and not control.done():
            control.set_result(channel)
            await holder[0].closed_event.wait()  # the channel lives as long as this task
        else:
            channel.reset()

    def make() -> H2TunnelConnection:
        link = H2TunnelConnection(
            "edge", stream_handler=take_control, keepalive=PING_INTERVAL, idle_timeout=IDLE_TIMEOUT
        )
        holder.append(link)
        return link

    tls = ssl_context(
        Policy.REQUIRE,
        list(groups) if groups is not None else None,
        server_side=False,
        alpn=[H2_ALPN],
        cafile=None if verify is None else verify.ca_file,
        verify=verify is not None,
        check_hostname=verify is not None,
        skip_quic_only=True,
        auth="prefer",
    )
    name = None if verify is None else verify.name
    link = await stack.enter_async_context(
        dial_h2(address.host, address.port, tls, make, server_hostname=name)
    )
    if link.closed:
        raise ConnectionError(link.close_reason)
    return link, await control


def failure_text(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
