"""The relaying edge's links to its peers (hop 2): dialled on first need, authenticated with
the cluster key, kept open and pinged, closed when the peer leaves the registry.

A link is QUIC by default; when QUIC cannot connect at all (UDP blocked or refused), the link
is made over HTTP/2 on TLS over TCP instead (:mod:`.peer_dial`), as a connector's
``protocol: auto`` does. Both
are post-quantum only (``require``): a peer that does not agree on a post-quantum group is
not relayed to. By default the peer's certificate is not checked against a CA (edges'
certificates are for visitors' names, not relay addresses): the peer is authenticated by
proving the cluster key (:mod:`.peer_auth`), after it has seen ours, and both proofs cover the
certificate this side received (:mod:`.cert_binding`), so a TLS-terminating middlebox fails
them. With ``cluster.ca-file`` the certificate is verified too, against that CA and the relay
address's host (or ``cluster.server-name``).

Each link's round-trip time is measured by a ``ping`` on the control stream every
:data:`PING_INTERVAL` (which is also what keeps a QUIC link alive), and the peer's answer
carries its load (requests in flight); :mod:`.choose` ranks peers by both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import negotiated_group
from ..edge.admission import next_control
from ..hop_auth import auth_fields
from ..hostnames import HostPort
from ..log_safe import shown
from ..wire import (
    ERROR_SHUTDOWN,
    FrameType,
    ProtocolError,
    StreamReset,
    TunnelLink,
    TunnelStream,
    control_messages,
)
from .cert_binding import seen_fingerprint, show_fingerprint
from .peer_auth import (
    CERTIFICATE_MISMATCH,
    PEER_VERSION,
    RELAYING,
    SERVING,
    CertificateMismatch,
    PeerMalformed,
    b64,
    new_nonce,
    parse_certificate,
    parse_nonce,
    parse_proof,
    peer_proof,
    verify_peer_proof,
)
from .peer_dial import PING_INTERVAL, PeerVerify, dial_peer, failure_text
from .stats import PeerCounts

__all__ = ["CONNECT_TIMEOUT", "PING_INTERVAL", "PeerError", "PeerLink", "open_peer_link"]

logger = logging.getLogger("pq_quic_plugin.tunnel.cluster")

#: Handshake plus cluster authentication, per transport, at most.
CONNECT_TIMEOUT = 5.0
#: Weight of a new RTT sample in the smoothed RTT.
_ALPHA = 0.25


class PeerError(Exception):
    """A peer link could not be opened (network, TLS, or cluster authentication)."""


class PeerLink:
    """One authenticated link to a peer edge, and what is known of its speed and load."""

    def __init__(
        self,
        edge_id: str,
        address: HostPort,
        link: TunnelLink,
        control: TunnelStream,
        stack: contextlib.AsyncExitStack,
        counts: PeerCounts,
    ) -> None:
        self.edge_id = edge_id
        self.address = address
        self.link = link
        self.control = control
        self.counts = counts
        #: Smoothed round-trip time of the control stream's pings (seconds).
        self.srtt: float | None = None
        #: Requests in flight at the peer, as its last pong said.
        self.load = 0
        self._stack = stack
        self._sent: dict[int, float] = {}
        self._tasks = [asyncio.ensure_future(self._ping()), asyncio.ensure_future(self._pongs())]
        group = negotiated_group(link)
        self.group = group.name if group else None
        self.post_quantum = bool(group and group.post_quantum)

    @property
    def usable(self) -> bool:
        return not self.link.closed

    def hop(self) -> dict[str, Any]:
        """The ``edge-edge`` hop entry: this edge's view of its handshake with the peer."""
        return {
            "hop": "edge-edge",
            "transport": self.link.transport_name,
            "group": self.group,
            "post_quantum": self.post_quantum,
            **auth_fields(self.link),
        }

    def sample(self, seconds: float) -> None:
        self.srtt = seconds if self.srtt is None else (1 - _ALPHA) * self.srtt + _ALPHA * seconds

    async def _ping(self) -> None:
        number = 0
        with contextlib.suppress(StreamReset, ConnectionError):
            while not self.link.closed:
                number += 1
                self._sent = {k: v for k, v in self._sent.items() if k > number - 10}
                self._sent[number] = time.monotonic()
                await self.control.send_json(FrameType.CONTROL, {"type": "ping", "id": number})
                await asyncio.sleep(PING_INTERVAL)

    async def _pongs(self) -> None:
        with contextlib.suppress(StreamReset, ConnectionError):
            async for message in control_messages(self.control):
                sent = self._sent.pop(message.get("id"), None)  # type: ignore[arg-type]
                if message.get("type") == "pong" and sent is not None:
                    self.sample(time.monotonic() - sent)
                    load = message.get("load")
                    self.load = load if isinstance(load, int) and load >= 0 else self.load

    async def aclose(self, reason: str) -> None:
        for task in self._tasks:
            task.cancel()
        if not self.link.closed:
            self.link.close(error_code=ERROR_SHUTDOWN, reason_phrase=reason)
            self.link.transmit()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stack.aclose(), 2.0)


async def open_peer_link(
    own_id: str,
    key: bytes,
    peer_id: str,
    address: HostPort,
    counts: PeerCounts,
    protocol: str = "auto",
    groups: Sequence[str] | None = None,
    ca_file: Path | None = None,
    server_name: str | None = None,
) -> PeerLink:
    """Dial ``address`` (QUIC, or HTTP/2 when QUIC cannot connect under ``auto``) and
    authenticate; :class:`PeerError` saying why not. With ``ca_file`` the peer's certificate
    must also verify against that CA for ``server_name`` (default: the address's host)."""
    transports = {"auto": ("quic", "http2"), "quic": ("quic",), "http2": ("http2",)}[protocol]
    verify = None if ca_file is None else PeerVerify(ca_file, server_name or address.host)
    failures = []
    for transport in transports:
        stack = contextlib.AsyncExitStack()
        try:
            link, control = await asyncio.wait_for(
                dial_peer(stack, transport, address, groups, verify), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError, ConnectionError, ssl.SSLError) as exc:
            await _quietly_close(stack)
            failures.append(f"{transport}: {failure_text(exc)}")
            continue
        try:
            seen = seen_fingerprint(link)
            if seen is None:
                raise PeerMalformed("the peer's certificate cannot be read: nothing to bind to")
            said = await asyncio.wait_for(
                _authenticate(control, own_id, key, peer_id, seen), CONNECT_TIMEOUT
            )
        except (PeerMalformed, StreamReset, ProtocolError, asyncio.TimeoutError) as exc:
            if isinstance(exc, CertificateMismatch):  # our own words and hex: shown as they are
                reason = str(exc)
            else:  # the peer's reason (read before our own close replaces it), escaped
                reason = shown(link.close_reason if link.closed else failure_text(exc), 200)
            await _quietly_close(stack)
            raise PeerError(f"edge {peer_id} at {address}: {reason}") from None
        if said != peer_id:
            logger.info("peer at %s says it is edge %s, not %s", address, shown(said), peer_id)
        return PeerLink(peer_id, address, link, control, stack, counts)
    raise PeerError(f"edge {peer_id} at {address}: cannot connect ({'; '.join(failures)})")


async def _authenticate(
    control: TunnelStream, own_id: str, key: bytes, peer_id: str, seen: bytes
) -> str:
    """Our side of :mod:`.peer_auth`, bound to ``seen`` (the fingerprint of the certificate
    this handshake received); returns the ID the peer proved."""
    await control.send_json(
        FrameType.CONTROL, {"type": "peer-hello", "version": PEER_VERSION, "edge_id": own_id}
    )
    challenge = await _expect(control, "challenge")
    nonce = parse_nonce(challenge)
    presented = parse_certificate(challenge)
    mine = new_nonce()
    proof = peer_proof(key, RELAYING, own_id, seen, nonce)
    # Sent even when the fingerprints differ: bound to a certificate the serving edge does not
    # hold, it is worthless to a middlebox, and it lets the serving edge log what happened.
    await control.send_json(
        FrameType.CONTROL,
        {"type": "peer-auth", "proof": b64(proof), "nonce": b64(mine), "certificate": b64(seen)},
    )
    try:
        welcome = await _expect(control, "peer-welcome")
    except (PeerMalformed, StreamReset, ProtocolError):
        if presented == seen:
            raise
        welcome = {}
    if presented != seen:  # the serving edge refuses too; this side says why
        raise CertificateMismatch(
            f"relay proof does not match the peer's certificate: {CERTIFICATE_MISMATCH} "
            f"(received here: {show_fingerprint(seen)}, "
            f"the edge says it presented: {show_fingerprint(presented)})"
        )
    said = welcome.get("edge_id")
    theirs = parse_proof(welcome)
    if not isinstance(said, str) or not verify_peer_proof(
        key, SERVING, said, seen, theirs, mine, nonce
    ):
        raise PeerMalformed("the peer did not prove the cluster key: not one of this cluster")
    return said


async def _expect(control: TunnelStream, kind: str) -> dict[str, Any]:
    """The next control message, which must be of type ``kind``; the peer's ``error`` (its
    refusal) is raised as :class:`PeerMalformed` with the peer's reason."""
    message = await next_control(control, kind, PeerMalformed)
    if message.get("type") == "error":
        raise PeerMalformed(str(message.get("reason", "refused")))
    if message.get("type") != kind:
        raise PeerMalformed(f"expected {kind!r}, got {shown(message.get('type'), 40)}")
    return message


async def _quietly_close(stack: contextlib.AsyncExitStack) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stack.aclose(), 2.0)
