"""How one tunnel connection comes up: the QUIC handshake's settings and the registration.

The handshake follows the reference design (docs/tunnel.md): with ``post-quantum: true`` the
connector offers post-quantum groups only (policy ``require``) and sends a key share for one
allowed group picked at random, so operators learn from the logs whether a fragmented
ClientHello gets through their network; there is never a classical fallback. Otherwise it
prefers post-quantum and accepts classical. Authentication is a separate setting
(:func:`auth_policy`): ``post-quantum-auth`` refuses an edge that does not sign with ML-DSA.

Registration then runs on the first stream (docs/protocol.md): ``hello`` naming the tunnel and
its hostnames, the edge's ``challenge`` nonce, our ``auth`` proof (an HMAC with the key derived
from the tunnel secret, bound to this connector and connection index), and ``registered`` or a
refusal, raised as :class:`RegistrationError`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from aioquic.quic.configuration import QuicConfiguration

from ... import __version__
from ...aioquic_binding import configure
from ...aioquic_binding.auth_config import configure_auth
from ..config import ConnectorConfig
from ..credentials import Credentials, proof
from ..hostnames import HostPort
from ..wire import (
    ALPN,
    CONTROL_STREAM_ID,
    PROTOCOL_VERSION,
    FrameType,
    StreamReset,
    TunnelLink,
    control_messages,
)

__all__ = [
    "DEFAULT_PQ_GROUPS",
    "REGISTRATION_TIMEOUT",
    "Identity",
    "RegistrationError",
    "auth_policy",
    "edge_configuration",
    "register",
    "watch_control",
]

logger = logging.getLogger("pq_quic_plugin.tunnel.connector")

#: The post-quantum groups a connector may use by default with --post-quantum, as in the
#: reference design today: the IANA hybrid first.
DEFAULT_PQ_GROUPS = ("X25519MLKEM768",)
#: How long the edge may take to send each answer of the registration exchange.
REGISTRATION_TIMEOUT = 10.0


class RegistrationError(ConnectionError):
    """The edge refused this connector (wrong secret, unknown tunnel, foreign hostname)."""


def edge_configuration(
    config: ConnectorConfig, edge: HostPort, idle_timeout: float
) -> tuple[QuicConfiguration, str | None]:
    """The QUIC client settings for one connection to ``edge``, and the post-quantum group
    whose key share it sends (None without ``post-quantum``: the policy picks)."""
    quic = QuicConfiguration(
        is_client=True,
        alpn_protocols=[ALPN],
        server_name=config.server_name_for(edge),
        idle_timeout=idle_timeout,
    )
    if config.ca_file:
        quic.load_verify_locations(str(config.ca_file))
    group = None
    if not config.post_quantum:
        configure(quic, "prefer")
    else:
        groups = config.groups or DEFAULT_PQ_GROUPS
        group = random.choice(groups)
        others = [g for g in groups if g != group]
        configure(quic, "require", groups=[group, *others], key_shares=[group])
    configure_auth(quic, auth_policy(config))
    return quic, group


def auth_policy(config: ConnectorConfig) -> str:
    """How the connector authenticates the edge, on both transports: ``post-quantum-auth``
    demands ML-DSA (``require``); otherwise ML-DSA is offered and a classical certificate
    accepted (``prefer``), and the hop list says which one the edge used."""
    return "require" if config.post_quantum_auth else "prefer"


@dataclass(frozen=True)
class Identity:
    """Who registers: the tunnel (and the key that proves it), this connector, its hostnames."""

    tunnel_id: str
    connector_id: str
    auth_key: bytes = field(repr=False)  # as secret as the tunnel secret
    hostnames: tuple[str, ...]

    @classmethod
    def of(cls, credentials: Credentials, connector_id: str, config: ConnectorConfig) -> Identity:
        hostnames = sorted({rule.hostname for rule in config.ingress if rule.hostname})
        return cls(credentials.tunnel_id, connector_id, credentials.auth_key, tuple(hostnames))


async def register(conn: TunnelLink, identity: Identity, conn_index: int) -> dict[str, Any]:
    """Run the registration exchange; returns the edge's ``registered`` message.

    Raises :class:`RegistrationError` when the edge refuses, ``asyncio.TimeoutError`` when it
    does not answer in :data:`REGISTRATION_TIMEOUT`, ``StreamReset`` when the connection drops.
    """
    channel = conn.open_channel()
    await channel.send_json(
        FrameType.CONTROL,
        {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "tunnel_id": identity.tunnel_id,
            "connector_id": identity.connector_id,
            "conn_index": conn_index,
            "software": f"pq-quic-plugin/{__version__}",
            "hostnames": list(identity.hostnames),
        },
    )
    challenge = await asyncio.wait_for(channel.read_json(FrameType.CONTROL), REGISTRATION_TIMEOUT)
    if challenge.get("type") == "error":
        raise RegistrationError(challenge.get("reason", "refused"))
    nonce = base64.b64decode(challenge["nonce"])
    mac = proof(identity.auth_key, nonce, identity.tunnel_id, identity.connector_id, conn_index)
    await channel.send_json(
        FrameType.CONTROL, {"type": "auth", "proof": base64.b64encode(mac).decode()}
    )
    answer = await asyncio.wait_for(channel.read_json(FrameType.CONTROL), REGISTRATION_TIMEOUT)
    if answer.get("type") != "registered":
        raise RegistrationError(answer.get("reason", "refused by the edge"))
    return answer


async def watch_control(conn: TunnelLink, conn_index: int) -> None:
    """Read what the edge says on the control stream after registration: today the
    ``hostnames`` message, sent when ``pq-tunnel route`` changed the tunnel's hostnames, which
    is logged so the operator sees what this connector now serves. Anything else is ignored,
    as the edge ignores what it does not know."""
    channel = conn.channels.get(CONTROL_STREAM_ID)
    if channel is None:
        return
    try:
        async for message in control_messages(channel):
            hostnames = message.get("hostnames")
            if message.get("type") == "hostnames" and isinstance(hostnames, list):
                logger.info(
                    "connIndex=%d: the edge routes hostnames %s to this tunnel",
                    conn_index,
                    ", ".join(str(h) for h in hostnames) or "(none)",
                )
    except StreamReset:
        return
