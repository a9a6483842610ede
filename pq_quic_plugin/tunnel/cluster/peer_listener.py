"""The serving edge's relay listener (``cluster.relay``): QUIC on UDP and HTTP/2 on TLS over
TCP at one address, post-quantum only, for the cluster's other edges (hop 2).

A peer link is accepted like a connector's, by the same listener base
(:mod:`..edge.admission`): the control stream first, a strict exchange with a deadline, nothing
else until it is done; this module is only its gate. The peer proves the cluster key
(:mod:`.peer_auth`), not a tunnel's, and then opens a stream per visitor request
(:mod:`.peer_serve`). A stranger, or an edge with another cluster secret, gets one answer
(:data:`~.peer_auth.AUTH_FAILED`) whatever failed, the connection closed with 0x12, and the
reason goes to this edge's log only. The peer's proof must be made over the certificate this
edge presented on that very connection (:mod:`.cert_binding`): one made over another
certificate means something between the two edges terminated TLS, and is refused as such.

Over HTTP/2 the relaying edge plays the tunnel's "edge" role (the HTTP/2 client that opens
streams) and this edge the "connector" role, which is why the TCP link is an
``H2TunnelConnection("connector")`` even though this edge is the TLS server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from ... import negotiated_group
from ...policy import Policy
from ..edge.admission import AdmittingListener, Refused, Words, next_control, remote_of
from ..edge.registry import Registry
from ..log_safe import shown
from ..wire import FrameType, TunnelLink, TunnelStream, control_messages
from ..wire.h2_transport import H2TunnelConnection
from .cert_binding import presented_fingerprint, show_fingerprint
from .peer_auth import (
    AUTH_FAILED,
    CERTIFICATE_MISMATCH,
    PEER_VERSION,
    RELAYING,
    SERVING,
    PeerMalformed,
    b64,
    new_nonce,
    parse_certificate,
    parse_edge_id,
    parse_nonce,
    parse_proof,
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


class PeerListener(AdmittingListener[str]):
    """Accepts peer edges' links on the relay address and serves their relayed requests;
    post-quantum key exchange only (``require``), on both transports."""

    words = Words(
        "relay link", "cluster authentication", "authenticating", AUTH_FAILED, logger.name
    )
    policies = (Policy.REQUIRE,)
    idle_timeout = IDLE_TIMEOUT

    def __init__(
        self, edge_id: str, key: bytes, registry: Registry, stats: PeerStats | None = None
    ) -> None:
        super().__init__(ADMISSION_DEADLINE)
        self.edge_id = edge_id
        self._key = key
        self.registry = registry
        self.stats = stats if stats is not None else PeerStats()

    def listening(self, address: str, policy: Policy, groups: Sequence[str] | None) -> None:
        logger.info(
            "relay listener for the cluster's edges on udp and tcp %s (quic, http2), "
            "post-quantum key exchange required",
            address,
        )

    def close(self) -> None:
        """Stop listening and close every peer link (the peers fail over to other edges)."""
        super().close()
        self.close_links(0x11, "edge shutting down")

    # -- the gate ----------------------------------------------------------------------------

    def new_h2_link(self) -> H2TunnelConnection:
        return _PeerH2("connector")

    async def serve(self, stream: TunnelStream, peer: str) -> None:
        await serve_relayed(stream, peer, self.registry, self.edge_id, self.stats)

    async def admitted(
        self, link: TunnelLink, control: TunnelStream, peer: str, seconds: float
    ) -> None:
        """Log the new peer, then answer its pings (with this edge's load) until the link
        closes."""
        group = negotiated_group(link)
        logger.info(
            "relay link from edge %s (%s) admitted over %s, group %s",
            shown(peer, 60),
            remote_of(link),
            link.protocol_name,
            group.name if group else None,
        )
        link.on_close.append(
            lambda c: logger.info(
                "relay link from edge %s closed (%s)", shown(peer, 60), shown(c.close_reason, 200)
            )
        )
        async for message in control_messages(control):
            if message.get("type") == "ping":
                load = self.stats.of(peer).in_flight + sum(c.in_flight for c in self.registry)
                pong = {"type": "pong", "id": message.get("id"), "load": load}
                await control.send_json(FrameType.CONTROL, pong)

    async def authenticate(self, link: TunnelLink, control: TunnelStream, remote: str) -> str:
        """The exchange of :mod:`.peer_auth`; returns the peer's edge ID. Whatever fails, the
        peer is told :data:`~.peer_auth.AUTH_FAILED` and the log gets why."""
        try:
            return await self._prove(link, control)
        except PeerMalformed as exc:
            raise Refused(AUTH_FAILED, str(exc)) from None

    async def _prove(self, link: TunnelLink, control: TunnelStream) -> str:
        """Returns the peer's edge ID; :class:`PeerMalformed` (for the log) on any failure."""
        hello = await _expect(control, "peer-hello")
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
        auth = await _expect(control, "peer-auth")
        proof = parse_proof(auth)
        theirs = parse_nonce(auth)
        seen = parse_certificate(auth)
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


async def _expect(control: TunnelStream, expected: str) -> dict[str, Any]:
    """The next control message, which must be of type ``expected``."""
    message = await next_control(control, expected, PeerMalformed)
    if message.get("type") != expected:
        raise PeerMalformed(f"expected {expected!r}, got {shown(message.get('type'), 40)}")
    return message
