"""A server connection whose handshake does not complete in time is closed (handshake deadline).

Finding: a client that sends a valid Initial ClientHello and then nothing left the server a
half-open connection (about 150 KB) until aioquic's idle timeout, 60 s under hypercorn; the long
ClientHello fuzz run (100,000 of them at ~250/s) took hypercorn-pq from 119 MB to 517 MB. Now a
server connection the binding runs must complete its handshake within a deadline (default 10 s;
1 s here), or it is closed and leaves the server's table (``aioquic_binding/
handshake_deadline.py``), with one summary line in the log rather than one per connection.

Against real servers: a ``configure()``\\ d ``aioquic.asyncio.serve`` in a thread of this
process (its connection table read in its own loop), and hypercorn-pq processes under both
workers (the deadline from ``--pq-handshake-timeout`` and from the TOML key). Under the trio
worker the connections stayed even with the deadline: hypercorn arms a connection's next timer
from the fired timer's task by cancelling that task, which under trio cancels the new timer too
(fixed in ``hypercorn_binding/quic_guard.py``). The half-open
connections are made by :class:`fuzz_clienthello_targets.Blaster`: a valid ClientHello in
Initial packets, then silence. A slow but legitimate client (every datagram delayed by a
relay, so the server sees the handshake complete 0.5 s after it started) still succeeds; one
slower than the deadline is told why it was closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicErrorCode
from fuzz_clienthello_mutations import Target
from fuzz_clienthello_targets import Blaster, rss_kb
from servers import free_port, hypercorn_pq, run_cli
from waiting import wait_until

from pq_quic_plugin import configure
from pq_quic_plugin.aioquic_binding import handshake_deadline
from pq_quic_plugin.aioquic_binding.facade import server_port
from pq_quic_plugin.aioquic_binding.handshake_deadline import REASON, dropped_total
from pq_quic_plugin.http3 import fetch

ALPN = "pq-deadline"
DEADLINE = 1.0
HALF_OPEN = 300
PING = b"slow but legitimate"
SUMMARY = "QUIC handshake deadline: closed"
APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(autouse=True)
def fresh_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts a new minute of the once-a-minute summary line."""
    monkeypatch.setattr(handshake_deadline, "_summary", handshake_deadline._DropSummary())


# --------------------------------------------------------------- an aioquic server in a thread


class _Echo(QuicConnectionProtocol):
    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
            self.transmit()


class ServerThread:
    """``aioquic.asyncio.serve`` (``configure()``\\ d, idle timeout 60 s as under hypercorn)
    on its own loop and thread, so a blocking attacker can run in the test's thread."""

    def __init__(self, pki: Any, handshake_timeout: float | None) -> None:
        config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN], idle_timeout=60.0)
        config.load_cert_chain(str(pki.cert), str(pki.key))
        configure(config, "prefer", handshake_timeout=handshake_timeout)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: QuicServer = self.call(
            serve("127.0.0.1", 0, configuration=config, create_protocol=_Echo)
        )
        self.port = server_port(self.server)

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def connections(self) -> list[QuicConnection]:
        """The server's table (one entry per connection ID), read in the server's loop."""

        async def read() -> list[QuicConnection]:
            protocols = {id(p): p for p in self.server._protocols.values()}
            return [p._quic for p in protocols.values()]

        return self.call(read())

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()

        self.call(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def aioquic_server(pki: Any, handshake_timeout: float | None = DEADLINE) -> Iterator[ServerThread]:
    server = ServerThread(pki, handshake_timeout)
    try:
        yield server
    finally:
        server.close()


def half_open(port: int, count: int, alpn: str) -> int:
    """``count`` connections that send a valid ClientHello and then nothing; how many the
    server answered (its first flight), i.e. how many connections it created."""
    blaster = Blaster(port)
    target = Target(alpn)
    try:
        for i in range(count):
            scid = os.urandom(8)
            blaster.send(f"partial-{i}", scid, target.hello(scid).encode()[0])
        return count - len(blaster.unanswered(wait=0.5))
    finally:
        blaster.close()


def summary_lines(text: str) -> int:
    return text.count(SUMMARY)


# ------------------------------------------------------------------------- the finding, serve()


@pytest.mark.slow  # seconds: deadlines, a slow path, closing periods
def test_half_open_handshakes_leave_the_aioquic_server_table(
    pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dropped_before = dropped_total()
    with caplog.at_level(logging.INFO, logger="pq_quic_plugin"), aioquic_server(pki) as server:
        answered = half_open(server.port, HALF_OPEN, ALPN)
        assert answered == HALF_OPEN, f"only {answered} of {HALF_OPEN} partial handshakes answered"
        # Without the deadline all of them stay for the 60 s idle timeout.
        wait_until(lambda: not server.connections(), 20, "the server's table to empty")
        assert dropped_total() - dropped_before == HALF_OPEN
        # The listener still serves, and a client that completes its handshake is not closed.
        asyncio.run(_echo_after(server.port, pki, pause=DEADLINE * 1.5))
        assert dropped_total() - dropped_before == HALF_OPEN
    # Bounded log: a summary line, not one per connection (nor aioquic's traceback).
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert summary_lines(logged) == 1, logged[-3000:]
    assert f"closed 1 server connection whose handshake did not complete within {DEADLINE:g} s" in (
        logged
    )
    per_connection = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(per_connection) <= 2, [r.getMessage() for r in per_connection]


@pytest.mark.slow  # seconds: deadlines, a slow path, closing periods
def test_no_deadline_when_switched_off(pki: Any) -> None:
    """``handshake_timeout=0``: aioquic's idle timeout only; the control for the test above."""
    dropped_before = dropped_total()
    with aioquic_server(pki, handshake_timeout=0) as server:
        assert half_open(server.port, 20, ALPN) == 20
        time.sleep(DEADLINE * 3)
        assert len(server.connections()) == 20
        assert dropped_total() == dropped_before
        assert all("get_timer" not in quic.__dict__ for quic in server.connections())


@pytest.mark.parametrize("value", [-1, "soon", float("nan"), float("inf")])
def test_a_bad_handshake_timeout_is_refused(value: Any) -> None:
    config = QuicConfiguration(is_client=False)
    with pytest.raises(ValueError, match="handshake timeout"):
        configure(config, "prefer", handshake_timeout=value)


# ------------------------------------------------------------------- slow but legitimate clients


class DelayRelay(asyncio.DatagramProtocol):
    """UDP between one client and a server, every datagram held ``delay`` seconds each way."""

    def __init__(self, server: tuple[str, int], delay: float) -> None:
        self.server, self.delay = server, delay
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None
        self.client: tuple[str, int] | None = None

    def connection_made(self, transport: Any) -> None:
        self.front = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client = addr
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self._to_server, data)

    def _to_server(self, data: bytes) -> None:
        if self.back is not None:
            self.back.sendto(data, self.server)

    def from_server(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self._to_client, data)

    def _to_client(self, data: bytes) -> None:
        if self.front is not None and self.client is not None:
            self.front.sendto(data, self.client)


class _Back(asyncio.DatagramProtocol):
    def __init__(self, relay: DelayRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay.from_server(data)


@contextlib.asynccontextmanager
async def relay(port: int, delay: float) -> Any:
    loop = asyncio.get_running_loop()
    proxy = DelayRelay(("127.0.0.1", port), delay)
    front, _ = await loop.create_datagram_endpoint(lambda: proxy, local_addr=("127.0.0.1", 0))
    back, _ = await loop.create_datagram_endpoint(lambda: _Back(proxy), local_addr=("127.0.0.1", 0))
    proxy.back = back
    try:
        yield front.get_extra_info("sockname")[1]
    finally:
        front.close()
        back.close()


class _Recording(QuicConnectionProtocol):
    terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = event


def _client_config(pki: Any) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    config.load_verify_locations(str(pki.ca_cert))
    config.verify_mode = ssl.CERT_REQUIRED
    return configure(config, "prefer")


async def _echo_after(
    port: int, pki: Any, pause: float, while_open: Callable[[], None] = lambda: None
) -> float:
    """Handshake, wait ``pause`` (past the deadline), echo, run ``while_open``; the
    handshake's duration."""
    started = time.monotonic()
    async with connect("127.0.0.1", port, configuration=_client_config(pki)) as client:
        took = time.monotonic() - started
        await asyncio.sleep(pause)
        reader, writer = await client.create_stream()
        writer.write(PING)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == PING
        while_open()
    return took


@pytest.mark.slow  # seconds: deadlines, a slow path, closing periods
def test_a_slow_but_legitimate_client_still_connects(pki: Any) -> None:
    """0.25 s each way: the server's handshake completes ~0.5 s after its first datagram."""
    dropped_before = dropped_total()
    with aioquic_server(pki) as server:

        def established() -> None:
            """The deadline's stand-in methods are gone: aioquic's own run again."""
            (quic,) = server.connections()
            assert not {"get_timer", "handle_timer", "datagrams_to_send"} & set(quic.__dict__)

        async def scenario() -> float:
            async with relay(server.port, 0.25) as port:
                return await _echo_after(port, pki, DEADLINE * 1.5, established)

        took = asyncio.run(asyncio.wait_for(scenario(), 20))
        assert took >= 0.5, f"the path was not slow ({took:.2f} s)"
        assert dropped_total() == dropped_before


@pytest.mark.slow  # seconds: deadlines, a slow path, closing periods
def test_a_client_slower_than_the_deadline_learns_why(pki: Any) -> None:
    """0.7 s each way: the client's Finished would reach the server 1.4 s after it began."""
    dropped_before = dropped_total()
    with aioquic_server(pki) as server:

        async def scenario() -> events.ConnectionTerminated | None:
            holder: list[_Recording] = []

            def factory(*args: Any, **kwargs: Any) -> _Recording:
                holder.append(_Recording(*args, **kwargs))
                return holder[-1]

            async with relay(server.port, 0.7) as port:
                with contextlib.suppress(ConnectionError):
                    async with connect(
                        "127.0.0.1",
                        port,
                        configuration=_client_config(pki),
                        create_protocol=factory,
                    ) as client:
                        await asyncio.wait_for(client.wait_closed(), 10)
            return holder[0].terminated

        event = asyncio.run(asyncio.wait_for(scenario(), 30))
        assert event is not None
        assert (event.error_code, event.reason_phrase) == (QuicErrorCode.CONNECTION_REFUSED, REASON)
        assert dropped_total() == dropped_before + 1
        wait_until(lambda: not server.connections(), 10, "the late connection to leave")


# ---------------------------------------------------------------------------------- hypercorn-pq


def test_hypercorn_trio_times_out_a_silent_connection(pki: Any) -> None:
    """The trio worker's timers (``hypercorn_binding/quic_guard.py``), with ``pq`` off and no
    deadline: stock hypercorn armed a connection's next timer by cancelling the fired timer's
    task, which under trio cancelled the new timer too, so this connection (one Initial, then
    silence) never reached its 1 s idle timeout and stayed in the table."""
    trio = pytest.importorskip("trio")
    from aioquic.h3.connection import H3_ALPN
    from hypercorn.config import Config
    from hypercorn.events import RawData
    from hypercorn.protocol.quic import QuicProtocol
    from hypercorn.trio.task_group import TaskGroup
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState

    import pq_quic_plugin.hypercorn_binding  # noqa: F401  (the hooks, as in hypercorn-pq)

    async def send(event: Any) -> None:
        pass

    async def app(*args: Any) -> None:
        pass

    async def scenario() -> float:
        config = Config()
        config.certfile, config.keyfile = str(pki.cert), str(pki.key)
        async with TaskGroup() as group:
            address = ("127.0.0.1", 4433)
            state = ConnectionState({})
            protocol = QuicProtocol(app, config, WorkerContext(None), group, state, address, send)
            protocol.quic_config.idle_timeout = 1.0
            client_config = QuicConfiguration(
                is_client=True, alpn_protocols=H3_ALPN, server_name="localhost"
            )
            client = QuicConnection(configuration=client_config)
            client.connect(address, now=0.0)
            for data, _ in client.datagrams_to_send(now=0.0):
                await protocol.handle(RawData(data=data, address=("127.0.0.1", 50004)))
            assert protocol.connections, "the server made no connection"
            started = trio.current_time()
            with trio.move_on_after(10):
                while protocol.connections:
                    await trio.sleep(0.05)
            for connection in {id(c): c for c in protocol.connections.values()}.values():
                await connection.task.stop()
            return trio.current_time() - started if not protocol.connections else -1.0

    took = trio.run(scenario)
    assert took >= 0, "the silent connection was still in the table after 10 s"


def _objects(pki: Any, port: int) -> dict[str, int]:
    """Connection objects alive in the worker (``tests/apps/broken_group_app.py``)."""
    url = f"https://localhost:{port}/objects"
    response = asyncio.run(fetch(url, "prefer", cafile=str(pki.ca_cert), timeout=10))
    assert response.status == 200
    return json.loads(response.body)


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["asyncio", "trio"])
def test_half_open_handshakes_leave_hypercorn_pq(worker: str, pki: Any, tmp_path: Path) -> None:
    """asyncio: ``--pq-handshake-timeout 1``; trio (whose clock is its own): the TOML key."""
    if worker == "asyncio":
        deadline = ["--pq-handshake-timeout", str(DEADLINE)]
    else:
        toml = tmp_path / "hypercorn.toml"
        toml.write_text(f"pq_handshake_timeout = {DEADLINE}\n")
        deadline = ["-c", str(toml)]
    port = free_port()
    args = [*deadline, "--pq", "-k", worker, "--certfile", str(pki.cert), "--keyfile"]
    args += [str(pki.key), "-b", f"127.0.0.1:{port}", "broken_group_app:app"]
    with hypercorn_pq(args, tmp_path, port, cwd=APPS) as process:
        baseline = _objects(pki, port)["QuicConnection"]
        rss = [rss_kb(process)]
        for _ in range(2):  # the second round reuses the first one's memory
            assert half_open(port, HALF_OPEN, "h3") >= HALF_OPEN * 0.99
            wait_until(
                lambda: _objects(pki, port)["QuicConnection"] <= baseline + 1,
                20,
                "the half-open connections to be closed (60 s idle timeout without a deadline)",
            )
            rss.append(rss_kb(process))  # and a clean request just worked
        print(f"hypercorn-pq {worker}: RSS {[round(kb / 1024) for kb in rss]} MB")
        assert rss[2] - rss[1] < 40 * 1024, f"still growing: {rss} kB"
        log = process.log()
        assert summary_lines(log) == 1, log[-3000:]
        assert "Traceback" not in log


@pytest.mark.slow
def test_a_bad_handshake_timeout_stops_hypercorn_pq(pki: Any) -> None:
    out = run_cli(
        ["--pq", "--certfile", str(pki.cert), "--keyfile", str(pki.key)]
        + ["--pq-handshake-timeout", "-3", "app:app"]
    )
    assert out.returncode == 2
    assert "--pq-handshake-timeout: handshake timeout must be >= 0 seconds" in out.stderr
