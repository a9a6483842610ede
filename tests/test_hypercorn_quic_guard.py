"""hypercorn's QUIC listener outlives a connection whose handling raises (hypercorn_binding).

A real hypercorn ``QuicProtocol`` (hooks installed, as in hypercorn-pq) in a real asyncio task
group, fed by real aioquic clients; ``pq`` is off, so aioquic itself runs unguarded and the
listener's own guard (``hypercorn_binding/quic_guard.py``) is what is tested. The failure is the
socket's: ``sendto`` raising ``OSError`` (ENOBUFS), which the trio worker's socket can do. Stock
hypercorn lets it out of ``QuicProtocol.handle`` (which ends the datagram loop of the listener)
or out of a connection's timer task (which ends the task group); here that connection is
dropped, one line is logged, and the next client is served.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

import pytest
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.protocol.quic import QuicProtocol
from hypercorn.typing import ConnectionState

import pq_quic_plugin.hypercorn_binding  # noqa: F401  (installs the hooks, as hypercorn-pq does)

SERVER = ("127.0.0.1", 4433)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    pass


class FlakySocket:
    """``protocol_send`` whose ``sendto`` fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = False
        self.sent: list[RawData] = []

    async def send(self, event: Any) -> None:
        if self.failing:
            raise OSError(errno.ENOBUFS, "No buffer space available")
        self.sent.append(event)


def _client(pki: Any, port: int) -> QuicConnection:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    config.load_verify_locations(str(pki.ca_cert))
    client = QuicConnection(configuration=config)
    client.connect(SERVER, now=0.0)
    client.port = port  # type: ignore[attr-defined]
    return client


async def _first_flight(protocol: QuicProtocol, client: QuicConnection) -> None:
    address = ("127.0.0.1", client.port)  # type: ignore[attr-defined]
    for data, _ in client.datagrams_to_send(now=0.0):
        await protocol.handle(RawData(data=data, address=address))


def test_a_connection_whose_handling_raises_is_dropped(
    pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        config = Config()
        config.certfile, config.keyfile = str(pki.cert), str(pki.key)
        socket = FlakySocket()
        context = WorkerContext(None)
        async with TaskGroup(asyncio.get_running_loop()) as group:
            protocol = QuicProtocol(
                _app, config, context, group, ConnectionState({}), SERVER, socket.send
            )
            # 1. Raises while answering a datagram: stock hypercorn lets OSError out of handle.
            socket.failing = True
            await _first_flight(protocol, _client(pki, 50001))
            assert protocol.connections == {}, "the failed connection is still in the table"

            # 2. Raises in a connection's timer (its retransmission), after a good start.
            socket.failing = False
            await _first_flight(protocol, _client(pki, 50002))
            assert socket.sent and protocol.connections
            socket.failing = True
            for _ in range(100):  # the probe timeout: a few hundred ms
                if not protocol.connections:
                    break
                await asyncio.sleep(0.05)
            assert protocol.connections == {}, "the connection whose timer failed is kept"

            # 3. The listener serves the next client.
            socket.failing = False
            socket.sent.clear()
            await _first_flight(protocol, _client(pki, 50003))
            assert socket.sent, "the next client got no answer"
            for connection in {id(c): c for c in protocol.connections.values()}.values():
                await connection.task.stop()
        # Leaving the task group raised nothing: no task of it failed.

    with caplog.at_level(logging.ERROR, logger="pq_quic_plugin"):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    lines = [r for r in caplog.records if "dropped that connection" in r.getMessage()]
    assert [("datagram" in r.getMessage(), "timer" in r.getMessage()) for r in lines] == [
        (True, False),
        (False, True),
    ], [r.getMessage() for r in lines]
    assert all(r.exc_info is None and "OSError" in r.getMessage() for r in lines)
