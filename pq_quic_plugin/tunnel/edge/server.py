"""``pq-tunnel edge``: the public HTTP/3 + TCP listener and the connector listener, one process.

Both listeners share one event loop so a visitor's request can be handed to a connector's
connection without any inter-process hop. The public side is the hypercorn binding (HTTP/3 with
``--pq`` semantics, HTTP/1.1 and HTTP/2 over TCP with Alt-Svc).

Stopping (docs/tunnel.md, "Shutdown and drain"): the first signal stops both listeners from
accepting at once (the connector listener refuses new handshakes with "edge shutting down",
hypercorn stops taking new visitors), lets requests in flight finish within ``grace-period``,
then closes the connectors' connections with that reason; an idle edge is gone within a second.
While running, the edge also watches the store (every :data:`STORE_POLL`): a tunnel deleted by
``pq-tunnel delete --force`` loses its live connections (closed with "tunnel deleted"), and
when ``pq-tunnel route`` changes a live tunnel's hostnames its connectors are told the new list
on their control streams (requests are routed by the store on every request, so the change
itself needs no restart). The same loop keeps the live file's heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from typing import TYPE_CHECKING

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from ...hypercorn_binding import post_quantum
from ..hostnames import HostPort
from ..observer import NO_OBSERVER, Observer, Observers
from ..wire import ERROR_AUTH, MAX_FRAME
from .app import EdgeApp
from .backends import live_publisher
from .connectors import ConnectorListener
from .limits import VISITOR_UNSENT_LIMIT, Limits
from .live_file import HEARTBEAT
from .registry import Registry
from .store import open_edge_store

if TYPE_CHECKING:
    from ..cluster.peers import ClusterPeers
    from ..config import EdgeConfig

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

#: How often the edge looks at the store for deleted tunnels and changed hostnames.
STORE_POLL = 1.0
#: How often a stopping edge nudges hypercorn's HTTP/3 loop, which only checks whether it may
#: stop when a datagram arrives (so an idle edge would otherwise wait out the grace period).
WAKE_INTERVAL = 0.1
#: The reason phrases connectors see (and log) when the edge closes their connections.
REASON_SHUTDOWN = "edge shutting down"
REASON_DELETED = "tunnel deleted"


class Edge:
    """The edge's parts wired together: store, registry, public app, connector listener.

    ``observer`` sees every request and registration (``ops.Metrics`` in ``pq-tunnel edge``);
    the live-connection file for ``pq-tunnel list`` is always kept. :meth:`start` binds the
    connector listener, :meth:`serve` runs the public listener until :meth:`stop` or a signal,
    so operations can start in between, once the edge can accept connectors.
    """

    def __init__(self, config: EdgeConfig, observer: Observer = NO_OBSERVER) -> None:
        self.config = config
        self.store = open_edge_store(config)
        self.registry = Registry()
        self.live_file = live_publisher(config, self.store, self.registry)
        observers = Observers(self.live_file, observer)
        self.app = EdgeApp(self.store, self.registry, observers, limits=Limits.of(config.public))
        self.listener = ConnectorListener(
            self.store,
            self.registry,
            edge_id=config.edge_id,
            location=config.location,
            observer=observers,
        )
        #: The relay between edges (hop 2), when ``cluster:`` is configured (docs/cluster.md).
        self.peers: ClusterPeers | None = None
        if config.cluster is not None:
            from ..cluster.peers import ClusterPeers
            from .store_redis_edge import RedisEdgeStore

            assert isinstance(self.store, RedisEdgeStore)  # the config requires a Redis store
            self.peers = ClusterPeers(config, self.registry, self.store.client)
            self.app.peers = self.peers
        self._stop = asyncio.Event()
        self._signals = 0
        self.connector_port: int | None = None

    def _hypercorn_config(self) -> Config:
        public = self.config.public
        config = Config()
        config.bind = [str(public.bind)]
        config.quic_bind = [str(public.bind)]
        config.certfile = str(public.certfile)
        config.keyfile = str(public.keyfile)
        config.graceful_timeout = float(self.config.grace_period)
        # A visitor's WebSocket message travels as one tunnel frame: refuse a larger one (1009)
        # before hypercorn buffers it, instead of hypercorn's default of 16 MiB.
        config.websocket_max_message_size = MAX_FRAME
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        pairs = public.certificates()  # an ML-DSA pair for visitors that offer ML-DSA
        if not pairs:
            pq_config = post_quantum(config, public.pq)
        else:
            (pq_cert, pq_key), *_ = pairs
            pq_config = post_quantum(
                config, public.pq, pq_certfile=str(pq_cert), pq_keyfile=str(pq_key)
            )
        pq_config.pq_unsent_limit = VISITOR_UNSENT_LIMIT  # an unread response holds little
        return pq_config

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()

        def handler() -> None:
            self._signals += 1
            if self._signals == 1:
                logger.info(
                    "signal received: stopping listeners, finishing requests in flight "
                    "(grace period %.0fs); send again to exit now",
                    float(self.config.grace_period),
                )
                self.stop()
            else:
                logger.warning("second signal: exiting now")
                raise SystemExit(1)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler)

    async def start(self) -> int:
        """Reach the store, bind the connector listener; returns its UDP port."""
        await self.store.start()  # StoreError (naming the store) before anything is bound
        connectors = self.config.connectors
        host, port = connectors.bind
        self.connector_port = await self.listener.start(
            host,
            port,
            str(connectors.certfile),
            str(connectors.keyfile),
            policy=connectors.post_quantum,
            groups=connectors.groups,
            certificates=[(str(c), str(k)) for c, k in connectors.certificates()],
        )
        logger.info(
            "edge %s (location %s) starting; tunnels in %s",
            self.config.edge_id,
            self.config.location,
            self.store.describe(),
        )
        if self.peers is not None:
            await self.peers.start()
        await self.live_file.start()
        return self.connector_port

    async def serve(self) -> int:
        """Run the public listener until :meth:`stop`; then close the connector listener."""
        logger.info(
            "public listener https://%s (HTTP/3 post-quantum policy %s, and TCP)",
            self.config.public.bind,
            self.config.public.pq,
        )
        watcher = asyncio.ensure_future(self._watch_store())
        waker = asyncio.ensure_future(self._wake_when_stopping())
        try:
            await hypercorn_serve(
                self.app,  # type: ignore[arg-type]  # hypercorn's TypedDicts vs asgi.types
                self._hypercorn_config(),
                shutdown_trigger=self._stop.wait,
            )
        finally:
            watcher.cancel()
            waker.cancel()
            if self.peers is not None:
                await self.peers.stop()
            await self._close_connectors()
            self.listener.close()
            await self.live_file.stop()
            await self.store.aclose()
        logger.info("edge stopped")
        return 0

    async def _close_connectors(self) -> None:
        """Visitors' requests are done (or the grace period is over): tell every connector why
        its connection ends, so it logs that rather than a timeout, then let the close go out."""
        lives = list(self.registry)
        for live in lives:
            if not live.connection.closed:
                live.close(REASON_SHUTDOWN)
        if lives:
            await asyncio.sleep(0.05)

    async def _wake_when_stopping(self) -> None:
        """Once stopping, send hypercorn's UDP listener a one-byte datagram now and then (it is
        not a QUIC packet and is dropped unread), so its loop sees the stop without waiting for
        a visitor's datagram or the grace period."""
        await self._stop.wait()
        host, port = _wake_address(self.config.public.bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            while True:
                with contextlib.suppress(OSError):
                    sock.sendto(b"\0", (host, port))
                await asyncio.sleep(WAKE_INTERVAL)

    async def _watch_store(self) -> None:
        """Follow what other processes change in the store (``pq-tunnel delete --force`` and
        ``route`` run elsewhere; the store is the only thing they share with the edge), and
        rewrite the live file at least every :data:`HEARTBEAT` seconds so ``pq-tunnel list``
        can tell a running edge from a dead one."""
        written = time.monotonic()
        while True:
            await self.store.next_change(STORE_POLL)  # SQLite: a sleep; Redis: a change
            for tunnel_id in {live.tunnel_id for live in self.registry}:
                record = self.store.by_id(tunnel_id)
                if record is None:
                    self._close_deleted(tunnel_id)
                else:
                    await self._tell_hostnames(tunnel_id, record.name, record.hostnames)
            if time.monotonic() - written >= HEARTBEAT:
                self.live_file.write()
                written = time.monotonic()

    async def _tell_hostnames(self, tunnel_id: str, name: str, hostnames: tuple[str, ...]) -> None:
        """Tell each live connection of the tunnel whose hostname list changed the new list
        (``{"type": "hostnames", ...}``, docs/protocol.md)."""
        stale = [
            live
            for live in self.registry.connections(tunnel_id)
            if live.hostnames != hostnames and not live.connection.closed
        ]
        if not stale:
            return
        logger.info(
            "tunnel %s now serves hostnames %s: telling %d connection(s)",
            name,
            ", ".join(hostnames) or "(none)",
            len(stale),
        )
        for live in stale:
            live.hostnames = hostnames
            message = {"type": "hostnames", "hostnames": list(hostnames)}
            if not await live.send_control(message):
                logger.debug("connection %s: could not send the hostname list", live.connector_id)

    def _close_deleted(self, tunnel_id: str) -> None:
        """Close the live connections of a tunnel deleted from the store."""
        for live in self.registry.connections(tunnel_id):
            if live.connection.closed:
                continue
            logger.warning(
                "tunnel %s (%s) was deleted: closing connection %s connIndex=%d",
                live.tunnel_name,
                tunnel_id,
                live.connector_id,
                live.conn_index,
            )
            # ERROR_AUTH: the tunnel's credentials no longer admit it; the connector stops
            # instead of retrying (docs/tunnel.md, "Retries").
            live.connection.close(error_code=ERROR_AUTH, reason_phrase=REASON_DELETED)
            live.connection.transmit()

    async def run(self) -> int:
        """:meth:`start` then :meth:`serve`, for an edge without operations."""
        await self.start()
        return await self.serve()

    def stop(self) -> None:
        """Stop accepting at once; :meth:`serve` returns once requests in flight are done."""
        self.listener.stop_accepting()
        if self.peers is not None:
            self.peers.stop_accepting()
        self._stop.set()


def _wake_address(bind: HostPort) -> tuple[str, int]:
    """Where a datagram reaches a listener bound to ``bind`` (a wildcard: through loopback)."""
    host = bind.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, bind.port
