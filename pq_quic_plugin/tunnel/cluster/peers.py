"""An edge's part in a cluster's relay (hop 2): the relay listener for its peers, its links
to them, and the registry view that says which peer holds which tunnel (docs/cluster.md).

:class:`ClusterPeers` is what the edge wires in when ``cluster:`` is configured: ``start`` /
``stop`` from :class:`..edge.server.Edge`, and for :class:`..edge.app.EdgeApp`,
:meth:`ClusterPeers.candidates` (the peers holding a tunnel, best first, :mod:`.choose`) and
:meth:`ClusterPeers.route` (a :class:`.route.PeerRoute` over a link opened on first need).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from ..config.cluster import read_cluster_secret
from ..edge.registry import Registry
from .choose import DOWN_FOR, rank
from .directory import PeerDirectory, PeerEntry
from .peer_auth import derive_relay_key
from .peer_client import PeerError, PeerLink, open_peer_link
from .peer_listener import PeerListener
from .route import PeerRoute
from .stats import PeerStats

if TYPE_CHECKING:
    from ..config import EdgeConfig

__all__ = ["ClusterPeers"]

logger = logging.getLogger("pq_quic_plugin.tunnel.cluster")


class ClusterPeers:
    """The relay listener, the links to peer edges and the directory of who holds what."""

    def __init__(
        self,
        config: EdgeConfig,
        registry: Registry,
        client: aioredis.Redis,
    ) -> None:
        cluster = config.cluster
        assert cluster is not None
        self.config = config
        self.edge_id = config.edge_id
        self.protocol = cluster.protocol
        self._key = derive_relay_key(read_cluster_secret(cluster.secret_file))
        self.stats = PeerStats()
        self.listener = PeerListener(self.edge_id, self._key, registry, self.stats)
        self.directory = PeerDirectory(client, self.edge_id, cluster.registry_ttl)
        self.directory.on_gone = self._gone
        self.links: dict[str, PeerLink] = {}
        self.down_until: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._dialling: set[str] = set()  # peers being dialled in the background
        self._closing = False
        self.relay_port: int | None = None

    async def start(self) -> None:
        """Bind the relay listener (with the connectors' certificate) and read the registry."""
        cluster = self.config.cluster
        assert cluster is not None
        connectors = self.config.connectors
        self.relay_port = await self.listener.start(
            cluster.relay.host,
            cluster.relay.port,
            str(connectors.certfile),
            str(connectors.keyfile),
            certificates=[(str(c), str(k)) for c, k in connectors.certificates()],
        )
        await self.directory.refresh_soon()
        self.directory.start()

    def stop_accepting(self) -> None:
        self.listener.stop_accepting()

    async def stop(self) -> None:
        self._closing = True
        self.listener.close()
        await self.directory.stop()
        links = list(self.links.values())
        self.links.clear()
        await asyncio.gather(*(link.aclose("edge shutting down") for link in links))

    async def candidates(self, tunnel_id: str) -> list[PeerEntry]:
        """The peers holding a usable connection of the tunnel, best first. Those this edge
        has no link to yet are dialled in the background, so that their speed and load are
        known for the next requests (and a second edge is ready when the first fails)."""
        if not self.directory.holders(tunnel_id):
            await self.directory.refresh_soon()
        ranked = rank(self.directory.holders(tunnel_id), self.links, self.down_until)
        for peer in ranked[1:]:
            if peer.edge_id not in self.links and peer.edge_id not in self._dialling:
                self._dialling.add(peer.edge_id)
                asyncio.ensure_future(self._dial_ahead(peer))
        return ranked

    async def _dial_ahead(self, peer: PeerEntry) -> None:
        try:
            await self._link(peer)
        finally:
            self._dialling.discard(peer.edge_id)

    async def route(self, peer: PeerEntry, tunnel_id: str, tunnel_name: str) -> PeerRoute | None:
        """A route through ``peer``; None (logged, counted) when its link cannot be opened."""
        link = await self._link(peer)
        return None if link is None else PeerRoute(link, tunnel_id, tunnel_name)

    def describe(self) -> dict[str, Any]:
        """For the status page: the peers as the registry has them, and the relay's counts."""
        counts = self.stats.describe()
        peers = []
        for entry in sorted(self.directory.peers.values(), key=lambda p: p.edge_id):
            link = self.links.get(entry.edge_id)
            peers.append(
                {
                    "edge_id": entry.edge_id,
                    "relay": str(entry.relay),
                    "connections": sum(entry.tunnels.values()),
                    "link": None if link is None or not link.usable else link.link.protocol_name,
                    "group": None if link is None else link.group,
                    "rtt_ms": None if link is None or link.srtt is None else link.srtt * 1000,
                    **counts.get(entry.edge_id, {}),
                }
            )
        return {"relay_port": self.relay_port, "peers": peers, "counts": counts}

    async def _link(self, peer: PeerEntry) -> PeerLink | None:
        existing = self.links.get(peer.edge_id)
        if existing is not None and existing.usable and existing.address == peer.relay:
            return existing
        lock = self._locks.setdefault(peer.edge_id, asyncio.Lock())
        async with lock:
            existing = self.links.get(peer.edge_id)
            if existing is not None and existing.usable and existing.address == peer.relay:
                return existing
            if existing is not None:
                await existing.aclose("relay address changed")
            counts = self.stats.of(peer.edge_id)
            cluster = self.config.cluster
            assert cluster is not None
            try:
                link = await open_peer_link(
                    self.edge_id,
                    self._key,
                    peer.edge_id,
                    peer.relay,
                    counts,
                    protocol=self.protocol,
                    ca_file=cluster.ca_file,
                    server_name=cluster.server_name,
                )
            except PeerError as exc:
                counts.errors += 1
                self.down_until[peer.edge_id] = time.monotonic() + DOWN_FOR
                logger.warning("relay: %s; not relaying there for %gs", exc, DOWN_FOR)
                return None
            if self._closing:
                await link.aclose("edge shutting down")
                return None
            self.links[peer.edge_id] = link
            link.link.on_close.append(lambda c: self._closed(link))
            logger.info(
                "relay link to edge %s at %s over %s, group %s",
                peer.edge_id,
                peer.relay,
                link.link.protocol_name,
                link.group,
            )
            return link

    def _closed(self, link: PeerLink) -> None:
        """A link to a peer closed under us: leave that peer out for a while."""
        if self.links.get(link.edge_id) is link:
            del self.links[link.edge_id]
            if not self._closing:
                self.down_until[link.edge_id] = time.monotonic() + DOWN_FOR
                logger.warning(
                    "relay link to edge %s closed (%s)", link.edge_id, link.link.close_reason
                )
        asyncio.ensure_future(link.aclose("closed"))

    def _gone(self, edge_id: str) -> None:
        """The peer left the registry: close its link."""
        link = self.links.pop(edge_id, None)
        self.down_until.pop(edge_id, None)
        if link is not None:
            asyncio.ensure_future(link.aclose("edge left the cluster's registry"))
