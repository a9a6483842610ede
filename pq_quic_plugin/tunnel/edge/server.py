"""``pq-tunnel edge``: the public HTTP/3 + TCP listener and the connector listener, one process.

Both listeners share one event loop so a visitor's request can be handed to a connector's
connection without any inter-process hop. The public side is the hypercorn binding (HTTP/3 with
``--pq`` semantics, HTTP/1.1 and HTTP/2 over TCP with Alt-Svc).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from ...hypercorn_binding import post_quantum
from ..observer import NO_OBSERVER, Observer, Observers
from .app import EdgeApp
from .connectors import ConnectorListener
from .live_file import LiveFile
from .registry import Registry
from .store import TunnelStore

if TYPE_CHECKING:
    from ..config import EdgeConfig

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")


class Edge:
    """The edge's parts wired together: store, registry, public app, connector listener.

    ``observer`` sees every request and registration (``ops.Metrics`` in ``pq-tunnel edge``);
    the live-connection file for ``pq-tunnel list`` is always kept. :meth:`start` binds the
    connector listener, :meth:`serve` runs the public listener until :meth:`stop` or a signal,
    so operations can start in between, once the edge can accept connectors.
    """

    def __init__(self, config: EdgeConfig, observer: Observer = NO_OBSERVER) -> None:
        self.config = config
        self.store = TunnelStore(config.store)
        self.registry = Registry()
        self.live_file = LiveFile(config.store, self.registry)
        observers = Observers(self.live_file, observer)
        self.app = EdgeApp(self.store, self.registry, observers)
        self.listener = ConnectorListener(
            self.store,
            self.registry,
            edge_id=config.edge_id,
            location=config.location,
            observer=observers,
        )
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
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        return post_quantum(config, public.pq)

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
                self._stop.set()
            else:
                logger.warning("second signal: exiting now")
                raise SystemExit(1)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler)

    async def start(self) -> int:
        """Bind the connector listener; returns its UDP port."""
        connectors = self.config.connectors
        host, port = connectors.bind
        self.connector_port = await self.listener.start(
            host,
            port,
            str(connectors.certfile),
            str(connectors.keyfile),
            policy=connectors.post_quantum,
            groups=connectors.groups,
        )
        logger.info(
            "edge %s (location %s) starting; tunnels in %s",
            self.config.edge_id,
            self.config.location,
            self.config.store,
        )
        self.live_file.write()
        return self.connector_port

    async def serve(self) -> int:
        """Run the public listener until :meth:`stop`; then close the connector listener."""
        logger.info(
            "public listener https://%s (HTTP/3 post-quantum policy %s, and TCP)",
            self.config.public.bind,
            self.config.public.pq,
        )
        try:
            await hypercorn_serve(
                self.app,  # type: ignore[arg-type]  # hypercorn's TypedDicts vs asgi.types
                self._hypercorn_config(),
                shutdown_trigger=self._stop.wait,
            )
        finally:
            self.listener.close()
            self.live_file.clear()
        logger.info("edge stopped")
        return 0

    async def run(self) -> int:
        """:meth:`start` then :meth:`serve`, for an edge without operations."""
        await self.start()
        return await self.serve()

    def stop(self) -> None:
        self._stop.set()
