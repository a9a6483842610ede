"""The edge's listeners for connectors, QUIC on UDP and HTTP/2 on TLS over TCP at the same
address (docs/protocol.md): registration and authentication, the same on both transports.

A connector proves it holds the tunnel secret without sending it: the edge sends a fresh nonce
and the connector answers with an HMAC over the nonce and the connection's identity, keyed with
a key derived from the secret (the edge stores only that derived key). Hostnames a connector
claims must belong to its own tunnel; anything else is refused, logged, and nothing is routed.

Until it has registered, a connection is a stranger's: it gets :data:`REGISTRATION_DEADLINE`
from its first datagram, only the control stream, and strictly checked messages
(:mod:`.hello`); any error closes the whole connection. A stranger is told the same thing
whatever failed (:data:`AUTH_FAILED`); the reason goes to the edge's log, with every value the
peer sent escaped and cut short (:mod:`..log_safe`). Those rules, and both transports on one
port, are :mod:`.admission`'s, shared with the cluster's relay listener; this module is the
connector's gate: its registration, and what a registered connection may do.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from ... import negotiated_group
from ...policy import Policy
from ..credentials import verify_proof
from ..hop_auth import describe_auth
from ..log_safe import shown, shown_host
from ..observer import NO_OBSERVER, Observer
from ..wire import PROTOCOL_VERSION, FrameType, TunnelLink, TunnelStream, control_messages
from ..wire.h2_transport import H2TunnelConnection
from .admission import AdmittingListener, Refused, Words, next_control
from .hello import Malformed, canonical_uuid, parse_auth, parse_hello, parse_version
from .registry import LiveConnection, Registry
from .store import EdgeStore

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

#: From a connector connection's first datagram to a finished registration, at most.
REGISTRATION_DEADLINE = 10.0
#: What a stranger is told, whatever the reason (the edge's log has the detail).
AUTH_FAILED = (
    "authentication failed: no such tunnel, or the wrong secret (the edge's log has the detail)"
)
MALFORMED = "registration refused: protocol error (the edge's log has the detail)"
#: The key a proof for no tunnel is checked against, so that case costs what a wrong secret
#: costs; random per process, so no proof ever matches it.
_NO_TUNNEL_KEY = secrets.token_bytes(32)
_NO_TUNNEL_ID = "00000000-0000-4000-8000-000000000000"


class ConnectorListener(AdmittingListener[LiveConnection]):
    """Accepts connector connections, authenticates them and keeps the registry current.

    ``edge_id`` and ``location`` are what a connector is told when it registers;
    ``registration_deadline`` runs from a connection's first datagram.
    """

    words = Words("connector", "registration", "registering", MALFORMED, logger.name)

    def __init__(
        self,
        store: EdgeStore,
        registry: Registry,
        edge_id: str,
        location: str,
        observer: Observer = NO_OBSERVER,
        registration_deadline: float = REGISTRATION_DEADLINE,
    ) -> None:
        super().__init__(registration_deadline)
        self.store = store
        self.registry = registry
        self.edge_id = edge_id
        self.location = location
        self.observer = observer

    def listening(self, address: str, policy: Policy, groups: Sequence[str] | None) -> None:
        logger.info(
            "connector listener on udp and tcp %s (quic, http2), key exchange policy %s%s",
            address,
            policy,
            f" groups={groups}" if groups else "",
        )

    # -- the gate ----------------------------------------------------------------------------

    def new_h2_link(self) -> H2TunnelConnection:
        return H2TunnelConnection("edge")

    async def serve(self, stream: TunnelStream, live: LiveConnection) -> None:
        """Only the edge opens request streams: a stream error, this stream only."""
        stream.reset()

    def refused(self, remote: str, detail: str) -> None:
        self.observer.connector_refused(remote, detail)

    def handshake_failed(self, seconds: float) -> None:
        self.observer.handshake(None, False, seconds)

    async def admitted(
        self, link: TunnelLink, control: TunnelStream, live: LiveConnection, seconds: float
    ) -> None:
        """Registered: in the registry until the link closes. The control stream stays open:
        the connector announces draining on it; a message the edge cannot read is ignored (a
        stream error never takes the connection down)."""
        self.registry.add(live)
        # Counted once registered: until then the edge does not know the connection is a
        # connector's. The time runs from its first datagram.
        self.observer.handshake(live.group, True, seconds)
        self.observer.connector_registered(live)

        def forget(_: Any) -> None:
            self.registry.remove(live)
            logger.info(
                "Connection %s unregistered connIndex=%d tunnel=%s (%s)",
                live.connector_id,
                live.conn_index,
                live.tunnel_name,
                shown(link.close_reason, 200),
            )
            self.observer.connector_unregistered(live)

        link.on_close.append(forget)

        def ignored(exc: Exception) -> None:
            logger.debug("connection %s: ignored control message: %s", live.connector_id, exc)

        async for message in control_messages(control, ignored):
            if message.get("type") == "drain" and not live.draining:
                live.draining = True
                logger.info(
                    "Connection %s connIndex=%d is draining (connector shutting down)",
                    live.connector_id,
                    live.conn_index,
                )

    async def authenticate(
        self, link: TunnelLink, control: TunnelStream, remote: str
    ) -> LiveConnection:
        """The registration exchange; raises :class:`~.admission.Refused` with what the peer
        may be told.

        Whatever made authentication fail (no such tunnel, a tunnel name instead of its
        UUID, a wrong proof), the peer gets the same answer after the same work: a challenge,
        then a proof checked against the tunnel's key or, for no tunnel, a random one.
        """
        hello_message = await next_control(control, "hello", _malformed)
        try:
            version = parse_version(hello_message)
        except Malformed as exc:
            raise Refused(MALFORMED, str(exc)) from None
        if version != PROTOCOL_VERSION:
            reason = f"protocol version {version} not supported (edge speaks {PROTOCOL_VERSION})"
            raise Refused(reason, reason)
        try:
            hello = parse_hello(hello_message)
        except Malformed as exc:
            raise Refused(MALFORMED, str(exc)) from None
        nonce = secrets.token_bytes(32)
        await control.send_json(
            FrameType.CONTROL, {"type": "challenge", "nonce": base64.b64encode(nonce).decode()}
        )
        try:
            presented = parse_auth(await next_control(control, "auth", _malformed))
        except Malformed as exc:
            raise Refused(MALFORMED, str(exc)) from None
        tunnel_id = canonical_uuid(hello.tunnel_id)
        record = await self.store.fresh_by_id(tunnel_id) if tunnel_id else None
        key = record.auth_key if record is not None else _NO_TUNNEL_KEY
        proven = verify_proof(
            key, nonce, tunnel_id or _NO_TUNNEL_ID, hello.connector_id, hello.conn_index, presented
        )
        if tunnel_id is None:
            raise Refused(AUTH_FAILED, f"tunnel_id {shown(hello.tunnel_id)} is not a UUID")
        if record is None:
            raise Refused(AUTH_FAILED, f"unknown tunnel {tunnel_id}")
        if not proven:
            raise Refused(AUTH_FAILED, f"wrong secret for tunnel {record.name} ({record.id})")
        # Authenticated from here on: the connector may be told exactly what is wrong.
        for hostname in hello.hostnames:
            try:
                owner = self.store.by_hostname(hostname)
            except ValueError:
                owner = None
            if owner is None or owner.id != record.id:
                whose = f"tunnel {owner.name}" if owner else "no tunnel"
                reason = (
                    f"tunnel {record.name} claims hostname {shown_host(hostname)}, "
                    f"which belongs to {whose}"
                )
                raise Refused(reason, reason)
        group = negotiated_group(link)
        live = LiveConnection(
            tunnel_id=record.id,
            tunnel_name=record.name,
            connector_id=hello.connector_id,
            conn_index=hello.conn_index,
            connection=link,
            group=group.name if group else None,
            post_quantum=bool(group and group.post_quantum),
            remote=remote,
            version=hello.software,
            protocol=link.protocol_name,
            hostnames=record.hostnames,
        )
        await control.send_json(
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
            "Connection %s registered connIndex=%d tunnel=%s ip=%s protocol=%s group=%s%s auth=%s",
            hello.connector_id,
            hello.conn_index,
            record.name,
            remote,
            link.protocol_name,
            live.group,
            "" if live.post_quantum else " (NOT post-quantum)",
            describe_auth(link),
        )
        return live


def _malformed(detail: str) -> Refused:
    return Refused(MALFORMED, detail)
