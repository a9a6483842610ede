"""A rogue connector for the edge's connector listener: an in-process edge and a raw client.

The client is a real aioquic QUIC connection with the tunnel's ALPN that sends whatever frames a
test gives it (valid, mutated or hostile) on the control stream; the edge side is the real
``ConnectorListener`` with a real store. Everything the edge logs, and every exception its event
loop sees, is recorded, so a test can assert that hostile input produced refusals, not
tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aioquic.asyncio import connect
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from pq_quic_plugin.aioquic_binding.facade import quic_of
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.tunnel.connector.registration import Identity, register
from pq_quic_plugin.tunnel.credentials import derive_auth_key, proof
from pq_quic_plugin.tunnel.edge.connectors import ConnectorListener
from pq_quic_plugin.tunnel.edge.registry import Registry
from pq_quic_plugin.tunnel.edge.store import TunnelRecord, TunnelStore
from pq_quic_plugin.tunnel.wire import (
    ALPN,
    PROTOCOL_VERSION,
    Channel,
    FrameType,
    TunnelConnection,
    encode_frame,
    encode_json,
)

HOSTNAME = "demo.example.com"


_Link = TypeVar("_Link", bound=TunnelConnection)


class Rogue(TunnelConnection):
    """A client connection that remembers how the edge closed it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terminated: tuple[int, str] | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = (event.error_code, event.reason_phrase)
        super().quic_event_received(event)


class Recorder(logging.Handler):
    """Every log record of the process, plus the event loop's unhandled exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.loop_errors: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        """Records that carry a traceback or say an exception escaped, and loop errors."""
        bad = [
            r.getMessage()
            for r in self.records
            if r.exc_info or "Traceback" in r.getMessage() or "never retrieved" in r.getMessage()
        ]
        return bad + [str(e.get("message")) + repr(e.get("exception")) for e in self.loop_errors]

    def messages(self, logger_prefix: str = "pq_quic_plugin") -> list[str]:
        return [r.getMessage() for r in self.records if r.name.startswith(logger_prefix)]


@dataclass
class EdgeSide:
    listener: ConnectorListener
    store: TunnelStore
    registry: Registry
    port: int
    record: TunnelRecord
    secret: bytes
    pki: DevPKI
    log: Recorder = field(default_factory=Recorder)

    @property
    def auth_key(self) -> bytes:
        return derive_auth_key(self.secret, self.record.id)


@contextlib.asynccontextmanager
async def connector_listener(
    directory: Path, pki: DevPKI, deadline: float = 10.0
) -> AsyncIterator[EdgeSide]:
    """A real connector listener on a free UDP port, with tunnel ``demo`` in its store."""
    store = TunnelStore(directory / "tunnels.db")
    record, secret = store.create("demo", [HOSTNAME])
    registry = Registry()
    listener = ConnectorListener(
        store, registry, edge_id="edge-1", location="test", registration_deadline=deadline
    )
    recorder = Recorder()
    root, quic = logging.getLogger(), logging.getLogger("quic")
    old_levels = root.level, quic.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    quic.setLevel(logging.WARNING)  # aioquic's per-packet lines cost more than the cases
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: recorder.loop_errors.append(context))
    port = await listener.start("127.0.0.1", 0, str(pki.cert), str(pki.key))
    try:
        yield EdgeSide(listener, store, registry, port, record, secret, pki, recorder)
    finally:
        listener.close()
        store.close()
        root.removeHandler(recorder)
        root.setLevel(old_levels[0])
        quic.setLevel(old_levels[1])
        loop.set_exception_handler(None)


def client_configuration(pki: DevPKI) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    config.load_verify_locations(str(pki.ca_cert))
    return config


@contextlib.asynccontextmanager
async def connected(edge: EdgeSide, protocol: type[_Link]) -> AsyncIterator[_Link]:
    """A client connection of class ``protocol`` to the edge's connector listener."""
    async with connect(
        "127.0.0.1",
        edge.port,
        configuration=client_configuration(edge.pki),
        create_protocol=protocol,
    ) as conn:
        assert isinstance(conn, protocol)
        yield conn


@contextlib.asynccontextmanager
async def rogue(edge: EdgeSide) -> AsyncIterator[tuple[Rogue, Channel]]:
    """A connected client and its control stream (nothing sent yet)."""
    async with connected(edge, Rogue) as conn:
        yield conn, conn.open_channel()


def send_raw(conn: Rogue, channel: Channel, data: bytes, end: bool = False) -> None:
    """Bytes on a stream as they are, framing or not."""
    quic_of(conn).send_stream_data(channel.stream_id, data, end)
    conn.transmit()


async def closed(conn: Rogue, timeout: float) -> tuple[int, str] | None:
    """How the edge closed the connection, or ``None`` if it is still open after ``timeout``."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(conn.closed_event.wait(), timeout)
    return conn.terminated


def hello(edge: EdgeSide, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "tunnel_id": edge.record.id,
        "connector_id": str(uuid.uuid4()),
        "conn_index": 0,
        "software": "rogue/1",
        "hostnames": [HOSTNAME],
    }
    message.update(fields)
    return message


def control(message: dict[str, Any]) -> bytes:
    return encode_json(FrameType.CONTROL, message)


def control_raw(payload: bytes) -> bytes:
    return encode_frame(FrameType.CONTROL, payload)


async def clean_registration(edge: EdgeSide, conn_index: int = 0) -> dict[str, Any]:
    """What the real connector does; returns the edge's ``registered`` message."""
    identity = Identity(edge.record.id, str(uuid.uuid4()), edge.auth_key, (HOSTNAME,))
    async with connected(edge, TunnelConnection) as conn:
        return await asyncio.wait_for(register(conn, identity, conn_index), 10)


def answer(edge: EdgeSide, challenge: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """A correct ``auth`` for ``challenge`` as the holder of the tunnel's key would send it."""
    import base64

    nonce = base64.b64decode(challenge["nonce"])
    mac = proof(edge.auth_key, nonce, edge.record.id, sent["connector_id"], sent["conn_index"])
    return {"type": "auth", "proof": base64.b64encode(mac).decode()}
