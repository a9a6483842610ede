"""An unread stream must hold little, a stream that is read must still get its full window
(issue 14: a hostile visitor's 40 unread downloads each held megabytes along the tunnel).

The QUIC parts run on real aioquic connections, in memory (sans-IO, a simulated clock for
aioquic and the real one for the window tuning): a receiver set up with ``tune_windows``
announces a small start window and grows a stream's window only while its reader keeps up; a
writer waits while more than ``SEND_BLOCKED_HIGH`` of its bytes are beyond the peer's window,
not only while half a megabyte is unacknowledged. The TCP part uses real sockets and a real
asyncio TLS connection: a connection of the edge's listener may hold ``pq_unsent_limit``
unsent in the kernel and in its TLS layer, not megabytes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from quic_util import sans_io_pair

from pq_quic_plugin.aioquic_binding.flow_control import START_WINDOW, ReceiveCredit, tune_windows
from pq_quic_plugin.aioquic_binding.send_backpressure import (
    SEND_BLOCKED_HIGH,
    SEND_BUFFER_HIGH,
    wait_for_send_room,
)
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.hypercorn_binding import PostQuantumConfig
from pq_quic_plugin.hypercorn_binding.tcp import limit_connection

MAX_WINDOW = 1024 * 1024  # aioquic's default max_stream_data: where tuning stops
CLIENT, SERVER = ("127.0.0.1", 4433), ("127.0.0.1", 50000)


@dataclass
class Pair:
    """A client that sends and a server that receives, in memory, on a simulated clock."""

    client: QuicConnection
    server: QuicConnection
    credit: ReceiveCredit
    now: float = 0.0
    received: int = 0
    unread: int = 0  # delivered to the reader, not taken yet

    def pump(self, rounds: int, one_way: float, read: int | None = None) -> None:
        """Exchange datagrams for ``rounds`` round trips of ``2 * one_way`` simulated seconds;
        the server's reader takes at most ``read`` bytes per round (None: all, 0: nothing)."""
        for _ in range(rounds):
            moved = False
            for data, _addr in self.client.datagrams_to_send(now=self.now):
                self.server.receive_datagram(data, CLIENT, now=self.now + one_way)
                moved = True
            self.now += one_way
            self._deliver(read)
            for data, _addr in self.server.datagrams_to_send(now=self.now):
                self.client.receive_datagram(data, SERVER, now=self.now + one_way)
                moved = True
            self.now += one_way
            if not moved and read == 0:
                return

    def _deliver(self, read: int | None) -> None:
        """What a Channel does: track the stream, count what arrived, report what was read
        (only stream 0 is used)."""
        while (event := self.server.next_event()) is not None:
            if isinstance(event, events.StreamDataReceived) and event.data:
                self.credit.track(event.stream_id)
                self.credit.delivered(event.stream_id, len(event.data))
                self.received += len(event.data)
                self.unread += len(event.data)
        take = self.unread if read is None else min(read, self.unread)
        if take:
            self.unread -= take
            self.credit.consumed(0, take)


def _pair(pki: DevPKI, tuned: bool = True) -> Pair:
    client, server = sans_io_pair(pki)
    credit = tune_windows(server) if tuned else ReceiveCredit.of(server)
    pair = Pair(client, server, credit)
    client.connect(SERVER, now=0.0)
    pair.pump(8, 0.001, read=0)
    assert client._handshake_complete and server._handshake_complete
    return pair


def test_an_unread_stream_holds_one_start_window(pki: DevPKI) -> None:
    pair = _pair(pki)
    pair.client.send_stream_data(0, bytes(4 * MAX_WINDOW))
    pair.pump(200, 0.001, read=0)
    assert pair.received == START_WINDOW  # was 1 MiB: aioquic's window for every stream
    assert pair.credit.window_of(0) == START_WINDOW


def test_without_tuning_an_unread_stream_holds_the_whole_window(pki: DevPKI) -> None:
    pair = _pair(pki, tuned=False)  # what hypercorn-pq's request bodies still get
    pair.client.send_stream_data(0, bytes(4 * MAX_WINDOW))
    pair.pump(400, 0.001, read=0)
    assert pair.received == MAX_WINDOW


def test_a_reader_that_keeps_up_gets_the_full_window(pki: DevPKI) -> None:
    pair = _pair(pki)
    pair.client.send_stream_data(0, bytes(8 * MAX_WINDOW))
    pair.pump(2000, 0.02, read=None)  # a 40 ms round trip: the window limits the rate
    assert pair.received == 8 * MAX_WINDOW
    assert pair.credit.window_of(0) == MAX_WINDOW


def test_a_slow_reader_keeps_a_small_window(pki: DevPKI) -> None:
    pair = _pair(pki)
    pair.client.send_stream_data(0, bytes(MAX_WINDOW))
    for _ in range(24):  # 8 KiB per 10 ms of real time: far slower than the window allows
        pair.pump(1, 0.0005, read=8 * 1024)
        time.sleep(0.01)
    assert pair.received >= 3 * START_WINDOW  # it did move, at the reader's pace
    assert pair.credit.window_of(0) == START_WINDOW


def test_a_writer_waits_while_its_bytes_are_beyond_the_peer_window(pki: DevPKI) -> None:
    pair = _pair(pki)
    written = START_WINDOW + SEND_BLOCKED_HIGH + 64 * 1024
    assert written < SEND_BUFFER_HIGH  # the unacknowledged-bytes rule alone would not wait
    pair.client.send_stream_data(0, bytes(written))

    async def wait_with(read: int) -> bool:
        async def step(_delay: float) -> None:
            pair.pump(1, 0.001, read=read)
            await asyncio.sleep(0)

        return await asyncio.wait_for(wait_for_send_room(pair.client, 0, step), 1.0)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(wait_with(read=0))  # the server reads nothing: the writer keeps waiting
    assert asyncio.run(wait_with(read=16 * 1024)) is True  # the reader takes: room again


def test_tcp_listener_limits_what_a_connection_holds_unsent() -> None:
    config = PostQuantumConfig()
    config.bind = ["127.0.0.1:0"]
    config.pq_unsent_limit = 64 * 1024
    sockets = config.create_sockets()
    (listener,) = sockets.insecure_sockets
    try:
        listener.setblocking(True)
        listener.listen(1)
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:  # the kernel copies the listener's option to each connection
                option = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
                assert option == 64 * 1024
    finally:
        listener.close()


def test_tls_connection_pauses_its_writer_at_the_limit(pki: DevPKI) -> None:
    async def main() -> tuple[int, int]:
        limits: list[tuple[int, int]] = []

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server: Any = SimpleNamespace(writer=writer)  # what hypercorn's TCPServer offers
            limit_connection(server, SimpleNamespace(pq_unsent_limit=64 * 1024))
            limits.append(writer.transport.get_write_buffer_limits())
            writer.close()

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(pki.cert), str(pki.key))
        server = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        client = ssl.create_default_context(cafile=str(pki.ca_cert))
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        for _ in range(100):
            if limits:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()
        return limits[0]

    low, high = asyncio.run(main())
    assert high == 64 * 1024  # asyncio's TLS transport alone pauses at 512 KiB


def test_a_frame_larger_than_the_window_arrives_whole(pki: DevPKI) -> None:
    """A tunnel Channel cannot take half a frame: the bytes of an incomplete frame must count
    as taken (``ReceiveCredit.waiting``), or a 64 KiB DATA frame (plus its header) never fits a
    64 KiB start window and the stream stalls for good (it did, for HTTP/2 origins)."""
    pair = _pair(pki)
    frame = START_WINDOW + 3  # what the connector writes: 64 KiB of payload and a header
    pair.client.send_stream_data(0, bytes(2 * frame))
    for _ in range(200):
        pair.pump(1, 0.001, read=0)
        pair.credit.waiting(0, (pair.received // frame) * frame)  # whole frames wait, not parts
        if pair.received >= 2 * frame:
            break
    assert pair.received >= frame  # stuck at START_WINDOW when the partial frame counted
