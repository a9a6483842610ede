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
peer sent escaped and cut short (:mod:`..log_safe`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio import serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration

from ... import negotiated_group
from ...aioquic_binding import configure
from ...aioquic_binding.auth_config import configure_auth
from ...aioquic_binding.facade import server_port
from ...policy import Policy
from ..credentials import verify_proof
from ..hop_auth import describe_auth
from ..hostnames import format_hostport
from ..log_safe import shown, shown_host
from ..observer import NO_OBSERVER, Observer
from ..wire import (
    ALPN,
    CONTROL_STREAM_ID,
    ERROR_AUTH,
    PROTOCOL_VERSION,
    FrameType,
    ProtocolError,
    StreamReset,
    TunnelConnection,
    TunnelLink,
    TunnelStream,
    decode_control,
)
from ..wire.h2_endpoints import edge_tls, listen_quic_and_h2
from ..wire.h2_transport import H2TunnelConnection
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

#: What a connection's streams are handed to (a QUIC ``Channel`` or an ``H2Channel``).
Handler = Callable[[Any], Awaitable[None]]


@dataclass(eq=False)
class ConnectorListener:
    """Accepts connector connections, authenticates them and keeps the registry current.

    It holds what it is given, plus the QUIC and TCP servers once started; ``edge_id`` and
    ``location`` are what a connector is told when it registers. A listener equals only itself.
    """

    store: EdgeStore
    registry: Registry
    edge_id: str
    location: str
    observer: Observer = NO_OBSERVER
    registration_deadline: float = REGISTRATION_DEADLINE
    _server: QuicServer | None = field(default=None, init=False, repr=False)
    _tcp: asyncio.Server | None = field(default=None, init=False, repr=False)
    _accepting: bool = field(default=True, init=False, repr=False)

    async def start(
        self,
        host: str,
        port: int,
        certfile: str,
        keyfile: str,
        policy: Policy = Policy.PREFER,
        groups: Sequence[str] | None = None,
        idle_timeout: float = 15.0,
        certificates: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Bind the UDP listener, then the TCP one on the same port; return the port (useful
        when ``port`` is 0). ``certificates``: an ML-DSA pair next to ``certfile``, for
        connectors that offer ML-DSA (docs/auth.md)."""
        config = QuicConfiguration(
            is_client=False, alpn_protocols=[ALPN], idle_timeout=idle_timeout
        )
        config.load_cert_chain(certfile, keyfile)
        if policy is not Policy.OFF:
            configure(config, policy, groups=groups)
            configure_auth(config, "prefer", certificates=list(certificates))
        make_handler = self._make_handler

        class _Protocol(TunnelConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.stream_handler = make_handler(self)

        quic, tcp, bound = await listen_quic_and_h2(
            host,
            port,
            lambda p: serve(host, p, configuration=config, create_protocol=_Protocol),
            server_port,
            lambda server: server.close(),
            edge_tls(certfile, keyfile, policy, groups, certificates),
            self._h2_link,
        )
        self._server, self._tcp = quic, tcp
        logger.info(
            "connector listener on udp and tcp %s (quic, http2), key exchange policy %s%s",
            format_hostport(host, bound),
            policy,
            f" groups={groups}" if groups else "",
        )
        return int(bound)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._tcp is not None:
            self._tcp.close()

    def _h2_link(self) -> H2TunnelConnection:
        """A new connector connection over TCP (its TLS handshake still to come)."""
        link = H2TunnelConnection("edge")
        link.stream_handler = self._make_handler(link)
        return link

    def stop_accepting(self) -> None:
        """Refuse new connections from now on (the edge is stopping); live ones carry on."""
        self._accepting = False

    def _make_handler(self, connection: TunnelLink) -> Handler:
        if not self._accepting:
            connection.refuse_soon("edge shutting down")
        pending = _Pending(connection, self.registration_deadline)
        connection.on_close.append(lambda c: self._handshake_failed(c, pending))

        async def handle(channel: TunnelStream) -> None:
            if pending.registered:
                # Only the edge opens request streams: a stream error, this stream only.
                channel.reset()
            elif pending.control_claimed or channel.stream_id != CONTROL_STREAM_ID:
                # Before authentication nothing but the control stream is allowed at all.
                self._drop(connection, f"opened stream {channel.stream_id} before registering")
            else:
                pending.control_claimed = True
                await self._register(connection, channel, pending)

        return handle

    def _handshake_failed(self, connection: TunnelLink, pending: _Pending) -> None:
        """A connection that closed before its handshake finished: a failed handshake (a
        classical connector under ``require``, a certificate it refused, a silent peer)."""
        if not connection.handshake_done:
            elapsed = self.registration_deadline - pending.remaining()
            self.observer.handshake(None, False, elapsed)

    def _drop(self, connection: TunnelLink, detail: str) -> None:
        """Close an unauthenticated connection that broke the protocol (no answer: the
        peer did not follow it, and a stranger learns nothing from the close)."""
        remote = _remote(connection)
        logger.warning("refused connector from %s: %s", remote, detail)
        self.observer.connector_refused(remote, detail)
        if not connection.closed:
            connection.close(error_code=ERROR_AUTH, reason_phrase=MALFORMED)

    async def _register(
        self, connection: TunnelLink, channel: TunnelStream, pending: _Pending
    ) -> None:
        remote = _remote(connection)
        try:
            live = await asyncio.wait_for(
                self._authenticate(connection, channel, remote), pending.remaining()
            )
        except _Refused as refused:
            await self._refuse(connection, channel, remote, refused)
            return
        except asyncio.TimeoutError:
            self._drop(connection, f"no registration within {self.registration_deadline:g}s")
            return
        except (StreamReset, ProtocolError) as exc:
            self._drop(connection, f"registration failed: {shown(str(exc), 200)}")
            return
        pending.done()
        self.registry.add(live)
        # Counted once registered: until then the edge does not know the connection is a
        # connector's. The time runs from its first datagram.
        elapsed = self.registration_deadline - pending.remaining()
        self.observer.handshake(live.group, True, elapsed)
        self.observer.connector_registered(live)

        def forget(_: Any) -> None:
            self.registry.remove(live)
            logger.info(
                "Connection %s unregistered connIndex=%d tunnel=%s (%s)",
                live.connector_id,
                live.conn_index,
                live.tunnel_name,
                shown(connection.close_reason, 200),
            )
            self.observer.connector_unregistered(live)

        connection.on_close.append(forget)
        # The control stream stays open: the connector announces draining on it. A message
        # we cannot read is ignored (a stream error never takes the connection down).
        while (frame := await channel.read()) is not None:
            kind, payload = frame
            if kind != FrameType.CONTROL:
                continue
            try:
                message = decode_control(payload)
            except ProtocolError as exc:
                logger.debug("connection %s: ignored control message: %s", live.connector_id, exc)
                continue
            if message.get("type") == "drain" and not live.draining:
                live.draining = True
                logger.info(
                    "Connection %s connIndex=%d is draining (connector shutting down)",
                    live.connector_id,
                    live.conn_index,
                )

    async def _authenticate(
        self, connection: TunnelLink, channel: TunnelStream, remote: str
    ) -> LiveConnection:
        """The registration exchange; raises :class:`_Refused` with what the peer may be told.

        Whatever made authentication fail (no such tunnel, a tunnel name instead of its
        UUID, a wrong proof), the peer gets the same answer after the same work: a challenge,
        then a proof checked against the tunnel's key or, for no tunnel, a random one.
        """
        hello_message = await _read_control(channel, "hello")
        try:
            version = parse_version(hello_message)
        except Malformed as exc:
            raise _Refused(MALFORMED, str(exc)) from None
        if version != PROTOCOL_VERSION:
            reason = f"protocol version {version} not supported (edge speaks {PROTOCOL_VERSION})"
            raise _Refused(reason, reason)
        try:
            hello = parse_hello(hello_message)
        except Malformed as exc:
            raise _Refused(MALFORMED, str(exc)) from None
        nonce = secrets.token_bytes(32)
        await channel.send_json(
            FrameType.CONTROL, {"type": "challenge", "nonce": base64.b64encode(nonce).decode()}
        )
        try:
            presented = parse_auth(await _read_control(channel, "auth"))
        except Malformed as exc:
            raise _Refused(MALFORMED, str(exc)) from None
        tunnel_id = canonical_uuid(hello.tunnel_id)
        record = await self.store.fresh_by_id(tunnel_id) if tunnel_id else None
        key = record.auth_key if record is not None else _NO_TUNNEL_KEY
        proven = verify_proof(
            key, nonce, tunnel_id or _NO_TUNNEL_ID, hello.connector_id, hello.conn_index, presented
        )
        if tunnel_id is None:
            raise _Refused(AUTH_FAILED, f"tunnel_id {shown(hello.tunnel_id)} is not a UUID")
        if record is None:
            raise _Refused(AUTH_FAILED, f"unknown tunnel {tunnel_id}")
        if not proven:
            raise _Refused(AUTH_FAILED, f"wrong secret for tunnel {record.name} ({record.id})")
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
                raise _Refused(reason, reason)
        group = negotiated_group(connection)
        live = LiveConnection(
            tunnel_id=record.id,
            tunnel_name=record.name,
            connector_id=hello.connector_id,
            conn_index=hello.conn_index,
            connection=connection,
            group=group.name if group else None,
            post_quantum=bool(group and group.post_quantum),
            remote=remote,
            version=hello.software,
            protocol=connection.protocol_name,
            hostnames=record.hostnames,
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
            "Connection %s registered connIndex=%d tunnel=%s ip=%s protocol=%s group=%s%s auth=%s",
            hello.connector_id,
            hello.conn_index,
            record.name,
            remote,
            connection.protocol_name,
            live.group,
            "" if live.post_quantum else " (NOT post-quantum)",
            describe_auth(connection),
        )
        return live

    async def _refuse(
        self, connection: TunnelLink, channel: TunnelStream, remote: str, refused: _Refused
    ) -> None:
        """Log the detail, tell the peer only ``refused.public``, then close the connection."""
        logger.warning("refused connector from %s: %s", remote, refused.detail)
        self.observer.connector_refused(remote, refused.detail)
        try:
            await channel.send_json(FrameType.CONTROL, {"type": "error", "reason": refused.public})
        except StreamReset:
            pass
        await asyncio.sleep(0.05)  # let the reason reach the connector before the close
        if not connection.closed:
            connection.close(error_code=ERROR_AUTH, reason_phrase=refused.public[:200])


class _Refused(Exception):
    """A refusal: ``public`` is what the peer is told, ``detail`` what the edge logs."""

    def __init__(self, public: str, detail: str) -> None:
        super().__init__(detail)
        self.public = public
        self.detail = detail


class _Pending:
    """A connector connection until it registers: it has ``deadline`` seconds
    (:data:`REGISTRATION_DEADLINE`) from its first datagram; a peer that never sends
    ``hello`` is closed, keepalives or not."""

    def __init__(self, connection: TunnelLink, deadline: float) -> None:
        self.connection = connection
        self.control_claimed = False
        self.registered = False
        loop = asyncio.get_running_loop()
        self._seconds = deadline
        self._deadline = loop.time() + deadline
        self._timer = loop.call_at(self._deadline, self._expire)
        connection.on_close.append(lambda _: self._timer.cancel())

    def remaining(self) -> float:
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def done(self) -> None:
        self.registered = True
        self._timer.cancel()

    def _expire(self) -> None:
        if self.registered or self.connection.closed:
            return
        logger.warning(
            "refused connector from %s: no registration within %gs",
            _remote(self.connection),
            self._seconds,
        )
        self.connection.close(error_code=ERROR_AUTH, reason_phrase=MALFORMED)


async def _read_control(channel: TunnelStream, expected: str) -> dict[str, Any]:
    """The next frame as a control message; anything else is a refusal (for the log)."""
    frame = await channel.read()
    if frame is None:
        raise _Refused(MALFORMED, f"control stream ended before {expected!r}")
    kind, payload = frame
    if kind != FrameType.CONTROL:
        raise _Refused(MALFORMED, f"expected a CONTROL frame ({expected!r}), got {kind.name}")
    try:
        return decode_control(payload)
    except ProtocolError as exc:
        raise _Refused(MALFORMED, f"{expected!r}: {exc}") from None


def _remote(connection: TunnelLink) -> str:
    try:
        return format_hostport(*connection.peer_address())
    except (AttributeError, IndexError, TypeError):
        return "?"
