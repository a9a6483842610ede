"""``pq-tunnel edge``: the public HTTP/3 + TCP listener and the connector listener, one process.

Both listeners share one event loop so a visitor's request can be handed to a connector's
connection without any inter-process hop. The public side is the hypercorn binding (HTTP/3 with
``--pq`` semantics, HTTP/1.1 and HTTP/2 over TCP with Alt-Svc).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from ...hypercorn_binding import post_quantum
from .app import EdgeApp
from .connectors import ConnectorListener
from .registry import Registry
from .store import TunnelStore

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")


class Edge:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.store = TunnelStore(config.store)
        self.registry = Registry()
        self.app = EdgeApp(self.store, self.registry)
        self.listener = ConnectorListener(
            self.store, self.registry, edge_id=config.edge_id, location=config.location
        )
        self._stop = asyncio.Event()
        self._signals = 0
        self.public_port: int | None = None
        self.connector_port: int | None = None
        self.extras: list[Any] = []  # metrics server etc. (started with the edge)

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
                logger.info("signal received: stopping listeners, finishing requests in flight "
                            "(grace period %.0fs); send again to exit now",
                            float(self.config.grace_period))
                self._stop.set()
            else:
                logger.warning("second signal: exiting now")
                raise SystemExit(1)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler)

    async def run(self) -> int:
        connectors = self.config.connectors
        host, port = connectors.bind
        self.connector_port = await self.listener.start(
            host, port, str(connectors.certfile), str(connectors.keyfile),
            policy=connectors.post_quantum,
            groups=list(connectors.groups) if connectors.groups else None,
        )
        logger.info("edge %s (location %s) starting; tunnels in %s", self.config.edge_id,
                    self.config.location, self.config.store)
        logger.info("public listener https://%s (HTTP/3 post-quantum policy %s, and TCP)",
                    self.config.public.bind, self.config.public.pq)
        for extra in self.extras:
            await extra.start()
        try:
            await hypercorn_serve(self.app, self._hypercorn_config(),  # type: ignore[arg-type]
                                  shutdown_trigger=self._stop.wait)
        finally:
            self.listener.close()
            for extra in self.extras:
                await extra.stop()
        logger.info("edge stopped")
        return 0

    def stop(self) -> None:
        self._stop.set()
