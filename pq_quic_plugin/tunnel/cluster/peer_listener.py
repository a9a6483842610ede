"""The serving edge's relay listener (``cluster.relay``): QUIC on UDP and HTTP/2 on TLS over
TCP at one address, post-quantum only, for the cluster's other edges (hop 2).

A peer link is accepted like a connector's (:mod:`..edge.connectors`): the control stream
first, a strict exchange with a deadline, nothing else until it is done. But the peer proves
the cluster key (:mod:`.peer_auth`), not a tunnel's, and then opens a stream per visitor
request (:mod:`.peer_serve`). A stranger, or an edge with another cluster secret, gets one
answer (:data:`~.peer_auth.AUTH_FAILED`) whatever failed, the connection closed with 0x12, and
the reason goes to this edge's log only. The peer's proof must be made over the certificate
this edge presented on that very connection (:mod:`.cert_binding`): one made over another
certificate means something between the two edges terminated TLS, and is refused as such.

Over HTTP/2 the relaying edge plays the tunnel's "edge" role (the HTTP/2 client that opens
streams) and this edge the "connector" role, which is why the TCP link is an
``H2TunnelConnection("connector")`` even though this edge is the TLS server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aioquic.asyncio import serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration

from ... import negotiated_group
from ...aioquic_binding import configure
from ...aioquic_binding.auth_config import configure_auth
from ...aioquic_binding.facade import server_port
from ...policy import Policy
from ..edge.registry import Registry
from ..hostnames import format_hostport
from ..log_safe import shown
from ..wire import (
    ALPN,
    CONTROL_STREAM_ID,
    ERROR_AUTH,
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
from .cert_binding import FINGERPRINT_BYTES, presented_fingerprint, show_fingerprint
from .peer_auth import (
    AUTH_FAILED,
    CERTIFICATE_MISMATCH,
    NONCE_BYTES,
    PEER_VERSION,
    PROOF_BYTES,
    RELAYING,
    SERVING,
    PeerMalformed,
    b64,
    new_nonce,
    parse_bytes,
    parse_edge_id,
    peer_proof,
    verify_peer_proof,
)
from .peer_serve import serve_relayed
from .stats import PeerStats

__all__ = ["ADMISSION_DEADLINE", "PeerListener"]

logger = logging.getLogger("pq_quic_plugin.tunnel.cluster")

#: From a peer link's first packet to a finished cluster authentication, at most.
ADMISSION_DEADLINE = 10.0
#: A peer link that hears nothing for this long is closed (the relaying edge pings every
#: second).
IDLE_TIMEOUT = 10.0

Handler = Callable[[Any], Awaitable[None]]


class PeerListener:
    """Accepts peer edges' links on the relay address and serves their relayed requests."""

    def __init__(
        self, edge_id: str, key: bytes, registry: Registry, stats: PeerStats | None = None
    ) -> None:
        self.edge_id = edge_id
        self._key = key
        self.registry = registry
        self.stats = stats if stats is not None else PeerStats()
        self._quic: QuicServer | None = None
        self._tcp: asyncio.Server | None = None
        self._accepting = True
        self._links: set[TunnelLink] = set()

    async def start(
        self,
        host: str,
        port: int,
        certfile: str,
        keyfile: str,
        groups: Sequence[str] | None = None,
        certificates: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Bind UDP, then TCP on the same port; returns the port. Post-quantum key exchange
        only (``require``) on both."""
        config = QuicConfiguration(
            is_client=False, alpn_protocols=[ALPN], idle_timeout=IDLE_TIMEOUT
        )
        config.load_cert_chain(certfile, keyfile)
        configure(config, Policy.REQUIRE, groups=groups)
        configure_auth(config, "prefer", certificates=list(certificates))
        make_handler = self._make_handler

        class _PeerQuic(TunnelConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.stream_handler = make_handler(self)

        quic, tcp, bound = await listen_quic_and_h2(
            host,
            port,
            lambda p: serve(host, p, configuration=config, create_protocol=_PeerQuic),
            server_port,
            lambda server: server.close(),
            edge_tls(certfile, keyfile, Policy.REQUIRE, groups, certificates),
            self._h2_link,
        )
        self._quic, self._tcp = quic, tcp
        logger.info(
            "relay listener for the cluster's edges on udp and tcp %s (quic, http2), "
            "post-quantum key exchange required",
            format_hostport(host, bound),
        )
        return bound

    def stop_accepting(self) -> None:
        self._accepting = False

    def close(self) -> None:
        """Stop listening and close every peer link (the peers fail over to other edges)."""
        for server in (self._quic, self._tcp):
            if server is not None:
                server.close()
        for link in list(self._links):
            if not link.closed:
                link.close(error_code=0x11, reason_phrase="edge shutting down")
                link.transmit()

    def _h2_link(self) -> H2TunnelConnection:
        link = _PeerH2("connector")
        link.stream_handler = self._make_handler(link)
        return link

    def _make_handler(self, link: TunnelLink) -> Handler:
        if not self._accepting:
            link.refuse_soon("edge shutting down")
        state = _Admission(link, ADMISSION_DEADLINE, self._deadline_passed)
        self._links.add(link)
        link.on_close.append(self._links.discard)

        async def handle(stream: TunnelStream) -> None:
            if state.peer is not None:
                await serve_relayed(stream, state.peer, self.registry, self.edge_id, self.stats)
            elif state.control_claimed or stream.stream_id != CONTROL_STREAM_ID:
                self._refuse(link, f"opened stream {stream.stream_id} before authenticating")
            else:
                state.control_claimed = True
                await self._admit(link, stream, state)

        return handle

    def _deadline_passed(self, link: TunnelLink) -> None:
        self._refuse(link, f"no cluster authentication within {ADMISSION_DEADLINE:g}s")

    def _refuse(self, link: TunnelLink, detail: str) -> None:
        """Log why, tell the peer nothing but :data:`AUTH_FAILED`, close with 0x12."""
        logger.warning("refused relay link from %s: %s", _remote(link), detail)
        if not link.closed:
            link.close(error_code=ERROR_AUTH, reason_phrase=AUTH_FAILED)
            link.transmit()

    async def _admit(self, link: TunnelLink, control: TunnelStream, state: _Admission) -> None:
        """The exchange of :mod:`.peer_auth`, then the control stream's pings until the
        link closes."""
        try:
            peer = await asyncio.wait_for(self._authenticate(link, control), state.remaining())
        except PeerMalformed as exc:
            logger.warning("refused relay link from %s: %s", _remote(link), exc)
            with contextlib.suppress(StreamReset):
                await control.send_json(FrameType.CONTROL, {"type": "error", "reason": AUTH_FAILED})
            await asyncio.sleep(0.05)  # let the reason arrive before the close
            if not link.closed:
                link.close(error_code=ERROR_AUTH, reason_phrase=AUTH_FAILED)
                link.transmit()
            return
        except asyncio.TimeoutError:
            self._deadline_passed(link)
            return
        except (StreamReset, ProtocolError) as exc:
            self._refuse(link, f"cluster authentication failed: {shown(str(exc), 200)}")
            return
        state.done(peer)
        group = negotiated_group(link)
        logger.info(
            "relay link from edge %s (%s) admitted over %s, group %s",
            shown(peer, 60),
            _remote(link),
            link.protocol_name,
            group.name if group else None,
        )
        link.on_close.append(
            lambda c: logger.info(
                "relay link from edge %s closed (%s)", shown(peer, 60), shown(c.close_reason, 200)
            )
        )
        while (frame := await control.read()) is not None:
            kind, payload = frame
            if kind != FrameType.CONTROL:
                continue
            try:
                message = decode_control(payload)
            except ProtocolError:
                continue
            if message.get("type") == "ping":
                load = self.stats.of(peer).in_flight + sum(c.in_flight for c in self.registry)
                pong = {"type": "pong", "id": message.get("id"), "load": load}
                await control.send_json(FrameType.CONTROL, pong)

    async def _authenticate(self, link: TunnelLink, control: TunnelStream) -> str:
        """Returns the peer's edge ID; :class:`PeerMalformed` (for the log) on any failure."""
        hello = await _read_control(control, "peer-hello")
        version = hello.get("version")
        if version != PEER_VERSION or isinstance(version, bool):
            raise PeerMalformed(f"peer-hello version {shown(version, 20)} is not {PEER_VERSION}")
        claimed = parse_edge_id(hello)
        ours = presented_fingerprint(link)
        if ours is None:
            raise PeerMalformed("cannot read the certificate this edge presented on the link")
        nonce = new_nonce()
        challenge = {"type": "challenge", "nonce": b64(nonce), "certificate": b64(ours)}
        await control.send_json(FrameType.CONTROL, challenge)
        auth = await _read_control(control, "peer-auth")
        proof = parse_bytes(auth, "proof", PROOF_BYTES)
        theirs = parse_bytes(auth, "nonce", NONCE_BYTES)
        seen = parse_bytes(auth, "certificate", FINGERPRINT_BYTES)
        if not verify_peer_proof(self._key, RELAYING, claimed, ours, proof, nonce):
            # Which failure, for the log: a member's proof over another certificate (it did
            # not reach this edge's TLS), or no member at all.
            if seen != ours and verify_peer_proof(self._key, RELAYING, claimed, seen, proof, nonce):
                raise PeerMalformed(
                    f"edge {shown(claimed, 60)}: relay proof does not match this edge's "
                    f"certificate: {CERTIFICATE_MISMATCH} (it received "
                    f"{show_fingerprint(seen)}, this edge presented {show_fingerprint(ours)})"
                )
            raise PeerMalformed(
                f"edge {shown(claimed, 60)} does not hold this cluster's secret (wrong proof)"
            )
        if claimed == self.edge_id:
            raise PeerMalformed(f"a peer claims this edge's own ID {shown(claimed, 60)}")
        mine = peer_proof(self._key, SERVING, self.edge_id, ours, theirs, nonce)
        welcome = {"type": "peer-welcome", "edge_id": self.edge_id, "proof": b64(mine)}
        await control.send_json(FrameType.CONTROL, welcome)
        return claimed


class _PeerH2(H2TunnelConnection):
    """A peer link over TCP: starts the admission on the control stream once TLS is up (over
    HTTP/2 this side's control stream is not handed to the stream handler by itself)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        handler = self.stream_handler
        if not self.closed and handler is not None:
            task = asyncio.ensure_future(handler(self.open_channel()))
            task.add_done_callback(_quiet)


def _quiet(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished task's outcome (its failure was logged or is a closed link)."""
    if not task.cancelled():
        task.exception()


class _Admission:
    """A peer link until it is admitted: a deadline from its first packet, then who it is."""

    def __init__(
        self, link: TunnelLink, seconds: float, expired: Callable[[TunnelLink], None]
    ) -> None:
        self.control_claimed = False
        self.peer: str | None = None
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + seconds
        self._link = link
        self._expired = expired
        self._timer = loop.call_at(self._deadline, self._expire)
        link.on_close.append(lambda _: self._timer.cancel())

    def remaining(self) -> float:
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def done(self, peer: str) -> None:
        self.peer = peer
        self._timer.cancel()

    def _expire(self) -> None:
        if self.peer is None and not self._link.closed:
            self._expired(self._link)


async def _read_control(control: TunnelStream, expected: str) -> dict[str, Any]:
    frame = await control.read()
    if frame is None:
        raise PeerMalformed(f"control stream ended before {expected!r}")
    kind, payload = frame
    if kind != FrameType.CONTROL:
        raise PeerMalformed(f"expected a CONTROL frame ({expected!r}), got {kind.name}")
    try:
        message = decode_control(payload)
    except ProtocolError as exc:
        raise PeerMalformed(f"{expected!r}: {exc}") from None
    if message.get("type") != expected:
        raise PeerMalformed(f"expected {expected!r}, got {shown(message.get('type'), 40)}")
    return message


def _remote(link: TunnelLink) -> str:
    try:
        return format_hostport(*link.peer_address())
    except (AttributeError, IndexError, TypeError):
        return "?"
