"""The connector: keeps HA QUIC connections to the edge and hands requests to the origin.

Post-quantum behaviour follows the reference design (docs/tunnel.md):

* ``post-quantum: true`` offers post-quantum groups only (policy ``require``); each connection
  picks one allowed group at random and logs it, so operators learn whether a fragmented
  ClientHello gets through their network. A failed handshake prints a banner and, when
  ``pq-report-url`` is set, posts a JSON report. There is never a classical fallback.
* otherwise the connector prefers post-quantum, accepts classical, and says which it got.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import signal
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

from ... import __version__
from ...aioquic_binding import configure, negotiated_group
from ...aioquic_binding.facade import quic_of
from ...plugins import registry
from ..credentials import derive_auth_key, load_credentials, proof
from ..origin.client import OriginClient, OriginError
from ..wire import (
    ALPN,
    HOPS_HEADER,
    PROTOCOL_VERSION,
    Channel,
    FrameType,
    StreamReset,
    TunnelConnection,
)

logger = logging.getLogger("pq_quic_plugin.tunnel.connector")

#: The post-quantum groups a connector may use by default with --post-quantum, as in the
#: reference design today: the IANA hybrid first.
DEFAULT_PQ_GROUPS = ("X25519MLKEM768",)
BANNER_URL = "https://github.com/pq-quic-plugin/pq-quic-plugin/blob/main/docs/tunnel.md#post-quantum-troubleshooting"


@dataclass
class ConnectionState:
    index: int
    edge: str
    group_tried: str | None = None
    group: str | None = None
    registered: bool = False
    connection: TunnelConnection | None = None
    attempts: int = 0
    reconnects: int = 0
    last_error: str = ""
    registered_at: float = 0.0


@dataclass
class ConnectorSettings:
    tunnel_id: str
    tunnel_name: str
    secret: bytes
    edges: list[tuple[str, int]]
    post_quantum: bool = False
    pq_groups: tuple[str, ...] = DEFAULT_PQ_GROUPS
    ha_connections: int = 4
    ca_file: str | None = None
    server_name: str | None = None
    pq_report_url: str | None = None
    grace_period: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 16.0
    keepalive: float = 1.0
    idle_timeout: float = 5.0
    hostnames: list[str] = field(default_factory=list)
    retries: int = 0  # consecutive failures per connection before giving up; 0 = forever


class Connector:
    def __init__(self, settings: ConnectorSettings, ingress: Any, origin: OriginClient) -> None:
        self.settings = settings
        self.ingress = ingress
        self.origin = origin
        self.connector_id = str(uuid.uuid4())
        self.states = [
            ConnectionState(i, _fmt(settings.edges[i % len(settings.edges)]))
            for i in range(settings.ha_connections)
        ]
        self._auth_key = derive_auth_key(settings.secret, settings.tunnel_id)
        self._stopping = asyncio.Event()
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.metrics: Any = None  # set by ops.attach_connector_operations
        self._gave_up = 0
        self.exit_code = 0

    # ------------------------------------------------------------------ lifecycle

    def log_settings(self) -> None:
        s = self.settings
        policy = "require (post-quantum only, no fallback)" if s.post_quantum else \
            "prefer (post-quantum when the edge offers it, classical otherwise)"
        logger.info("Starting tunnel tunnelID=%s name=%s", s.tunnel_id, s.tunnel_name)
        logger.info("Version pq-quic-plugin/%s", __version__)
        logger.info("Settings: post-quantum:%s ha-connections:%d edge:%s",
                    str(s.post_quantum).lower(), s.ha_connections,
                    ",".join(_fmt(e) for e in s.edges))
        logger.info("Generated Connector ID: %s", self.connector_id)
        logger.info("Initial protocol quic")
        logger.info("Key exchange policy: %s", policy)
        if s.post_quantum:
            logger.info("Tunnel connection curve preferences: [%s]", " ".join(s.pq_groups))
        else:
            logger.warning(
                "post-quantum not required: connections may fall back to classical key "
                "exchange if the edge does not offer post-quantum (use --post-quantum to forbid)"
            )

    async def run(self) -> int:
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
            self._in_flight = 0
            self._idle.set()
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        count = {"n": 0}

        def handler() -> None:
            count["n"] += 1
            if count["n"] == 1:
                logger.info("signal received: draining (grace period %.0fs); send again to exit "
                            "now", self.settings.grace_period)
            self.stop(immediately=count["n"] > 1)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler)

    async def _drain(self) -> None:
        self._draining = True
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
            await asyncio.wait_for(self._idle.wait(), self.settings.grace_period)
        except asyncio.TimeoutError:
            logger.warning("grace period over with %d request(s) still in flight",
                           self._in_flight)
        for state in self.states:
            if state.connection is not None and not state.connection.closed:
                state.connection.close(reason_phrase="connector shutting down")
                state.connection.transmit()
        await asyncio.sleep(0.1)

    @property
    def ready_connections(self) -> int:
        return sum(1 for s in self.states if s.registered)

    # ------------------------------------------------------------------ connections

    def _client_config(self, state: ConnectionState) -> QuicConfiguration:
        s = self.settings
        host = s.edges[state.index % len(s.edges)][0]
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            server_name=s.server_name or host,
            idle_timeout=s.idle_timeout,
        )
        if s.ca_file:
            config.load_verify_locations(s.ca_file)
        if s.post_quantum:
            group = random.choice(s.pq_groups)
            others = [g for g in s.pq_groups if g != group]
            configure(config, "require", groups=[group, *others], key_shares=[group])
            state.group_tried = group
            logger.info("Using post-quantum key agreement %s for connIndex=%d", group,
                        state.index)
        else:
            configure(config, "prefer")
            state.group_tried = None
        return config

    async def _supervise(self, state: ConnectionState) -> None:
        delay = self.settings.backoff_base
        failures = 0
        while not self._stopping.is_set():
            state.attempts += 1
            started = time.monotonic()
            try:
                await self._connect_once(state)
                delay = self.settings.backoff_base  # it worked for a while: start over
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is logged and retried
                state.last_error = str(exc) or type(exc).__name__
                self._report_failure(state, exc, time.monotonic() - started)
                failures += 0 if state.registered else 1
            finally:
                state.registered = False
                state.connection = None
            if self._stopping.is_set():
                return
            if self.settings.retries and failures >= self.settings.retries:
                logger.error("connIndex=%d: giving up after %d failed attempts (retries=%d)",
                             state.index, failures, self.settings.retries)
                self._gave_up += 1
                if self._gave_up == len(self.states):
                    logger.error("every connection gave up: the connector exits")
                    self.exit_code = 1
                    self._stopping.set()
                return
            state.reconnects += 1
            wait = random.uniform(delay / 2, delay)  # jitter: connectors do not stampede
            logger.info("connIndex=%d reconnecting in %.2fs (attempt %d)", state.index, wait,
                        state.attempts + 1)
            if self.metrics is not None:
                self.metrics.reconnect(state)
            try:
                await asyncio.wait_for(self._stopping.wait(), wait)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.settings.backoff_max)

    async def _connect_once(self, state: ConnectionState) -> None:
        host, port = self.settings.edges[state.index % len(self.settings.edges)]
        config = self._client_config(state)
        connector = self

        class _Protocol(TunnelConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.stream_handler = connector._handle_stream

        t0 = time.monotonic()
        async with connect(host, port, configuration=config, create_protocol=_Protocol,
                           wait_connected=True) as conn:
            assert isinstance(conn, TunnelConnection)
            state.connection = conn
            group = negotiated_group(conn)
            state.group = group.name if group else None
            if self.metrics is not None:
                self.metrics.handshake(state, True, time.monotonic() - t0)
            if group is not None and not group.post_quantum:
                logger.warning("connIndex=%d: edge negotiated %s, which is NOT post-quantum "
                               "(allowed because --post-quantum is off)", state.index,
                               group.name)
            await self._register(conn, state)
            keepalive = asyncio.ensure_future(self._keepalive(conn))
            try:
                await conn.closed_event.wait()
            finally:
                keepalive.cancel()
            logger.warning("Connection %s connIndex=%d to %s lost: %s", self.connector_id,
                           state.index, state.edge, conn.close_reason)

    async def _keepalive(self, conn: TunnelConnection) -> None:
        while not conn.closed:
            await asyncio.sleep(self.settings.keepalive)
            quic_of(conn).send_ping(0)
            conn.transmit()

    async def _register(self, conn: TunnelConnection, state: ConnectionState) -> None:
        channel = conn.open_channel()
        await channel.send_json(FrameType.CONTROL, {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "tunnel_id": self.settings.tunnel_id,
            "connector_id": self.connector_id,
            "conn_index": state.index,
            "software": f"pq-quic-plugin/{__version__}",
            "hostnames": self.settings.hostnames,
        })
        challenge = await asyncio.wait_for(channel.read_json(FrameType.CONTROL), 10)
        if challenge.get("type") == "error":
            raise RegistrationError(challenge.get("reason", "refused"))
        nonce = base64.b64decode(challenge["nonce"])
        mac = proof(self._auth_key, nonce, self.settings.tunnel_id, self.connector_id,
                    state.index)
        await channel.send_json(FrameType.CONTROL, {
            "type": "auth", "proof": base64.b64encode(mac).decode()
        })
        answer = await asyncio.wait_for(channel.read_json(FrameType.CONTROL), 10)
        if answer.get("type") != "registered":
            raise RegistrationError(answer.get("reason", "refused by the edge"))
        state.registered = True
        state.registered_at = time.time()
        logger.info("Connection %s registered connIndex=%d edge=%s location=%s group=%s",
                    self.connector_id, state.index, state.edge, answer.get("location"),
                    state.group)

    def _report_failure(self, state: ConnectionState, exc: Exception, elapsed: float) -> None:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionError) and state.connection is None:
            conn_reason = "handshake failed"
        else:
            conn_reason = reason
        if self.metrics is not None and not state.registered and state.connection is None:
            self.metrics.handshake(state, False, elapsed)
        if self.settings.post_quantum and state.connection is None:
            print_banner(state, reason or conn_reason)
            self._post_report(state, reason or conn_reason)
        logger.error("connIndex=%d edge=%s failed: %s", state.index, state.edge,
                     reason or conn_reason)

    def _post_report(self, state: ConnectionState, error: str) -> None:
        url = self.settings.pq_report_url
        if not url:
            return
        report = {
            "group": state.group_tried,
            "version": f"pq-quic-plugin/{__version__}",
            "error": error,
            "conn_index": state.index,
            "edge": state.edge,
            "connector_id": self.connector_id,
        }
        asyncio.ensure_future(_post_json(url, report, self.settings.ca_file))

    # ------------------------------------------------------------------ requests

    async def _handle_stream(self, channel: Channel) -> None:
        if self._draining:
            await channel.send_json(FrameType.ERROR, {"status": 503,
                                                      "reason": "connector is shutting down"},
                                    end=True)
            return
        self._in_flight += 1
        self._idle.clear()
        started = time.monotonic()
        if self.metrics is not None:
            self.metrics.request_started()
        status = 502
        try:
            status = await self._serve(channel)
        finally:
            self._in_flight -= 1
            if self._in_flight <= 0:
                self._in_flight = 0
                self._idle.set()
            if self.metrics is not None:
                self.metrics.request_done(status, time.monotonic() - started)

    async def _serve(self, channel: Channel) -> int:
        head = await channel.read_json(FrameType.HEADERS)
        headers = [(str(k), str(v)) for k, v in head.get("headers", [])]
        host = next((v for k, v in headers if k.lower() == "host"), "")
        path = str(head.get("path", "/"))
        rule = self.ingress.ingress_match(host, path.split("?", 1)[0])
        if rule.service.kind == "http_status":
            await channel.send_json(FrameType.HEADERS, {"status": rule.service.status,
                                                        "headers": []})
            await channel.end()
            return int(rule.service.status)
        hops = list(head.get("hops", []))
        tunnel_group = negotiated_group(channel.connection)
        for hop in hops:  # the connector's own view of the tunnel hop wins
            if hop.get("hop") == "edge-connector" and tunnel_group is not None:
                hop["group"] = tunnel_group.name
                hop["post_quantum"] = tunnel_group.post_quantum
        if head.get("websocket"):
            return await self._serve_websocket(channel, head, headers, path, rule, hops)

        metrics = self.metrics

        async def body() -> Any:
            while (frame := await channel.read()) is not None:
                if frame[0] == FrameType.DATA:
                    if metrics is not None:
                        metrics.relayed("to_origin", len(frame[1]))
                    yield frame[1]

        try:
            response = await self.origin.request(
                rule.service.text, str(head.get("method", "GET")), path,
                _with_hops(headers, hops, None), body(),
                origin_ca_file=_s(rule.origin_ca_file),
                origin_server_name=rule.origin_server_name,
                hops_callback=lambda hop: _with_hops(headers, hops, hop),
            )
        except OriginError as exc:
            logger.warning("origin %s: %s", rule.service.text, exc.reason)
            await channel.send_json(FrameType.ERROR, {"status": exc.status, "reason": exc.reason},
                                    end=True)
            return exc.status
        try:
            await channel.send_json(FrameType.HEADERS, {
                "status": response.status, "headers": [[k, v] for k, v in response.headers]
            })
            async for chunk in response.body:
                if metrics is not None:
                    metrics.relayed("from_origin", len(chunk))
                await channel.send_data(chunk)
            await channel.end()
        except StreamReset:
            await response.aclose()  # the visitor went away: stop reading from the origin
            raise
        except OriginError as exc:
            # The head already went out, so no error page is possible: cancel the visitor's
            # stream (a reset, never a silently truncated body) and say why.
            logger.warning("origin %s: %s (response cancelled after the head)",
                           rule.service.text, exc.reason)
            await response.aclose()
            channel.reset()
            return exc.status
        return response.status

    async def _serve_websocket(self, channel: Channel, head: dict, headers: list,
                               path: str, rule: Any, hops: list) -> int:
        try:
            ws = await self.origin.websocket(
                rule.service.text, path, _with_hops(headers, hops, None),
                list(head.get("subprotocols", [])),
                origin_ca_file=_s(rule.origin_ca_file), origin_server_name=rule.origin_server_name,
                hops_callback=lambda hop: _with_hops(headers, hops, hop),
            )
        except OriginError as exc:
            await channel.send_json(FrameType.ERROR, {"status": exc.status, "reason": exc.reason},
                                    end=True)
            return exc.status
        await channel.send_json(FrameType.HEADERS, {"status": ws.status,
                                                    "subprotocol": ws.subprotocol})
        if ws.status != 101:
            await channel.end()
            return int(ws.status)

        async def edge_to_origin() -> None:
            while (frame := await channel.read()) is not None:
                kind, payload = frame
                if kind == FrameType.WS_TEXT:
                    await ws.send(payload.decode())
                elif kind == FrameType.WS_BINARY:
                    await ws.send(payload)
                elif kind == FrameType.WS_CLOSE:
                    await ws.close(json.loads(payload).get("code", 1000))
                    return

        async def origin_to_edge() -> None:
            while (message := await ws.receive()) is not None:
                if isinstance(message, str):
                    await channel.send(FrameType.WS_TEXT, message.encode())
                else:
                    await channel.send(FrameType.WS_BINARY, message)
            await channel.send_json(FrameType.WS_CLOSE, {"code": ws.close_code or 1000},
                                    end=True)

        tasks = [asyncio.ensure_future(edge_to_origin()), asyncio.ensure_future(origin_to_edge())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return 101


class RegistrationError(ConnectionError):
    """The edge refused this connector (wrong secret, unknown tunnel, foreign hostname)."""


def _with_hops(headers: list[tuple[str, str]], hops: list[dict], origin_hop: Any) -> list:
    out = [(k, v) for k, v in headers if k.lower() != HOPS_HEADER]
    all_hops = list(hops)
    if origin_hop is not None:
        all_hops.append(origin_hop.as_dict() if hasattr(origin_hop, "as_dict") else origin_hop)
    out.append((HOPS_HEADER, json.dumps(all_hops, separators=(",", ":"))))
    return out


def _s(path: Any) -> str | None:
    return str(path) if path is not None else None


def _fmt(edge: tuple[str, int]) -> str:
    host, port = edge
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def print_banner(state: ConnectionState, error: str) -> None:
    """What cloudflared does on a failed post-quantum handshake: say it loudly, say what next."""
    lines = [
        "=" * 78,
        "POST-QUANTUM TUNNEL CONNECTION FAILED (no classical fallback: --post-quantum is set)",
        f"  connIndex={state.index} edge={state.edge} group tried={state.group_tried}",
        f"  error: {error}",
        "  What to check:",
        "   - does the edge accept post-quantum key exchange? (edge.yaml: connectors:",
        "     post-quantum: prefer|require, and the group above in connectors: groups)",
        "   - does your network pass UDP and fragmented (multi-datagram) ClientHellos?",
        "   - run without --post-quantum to see whether a classical connection works",
        f"  Known problems: {BANNER_URL}",
        "=" * 78,
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


async def _post_json(url: str, report: dict, ca_file: str | None) -> None:
    """POST a failure report; errors are logged, never raised (reporting must not break us)."""
    import urllib.request

    def post() -> None:
        context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
        request = urllib.request.Request(url, data=json.dumps(report).encode(), method="POST",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            resp.read()

    try:
        await asyncio.get_running_loop().run_in_executor(None, post)
        logger.info("post-quantum failure report sent to %s", url)
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not send the post-quantum failure report to %s: %s", url, exc)


def default_pq_groups() -> tuple[str, ...]:
    return tuple(g for g in DEFAULT_PQ_GROUPS if registry().by_name(g))


def load_secret(credentials_file: str) -> tuple[str, str, bytes]:
    creds = load_credentials(credentials_file)
    return creds.tunnel_id, creds.tunnel_name, creds.secret
