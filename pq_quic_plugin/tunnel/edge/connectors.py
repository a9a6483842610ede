"""The edge's QUIC listener for connectors: registration and authentication.

A connector proves it holds the tunnel secret without sending it: the edge sends a fresh nonce
and the connector answers with an HMAC over the nonce and the connection's identity, keyed with
a key derived from the secret (the edge stores only that derived key). Hostnames a connector
claims must belong to its own tunnel; anything else is refused, logged, and nothing is routed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio import serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration

from ...aioquic_binding import configure, negotiated_group
from ...aioquic_binding.facade import peer_address, server_port
from ...policy import Policy
from ..credentials import verify_proof
from ..hostnames import format_hostport
from ..observer import NO_OBSERVER, Observer
from ..wire import (
    ALPN,
    CONTROL_STREAM_ID,
    ERROR_AUTH,
    PROTOCOL_VERSION,
    Channel,
    FrameType,
    StreamHandler,
    StreamReset,
    TunnelConnection,
)
from .registry import LiveConnection, Registry
from .store import TunnelStore

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

REGISTRATION_TIMEOUT = 10.0


@dataclass(eq=False)
class ConnectorListener:
    """Accepts connector connections, authenticates them and keeps the registry current.

    It holds what it is given, plus the QUIC server once started; ``edge_id`` and
    ``location`` are what a connector is told when it registers. A listener equals only itself.
    """

    store: TunnelStore
    registry: Registry
    edge_id: str
    location: str
    observer: Observer = NO_OBSERVER
    _server: QuicServer | None = field(default=None, init=False, repr=False)

    async def start(
        self,
        host: str,
        port: int,
        certfile: str,
        keyfile: str,
        policy: Policy = Policy.PREFER,
        groups: Sequence[str] | None = None,
        idle_timeout: float = 15.0,
    ) -> int:
        """Bind the UDP listener and return its port (useful when ``port`` is 0)."""
        config = QuicConfiguration(
            is_client=False, alpn_protocols=[ALPN], idle_timeout=idle_timeout
        )
        config.load_cert_chain(certfile, keyfile)
        if policy is not Policy.OFF:
            configure(config, policy, groups=groups)
        make_handler = self._make_handler

        class _Protocol(TunnelConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.stream_handler = make_handler(self)

        self._server = await serve(host, port, configuration=config, create_protocol=_Protocol)
        bound = server_port(self._server)
        logger.info(
            "connector listener on udp %s, key exchange policy %s%s",
            format_hostport(host, bound),
            policy,
            f" groups={groups}" if groups else "",
        )
        return int(bound)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _make_handler(self, connection: TunnelConnection) -> StreamHandler:
        control_claimed = False

        async def handle(channel: Channel) -> None:
            nonlocal control_claimed
            if not control_claimed and channel.stream_id == CONTROL_STREAM_ID:
                control_claimed = True
                await self._register(connection, channel)
            else:
                # Only the edge opens request streams; anything else is a protocol error.
                channel.reset()

        return handle

    async def _register(self, connection: TunnelConnection, channel: Channel) -> None:
        remote = _remote(connection)
        try:
            hello = await asyncio.wait_for(
                channel.read_json(FrameType.CONTROL), REGISTRATION_TIMEOUT
            )
            live = await asyncio.wait_for(
                self._authenticate(connection, channel, hello, remote), REGISTRATION_TIMEOUT
            )
        except (asyncio.TimeoutError, StreamReset, ValueError, KeyError) as exc:
            logger.warning("connector %s: registration failed: %s", remote, exc or "timeout")
            connection.close(error_code=ERROR_AUTH, reason_phrase="registration failed")
            return
        if live is None:
            return
        self.registry.add(live)
        self.observer.connector_registered(live)

        def forget(_: TunnelConnection) -> None:
            self.registry.remove(live)
            logger.info(
                "Connection %s unregistered connIndex=%d tunnel=%s (%s)",
                live.connector_id,
                live.conn_index,
                live.tunnel_name,
                connection.close_reason,
            )
            self.observer.connector_unregistered(live)

        connection.on_close.append(forget)
        # The control stream stays open: the connector announces draining on it.
        while True:
            frame = await channel.read()
            if frame is None:
                return
            kind, payload = frame
            if kind == FrameType.CONTROL and b'"drain"' in payload:
                live.draining = True
                logger.info(
                    "Connection %s connIndex=%d is draining (connector shutting down)",
                    live.connector_id,
                    live.conn_index,
                )

    async def _authenticate(
        self, connection: TunnelConnection, channel: Channel, hello: dict[str, Any], remote: str
    ) -> LiveConnection | None:
        if hello.get("type") != "hello":
            raise ValueError("first control message is not hello")
        tunnel_id = str(hello["tunnel_id"])
        connector_id = str(hello["connector_id"])
        conn_index = int(hello["conn_index"])
        if int(hello.get("version", 0)) != PROTOCOL_VERSION:
            return await self._refuse(
                connection,
                channel,
                remote,
                f"protocol version {hello.get('version')} not supported "
                f"(edge speaks {PROTOCOL_VERSION})",
            )
        record = self.store.get(tunnel_id)
        nonce = secrets.token_bytes(32)
        # Always challenge, even for an unknown tunnel, so a prober learns nothing from timing.
        await channel.send_json(
            FrameType.CONTROL, {"type": "challenge", "nonce": base64.b64encode(nonce).decode()}
        )
        answer = await channel.read_json(FrameType.CONTROL)
        proof = base64.b64decode(answer.get("proof", ""))
        if record is None:
            return await self._refuse(connection, channel, remote, f"unknown tunnel {tunnel_id}")
        if not verify_proof(record.auth_key, nonce, record.id, connector_id, conn_index, proof):
            return await self._refuse(
                connection, channel, remote, f"wrong secret for tunnel {record.name} ({record.id})"
            )
        for hostname in hello.get("hostnames", []) or []:
            owner = self.store.by_hostname(hostname)
            if owner is None or owner.id != record.id:
                whose = f"tunnel {owner.name}" if owner else "no tunnel"
                return await self._refuse(
                    connection,
                    channel,
                    remote,
                    f"tunnel {record.name} claims hostname {hostname}, which belongs to {whose}",
                )
        group = negotiated_group(connection)
        live = LiveConnection(
            tunnel_id=record.id,
            tunnel_name=record.name,
            connector_id=connector_id,
            conn_index=conn_index,
            connection=connection,
            group=group.name if group else None,
            post_quantum=bool(group and group.post_quantum),
            remote=remote,
            version=str(hello.get("software", "")),
        )
        await channel.send_json(
            FrameType.CONTROL,
            {
                "type": "registered",
                "edge_id": self.edge_id,
                "location": self.location,
                "group": live.group,
                "hostnames": list(record.hostnames),
            },
        )
        logger.info(
            "Connection %s registered connIndex=%d tunnel=%s ip=%s group=%s%s",
            connector_id,
            conn_index,
            record.name,
            remote,
            live.group,
            "" if live.post_quantum else " (NOT post-quantum)",
        )
        return live

    async def _refuse(
        self, connection: TunnelConnection, channel: Channel, remote: str, reason: str
    ) -> LiveConnection | None:
        logger.warning("refused connector from %s: %s", remote, reason)
        self.observer.connector_refused(remote, reason)
        try:
            await channel.send_json(FrameType.CONTROL, {"type": "error", "reason": reason})
        except StreamReset:
            pass
        await asyncio.sleep(0.05)  # let the reason reach the connector before the close
        connection.close(error_code=ERROR_AUTH, reason_phrase=reason[:200])
        return None


def _remote(connection: TunnelConnection) -> str:
    try:
        return format_hostport(*peer_address(connection))
    except (AttributeError, IndexError):
        return "?"
