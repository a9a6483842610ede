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
from collections.abc import Callable
from typing import Any

from aioquic.asyncio import serve
from aioquic.quic.configuration import QuicConfiguration

from ...aioquic_binding import configure, negotiated_group
from ...aioquic_binding.facade import peer_address, server_port
from ..credentials import verify_proof
from ..wire import (
    ALPN,
    ERROR_AUTH,
    PROTOCOL_VERSION,
    Channel,
    FrameType,
    StreamReset,
    TunnelConnection,
)
from .registry import LiveConnection, Registry

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

REGISTRATION_TIMEOUT = 10.0


class ConnectorListener:
    """Accepts connector connections, authenticates them and keeps the registry current."""

    def __init__(
        self,
        store: Any,
        registry: Registry,
        edge_id: str,
        location: str,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.edge_id = edge_id
        self.location = location
        self.on_event = on_event or (lambda kind, data: None)
        self._server: Any = None

    async def start(
        self,
        host: str,
        port: int,
        certfile: str,
        keyfile: str,
        policy: str = "prefer",
        groups: list[str] | None = None,
        idle_timeout: float = 15.0,
    ) -> int:
        config = QuicConfiguration(
            is_client=False, alpn_protocols=[ALPN], idle_timeout=idle_timeout
        )
        config.load_cert_chain(certfile, keyfile)
        if policy != "off":
            configure(config, policy, groups=groups)
        listener = self

        class _Protocol(TunnelConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.stream_handler = listener._make_handler(self)

        self._server = await serve(host, port, configuration=config, create_protocol=_Protocol)
        bound = server_port(self._server)
        logger.info(
            "connector listener on udp %s:%d, key exchange policy %s%s",
            host, bound, policy, f" groups={groups}" if groups else "",
        )
        return int(bound)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _make_handler(self, connection: TunnelConnection) -> Callable[[Channel], Any]:
        state: dict[str, Any] = {"registered": None}

        async def handle(channel: Channel) -> None:
            if state["registered"] is None and channel.stream_id == 0:
                await self._register(connection, channel, state)
            else:
                # Only the edge opens request streams; anything else is a protocol error.
                channel.reset()

        return handle

    async def _register(
        self, connection: TunnelConnection, channel: Channel, state: dict[str, Any]
    ) -> None:
        remote = _remote(connection)
        try:
            hello = await asyncio.wait_for(channel.read_json(FrameType.CONTROL),
                                           REGISTRATION_TIMEOUT)
            live = await asyncio.wait_for(self._authenticate(connection, channel, hello, remote),
                                          REGISTRATION_TIMEOUT)
        except (asyncio.TimeoutError, StreamReset, ValueError, KeyError) as exc:
            logger.warning("connector %s: registration failed: %s", remote, exc or "timeout")
            connection.close(error_code=ERROR_AUTH, reason_phrase="registration failed")
            return
        if live is None:
            return
        state["registered"] = live
        self.registry.add(live)
        self.on_event("registered", live.describe())

        def forget(_: TunnelConnection) -> None:
            self.registry.remove(live)
            logger.info(
                "Connection %s unregistered connIndex=%d tunnel=%s (%s)",
                live.connector_id, live.conn_index, live.tunnel_name, connection.close_reason,
            )
            self.on_event("unregistered", live.describe())

        connection.on_close.append(forget)
        # The control stream stays open: the connector announces draining on it.
        while True:
            frame = await channel.read()
            if frame is None:
                return
            kind, payload = frame
            if kind == FrameType.CONTROL and b'"drain"' in payload:
                live.draining = True
                logger.info("Connection %s connIndex=%d is draining (connector shutting down)",
                            live.connector_id, live.conn_index)

    async def _authenticate(
        self, connection: TunnelConnection, channel: Channel, hello: dict[str, Any], remote: str
    ) -> LiveConnection | None:
        if hello.get("type") != "hello":
            raise ValueError("first control message is not hello")
        tunnel_id = str(hello["tunnel_id"])
        connector_id = str(hello["connector_id"])
        conn_index = int(hello["conn_index"])
        if int(hello.get("version", 0)) != PROTOCOL_VERSION:
            return await self._refuse(connection, channel, remote,
                                      f"protocol version {hello.get('version')} not supported "
                                      f"(edge speaks {PROTOCOL_VERSION})")
        record = self.store.get(tunnel_id)
        nonce = secrets.token_bytes(32)
        # Always challenge, even for an unknown tunnel, so a prober learns nothing from timing.
        await channel.send_json(FrameType.CONTROL, {
            "type": "challenge", "nonce": base64.b64encode(nonce).decode()
        })
        answer = await channel.read_json(FrameType.CONTROL)
        proof = base64.b64decode(answer.get("proof", ""))
        if record is None:
            return await self._refuse(connection, channel, remote, f"unknown tunnel {tunnel_id}")
        if not verify_proof(record.auth_key, nonce, record.id, connector_id, conn_index, proof):
            return await self._refuse(connection, channel, remote,
                                      f"wrong secret for tunnel {record.name} ({record.id})")
        for hostname in hello.get("hostnames", []) or []:
            owner = self.store.by_hostname(hostname)
            if owner is None or owner.id != record.id:
                whose = f"tunnel {owner.name}" if owner else "no tunnel"
                return await self._refuse(
                    connection, channel, remote,
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
        await channel.send_json(FrameType.CONTROL, {
            "type": "registered",
            "edge_id": self.edge_id,
            "location": self.location,
            "group": live.group,
            "hostnames": list(record.hostnames),
        })
        logger.info(
            "Connection %s registered connIndex=%d tunnel=%s ip=%s group=%s%s",
            connector_id, conn_index, record.name, remote, live.group,
            "" if live.post_quantum else " (NOT post-quantum)",
        )
        return live

    async def _refuse(
        self, connection: TunnelConnection, channel: Channel, remote: str, reason: str
    ) -> LiveConnection | None:
        logger.warning("refused connector from %s: %s", remote, reason)
        self.on_event("refused", {"remote": remote, "reason": reason})
        try:
            await channel.send_json(FrameType.CONTROL, {"type": "error", "reason": reason})
        except StreamReset:
            pass
        await asyncio.sleep(0.05)  # let the reason reach the connector before the close
        connection.close(error_code=ERROR_AUTH, reason_phrase=reason[:200])
        return None


def _remote(connection: TunnelConnection) -> str:
    try:
        host, port = peer_address(connection)
        return f"{host}:{port}"
    except (AttributeError, IndexError):
        return "?"
