"""The connector: keeps HA connections to the edge (QUIC or HTTP/2, ``protocol``) and hands
their requests to the origin.

Each of ``ha-connections`` connections has its own supervising task: connect, register, serve
until the connection drops, then reconnect with jittered exponential backoff capped at
``max-backoff`` (so many connectors do not stampede a recovering edge), forever by default as
cloudflared does: an edge outage must not leave the origin unreachable after the edge is back.
``retries`` (when not 0) consecutive failures give up that connection; an authentication
refusal (:mod:`.failures`) stops it at once, since no retry can fix it. When every connection
has stopped the connector exits with status 1. The first SIGINT/SIGTERM drains (tells the
edge, waits up to ``grace-period`` for requests in flight and for the edge to acknowledge their
last bytes); a second one exits at once.

The pieces: :mod:`.transports` (which transport, and opening it: :mod:`.dialer` for QUIC),
:mod:`.registration` (handshake settings and the registration exchange), :mod:`.failures`
(what went wrong, and whether to retry), :mod:`.proxy` (one tunnelled request), :mod:`.report`
(the post-quantum failure banner and report).
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
import uuid
from dataclasses import dataclass

from ... import __version__, negotiated_group
from ...aioquic_binding.facade import quic_of
from ..config import ConnectorConfig
from ..credentials import Credentials
from ..hop_auth import describe_auth
from ..hostnames import HostPort
from ..observer import NO_OBSERVER, Observer
from ..origin import OriginClient
from ..wire import FrameType, StreamReset, TunnelConnection, TunnelLink, TunnelStream
from .failures import Failure, classify
from .proxy import RequestProxy
from .registration import (
    DEFAULT_PQ_GROUPS,
    Identity,
    register,
    watch_control,
)
from .report import HandshakeFailure, post_report, print_banner
from .transports import LinkFactory, ProtocolChoice, initial_protocol

__all__ = [
    "BACKOFF_BASE",
    "IDLE_TIMEOUT",
    "KEEPALIVE",
    "ConnectionState",
    "Connector",
]

logger = logging.getLogger("pq_quic_plugin.tunnel.connector")

#: First reconnect delay (seconds); doubles per failure up to the ``max-backoff`` key.
BACKOFF_BASE = 0.5
#: A PING this often keeps the connection (and NAT bindings) alive well within the idle timeout.
KEEPALIVE = 1.0
#: A tunnel connection that hears nothing for this long is dead: reconnect.
IDLE_TIMEOUT = 5.0


class ConnectionLost(ConnectionError):
    """A registered connection ended (the edge went away, or closed it); the close code and
    reason on the connection say why."""


@dataclass
class ConnectionState:
    """One HA connection slot, as the logs and the operations endpoints describe it."""

    index: int
    address: HostPort
    group_tried: str | None = None
    group: str | None = None
    registered: bool = False
    connection: TunnelLink | None = None
    attempt: TunnelLink | None = None  # this attempt's link, from before the handshake
    protocol: str = "quic"  # this attempt's transport: quic or http2
    attempts: int = 0
    reconnects: int = 0
    last_error: str = ""
    registered_at: float = 0.0
    announced: str = ""  # the authentication refusal whose banner this slot has shown

    @property
    def edge(self) -> str:
        return str(self.address)


class Connector:
    """Supervises the HA connections of one connector process (see the module docstring)."""

    def __init__(
        self,
        config: ConnectorConfig,
        credentials: Credentials,
        origin: OriginClient,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.origin = origin
        self.observer = observer
        self.connector_id = str(uuid.uuid4())
        self.states = [
            ConnectionState(i, config.edge[i % len(config.edge)])
            for i in range(config.ha_connections)
        ]
        self.exit_code = 0
        self._identity = Identity.of(credentials, self.connector_id, config)
        self._proxy = RequestProxy(config, origin, observer)
        self._links = LinkFactory(config, self._handle_stream, KEEPALIVE, IDLE_TIMEOUT)
        self._choices = [ProtocolChoice(config.protocol) for _ in self.states]
        self._stopping = asyncio.Event()
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._exit_now = False
        self._stopped_slots = 0
        self._reports: set[asyncio.Task[None]] = set()  # held so they are not collected early

    @property
    def ready_connections(self) -> int:
        """Registered connections right now (``/ready`` is 200 while this is above 0)."""
        return sum(1 for s in self.states if s.registered)

    def protocols(self) -> dict[str, int]:
        """Registered connections by transport (``quic``, ``http2``), for ``/metrics``."""
        counts: dict[str, int] = {}
        for state in self.states:
            if state.registered:
                counts[state.protocol] = counts.get(state.protocol, 0) + 1
        return counts

    # ------------------------------------------------------------------ lifecycle

    def log_settings(self) -> None:
        c = self.config
        policy = (
            "require (post-quantum only, no fallback)"
            if c.post_quantum
            else "prefer (post-quantum when the edge offers it, classical otherwise)"
        )
        logger.info(
            "Starting tunnel tunnelID=%s name=%s",
            self.credentials.tunnel_id,
            self.credentials.tunnel_name,
        )
        logger.info("Version pq-quic-plugin/%s", __version__)
        logger.info(
            "Settings: post-quantum:%s post-quantum-auth:%s ha-connections:%d edge:%s",
            str(c.post_quantum).lower(),
            str(c.post_quantum_auth).lower(),
            c.ha_connections,
            ",".join(str(e) for e in c.edge),
        )
        logger.info("Generated Connector ID: %s", self.connector_id)
        logger.info("Initial protocol %s", initial_protocol(c.protocol))
        logger.info("Key exchange policy: %s", policy)
        logger.info(
            "Edge authentication: %s",
            "require (ML-DSA only: a classical certificate is refused)"
            if c.post_quantum_auth
            else "prefer (ML-DSA offered, a classical certificate accepted)",
        )
        if c.post_quantum:
            groups = c.groups or DEFAULT_PQ_GROUPS
            logger.info("Tunnel connection curve preferences: [%s]", " ".join(groups))
        else:
            logger.warning(
                "post-quantum not required: connections may fall back to classical key "
                "exchange if the edge does not offer post-quantum (use --post-quantum to forbid)"
            )

    async def run(self) -> int:
        """Run until stopped (or every connection gave up); returns the exit status."""
        self.log_settings()
        tasks = [asyncio.ensure_future(self._supervise(state)) for state in self.states]
        await self._stopping.wait()
        await self._drain()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.origin.aclose()
        logger.info("connector stopped")
        return self.exit_code

    def stop(self, immediately: bool = False) -> None:
        if immediately:
            logger.warning("second signal: exiting now")
            self._draining = True
            self._exit_now = True
            self._in_flight = 0
            self._idle.set()
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        count = {"n": 0}

        def handler() -> None:
            count["n"] += 1
            if count["n"] == 1:
                logger.info(
                    "signal received: draining (grace period %.0fs); send again to exit now",
                    self.config.grace_period,
                )
            self.stop(immediately=count["n"] > 1)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler)

    async def _drain(self) -> None:
        """Tell the edge, let requests in flight finish, then wait until the edge acknowledged
        every byte we sent before closing: a response whose handler returned may still sit in
        the QUIC send buffer, and closing then would cut its end off."""
        self._draining = True
        deadline = time.monotonic() + self.config.grace_period
        for state in self.states:
            conn = state.connection
            if conn is not None and not conn.closed and state.registered:
                try:
                    channel = conn.channels.get(0)
                    if channel is not None:
                        await channel.send_json(FrameType.CONTROL, {"type": "drain"})
                except StreamReset:
                    pass
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            logger.warning("grace period over with %d request(s) still in flight", self._in_flight)
        open_conns = [
            s.connection
            for s in self.states
            if s.connection is not None and not s.connection.closed
        ]
        unacked = await asyncio.gather(*(self._acked(conn, deadline) for conn in open_conns))
        if any(unacked):
            logger.warning(
                "grace period over with %d byte(s) not yet acknowledged by the edge", sum(unacked)
            )
        for conn in open_conns:
            if not conn.closed:
                conn.close(reason_phrase="connector shutting down")
                conn.transmit()
        await asyncio.sleep(0.1)

    async def _acked(self, conn: TunnelLink, deadline: float) -> int:
        return await conn.wait_flushed(
            max(0.0, deadline - time.monotonic()),
            stopped=lambda: self._exit_now or conn.closed,
        )

    # ------------------------------------------------------------------ connections

    async def _supervise(self, state: ConnectionState) -> None:
        delay = BACKOFF_BASE
        cap = max(self.config.max_backoff, BACKOFF_BASE)
        failures = 0
        retries = self.config.retries
        while not self._stopping.is_set():
            state.attempts += 1
            state.attempt = None
            started = time.monotonic()
            failure: Failure | None = None
            try:
                await self._connect_once(state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is classified and logged
                if not self._stopping.is_set():
                    failure = classify(
                        exc,
                        state.attempt,
                        post_quantum=self.config.post_quantum,
                        registered=state.registered,
                        post_quantum_auth=self.config.post_quantum_auth,
                    )
            if failure is not None and state.registered:
                delay = BACKOFF_BASE  # it worked for a while: start over
                failures = 0
            elif failure is not None:
                failures += 1
            handshake_failed = state.connection is None
            if failure is not None:
                choice = self._choices[state.index]
                failure = choice.after_failure(failure, handshake_failed, state.index)
            state.registered = False
            self.observer.connection_lost(state.index)
            state.connection = None
            if self._stopping.is_set():
                return
            assert failure is not None  # _connect_once only returns when stopping
            state.last_error = failure.reason
            self._report_failure(state, failure, handshake_failed, time.monotonic() - started)
            if failure.permanent or (retries and failures >= retries):
                self._give_up(state, failure, failures)
                return
            state.reconnects += 1
            if failure.edge_auth:
                # The edge's certificate changes only when its operator acts: do not hammer.
                delay = cap
            wait = random.uniform(delay / 2, delay)  # jitter: connectors do not stampede
            logger.warning(
                "connIndex=%d edge=%s %s failure: %s; reconnecting in %.1fs (attempt %d)",
                state.index,
                state.edge,
                failure.kind.value,
                failure.reason,
                wait,
                state.attempts + 1,
            )
            self.observer.reconnect()
            try:
                await asyncio.wait_for(self._stopping.wait(), wait)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, cap)

    def _give_up(self, state: ConnectionState, failure: Failure, failures: int) -> None:
        if failure.permanent:
            logger.error(
                "connIndex=%d edge=%s %s; not retrying: check the credentials file, and "
                "whether the tunnel still exists (pq-tunnel list on the edge)",
                state.index,
                state.edge,
                failure.reason,
            )
        else:
            logger.error(
                "connIndex=%d: giving up after %d failed attempts (retries=%d); last: %s",
                state.index,
                failures,
                self.config.retries,
                failure.reason,
            )
        self._stopped_slots += 1
        if self._stopped_slots == len(self.states):
            logger.error("every connection stopped: the connector exits")
            self.exit_code = 1
            self._stopping.set()

    async def _connect_once(self, state: ConnectionState) -> None:
        state.protocol = self._choices[state.index].current
        quic_config, state.group_tried = self._links.group_tried(state.protocol, state.address)
        if state.group_tried is not None:
            logger.info(
                "Using post-quantum key agreement %s for connIndex=%d",
                state.group_tried,
                state.index,
            )
        t0 = time.monotonic()

        def created(conn: TunnelLink) -> None:
            state.attempt = conn

        async with self._links.open(state.protocol, state.address, quic_config, created) as conn:
            state.connection = conn
            group = negotiated_group(conn)
            state.group = group.name if group else None
            self.observer.handshake(state.group or state.group_tried, True, time.monotonic() - t0)
            if group is not None and not group.post_quantum:
                logger.warning(
                    "connIndex=%d: edge negotiated %s, which is NOT post-quantum "
                    "(allowed because --post-quantum is off)",
                    state.index,
                    group.name,
                )
            answer = await register(conn, self._identity, state.index)
            state.registered = True
            state.registered_at = time.time()
            state.announced = ""
            self.observer.connection_registered(state.index, str(answer.get("location") or ""))
            logger.info(
                "Connection %s registered connIndex=%d edge=%s location=%s protocol=%s group=%s "
                "auth=%s",
                self.connector_id,
                state.index,
                state.edge,
                answer.get("location"),
                state.protocol,
                state.group,
                describe_auth(conn),
            )
            keepalive = asyncio.ensure_future(self._keepalive(conn))
            control = asyncio.ensure_future(watch_control(conn, state.index))
            try:
                await conn.closed_event.wait()
            finally:
                keepalive.cancel()
                control.cancel()
            if not self._stopping.is_set():
                raise ConnectionLost(f"connection lost: {conn.close_reason}")

    async def _keepalive(self, conn: TunnelLink) -> None:
        """QUIC PINGs (HTTP/2 links keep themselves alive)."""
        if not isinstance(conn, TunnelConnection):
            return
        while not conn.closed:
            await asyncio.sleep(KEEPALIVE)
            quic_of(conn).send_ping(0)
            conn.transmit()

    def _report_failure(
        self, state: ConnectionState, failure: Failure, handshake_failed: bool, elapsed: float
    ) -> None:
        """Metrics for a failed handshake; the banner (and report) for a post-quantum refusal
        only: a network outage or a certificate problem is not post-quantum's fault. An
        authentication refusal is announced once per slot, not at every attempt."""
        if handshake_failed:
            self.observer.handshake(state.group or state.group_tried, False, elapsed)
        if not failure.shows_banner:
            return
        if failure.edge_auth:
            # Once per slot until it changes (or the slot connects): it will not go away by
            # itself, and the WARNING line of each attempt still says it.
            if state.announced == failure.reason:
                return
            state.announced = failure.reason
        report = HandshakeFailure(
            state.index,
            state.edge,
            state.group_tried,
            failure.reason,
            self.connector_id,
            edge_auth=failure.edge_auth,
        )
        print_banner(report)
        if self.config.pq_report_url:
            ca_file = str(self.config.ca_file) if self.config.ca_file else None
            task = asyncio.ensure_future(
                post_report(self.config.pq_report_url, report, ca_file, self.credentials)
            )
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    # ------------------------------------------------------------------ requests

    async def _handle_stream(self, channel: TunnelStream) -> None:
        if self._draining:
            await channel.send_json(
                FrameType.ERROR, {"status": 503, "reason": "connector is shutting down"}, end=True
            )
            return
        self._in_flight += 1
        self._idle.clear()
        started = time.monotonic()
        self.observer.request_started()
        status = 502
        try:
            status = await self._proxy.serve(channel)
        finally:
            self._in_flight -= 1
            if self._in_flight <= 0:
                self._in_flight = 0
                self._idle.set()
            self.observer.request_done(
                self.credentials.tunnel_id, status, time.monotonic() - started
            )
