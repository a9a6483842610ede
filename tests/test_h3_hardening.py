"""hypercorn-pq's HTTP/3 listener under clients that stock hypercorn 0.18 mishandles.

Each test drives a real ``hypercorn-pq`` process over UDP on 127.0.0.1. Against stock
hypercorn the first test kills the QUIC listener (every later request times out) and the
second stalls every connection behind one slow reader. The TCP listener's side of the same
questions (HTTP/1.1 and HTTP/2 over the post-quantum TLS layer) is tests/test_tcp_hardening.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic import events
from servers import free_port, hypercorn_pq
from waiting import wait_until_async, wait_until_steady_async

from pq_quic_plugin.aioquic_binding.facade import SendState, quic_of, send_state
from pq_quic_plugin.http3 import client_configuration, fetch, open_session

pytestmark = pytest.mark.slow  # hypercorn-pq processes under both worker classes


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def server(request, pki, tmp_path_factory):  # type: ignore[no-untyped-def]
    """hypercorn-pq under both of hypercorn's worker classes (the hooks serve both)."""
    port = free_port()
    args = [
        "--pq",
        "-k",
        request.param,
        "--certfile",
        str(pki.cert),
        "--keyfile",
        str(pki.key),
        "-b",
        f"127.0.0.1:{port}",
        "app:app",
    ]
    with hypercorn_pq(args, tmp_path_factory.mktemp("logs"), port) as proc:
        yield port, proc


def _raw_client(pki: Any, port: int, protocol: type[QuicConnectionProtocol]) -> Any:
    """An HTTP/3 connection to the server whose frames the test writes itself."""
    config = client_configuration("require", cafile=str(pki.ca_cert), server_name="localhost")
    config.alpn_protocols = H3_ALPN
    return connect("127.0.0.1", port, configuration=config, create_protocol=protocol)


def _send_get(h3: H3Connection, authority: str, path: str, end_stream: bool) -> int:
    """A GET's HEADERS on a new request stream; returns the stream's ID."""
    stream_id = quic_of(h3).get_next_available_stream_id()
    request = [(b":method", b"GET"), (b":scheme", b"https")]
    request += [(b":authority", authority.encode()), (b":path", path.encode())]
    h3.send_headers(stream_id, request, end_stream=end_stream)
    return stream_id


class _LateFinClient(QuicConnectionProtocol):
    """GET with the request stream left open; once the whole response is in, send the FIN
    (an empty DATA frame with END_STREAM), in the same turn so it races nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(quic_of(self))
        self.status = 0
        self.body = bytearray()
        self.done = asyncio.get_running_loop().create_future()
        self.stream_id = -1

    def get(self, authority: str, path: str) -> None:
        self.stream_id = _send_get(self.h3, authority, path, end_stream=False)
        self.transmit()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.status = int(dict(h3_event.headers)[b":status"])
            elif isinstance(h3_event, DataReceived):
                self.body += h3_event.data
            if getattr(h3_event, "stream_ended", False) and not self.done.done():
                self.h3.send_data(self.stream_id, b"", end_stream=True)  # the late FIN
                self.transmit()
                self.done.set_result(None)


def test_a_late_fin_does_not_kill_the_listener(server, pki) -> None:  # type: ignore[no-untyped-def]
    port, proc = server

    async def scenario() -> tuple[int, int]:
        async with _raw_client(pki, port, _LateFinClient) as client:
            assert isinstance(client, _LateFinClient)
            client.get(f"localhost:{port}", "/api/connection")
            await asyncio.wait_for(client.done, 15)
            # The stream is discarded once the server has acknowledged the late FIN.
            await wait_until_async(
                lambda: send_state(quic_of(client), client.stream_id) is SendState.GONE,
                10,
                "the server to acknowledge the late FIN",
            )
            first = client.status
        # A new connection afterwards: stock hypercorn's listener is dead by now.
        again = await fetch(
            f"https://localhost:{port}/api/connection",
            "require",
            cafile=str(pki.ca_cert),
            timeout=10,
        )
        return first, again.status

    assert asyncio.run(scenario()) == (200, 200)
    assert "Traceback" not in proc.log()


def test_a_slow_reader_stalls_nobody_and_memory_stays_bounded(server, pki) -> None:  # type: ignore[no-untyped-def]
    """A client streams a large upload to /echo and never reads the echo.

    The server may hold about one receive window of it, the client's upload must stop
    (backpressure reaches it through QUIC flow control), and other clients are served at
    once while that request hangs.
    """
    port, _ = server
    url = f"https://localhost:{port}"
    offered = 256 << 20
    taken = 0

    async def upload():  # type: ignore[no-untyped-def]
        nonlocal taken
        chunk = b"x" * 65536
        while taken < offered:
            taken += len(chunk)
            yield chunk

    async def scenario() -> tuple[float, float, int]:
        config = client_configuration("require", cafile=str(pki.ca_cert))
        async with open_session(url, config) as session:
            pid = json.loads((await session.request("GET", "/pid")).body)["pid"]
            before = _rss_mb(pid)
            status, _, _echo = await session.stream_request(
                "POST", "/echo", [], upload(), timeout=30
            )
            assert status == 200
            # The upload runs until flow control stops it: wait until it stops growing.
            await wait_until_steady_async(
                lambda: taken, quiet=1.0, timeout=30, what="flow control to stop the upload"
            )
            # Another connection is served while that request is stuck.
            other = await fetch(
                url + "/api/connection", "require", cafile=str(pki.ca_cert), timeout=10
            )
            assert other.status == 200
            return before, _rss_mb(pid), other.status

    before, after, _ = asyncio.run(scenario())
    print(
        f"client offered {offered >> 20} MB; server took {taken / 2**20:.1f} MB; "
        f"server RSS {before:.0f} -> {after:.0f} MB"
    )
    assert taken < 16 << 20, f"the server accepted {taken >> 20} MB nobody reads"
    assert after - before < 40, f"server RSS grew by {after - before:.0f} MB"


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _StopSendingClient(QuicConnectionProtocol):
    """GET with its FIN, then STOP_SENDING on the response before the application answers:
    the server resets its side and, once that is acknowledged, aioquic forgets the stream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(quic_of(self))
        self.stream_id = -1

    def get_and_stop(self, authority: str, path: str) -> None:
        self.stream_id = _send_get(self.h3, authority, path, end_stream=True)
        quic_of(self).stop_stream(self.stream_id, 0x10C)  # H3_REQUEST_CANCELLED
        self.transmit()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        self.h3.handle_event(event)


def test_an_answer_to_a_stopped_stream_does_not_kill_the_listener(server, pki) -> None:  # type: ignore[no-untyped-def]
    """The application answers a request whose stream the client already stopped.

    Against the unguarded listener, hypercorn's send raised "Cannot send data on a finished
    stream" for the answer and again for its own 500, out of the application's task, and
    asyncio's task group then cancelled the listener's datagram loop: every later handshake
    timed out (what a browser that leaves a page mid-request did to the tunnel's edge).
    """
    port, proc = server

    async def scenario() -> int:
        async with _raw_client(pki, port, _StopSendingClient) as client:
            assert isinstance(client, _StopSendingClient)
            client.get_and_stop(f"localhost:{port}", "/slow?seconds=1.5")
            # Gone here once the server's RESET_STREAM arrived: the server forgets the stream
            # when our acknowledgement of it arrives, well before the application answers.
            await wait_until_async(
                lambda: send_state(quic_of(client), client.stream_id) is SendState.GONE,
                10,
                "the server to reset the stopped stream",
            )
            await asyncio.sleep(2.5)  # the application answers meanwhile
            # The same connection still serves.
            again = await fetch(
                f"https://localhost:{port}/api/connection",
                "require",
                cafile=str(pki.ca_cert),
                timeout=10,
            )
        return again.status

    assert asyncio.run(scenario()) == 200
    assert "Traceback" not in proc.log()
