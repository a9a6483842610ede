"""A client and a server ``QuicConnection`` driven in one process, datagrams handed across by hand.

The pump (:func:`run_pair`) runs one *round* at a time: everything the client has to send goes
to the server, then everything the server has to send goes back. A round is therefore one
network round trip, which makes "round trips to first byte" countable deterministically, and
no socket or event loop adds noise to the CPU time measured. It works with aioquic and with
qh3, whose sans-IO classes share the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)


def initial_dcid(datagram: bytes) -> bytes:
    """Destination connection ID of a long-header packet (what a server demultiplexes on)."""
    length = datagram[5]
    return datagram[6 : 6 + length]


def is_initial(datagram: bytes) -> bool:
    """First packet of the datagram is a QUIC v1 Initial."""
    first = datagram[0]
    return bool(first & 0x80) and (first & 0x30) >> 4 == 0


class HandshakeFailed(RuntimeError):
    """The pair did not complete: a broken variant stops the run instead of timing nothing."""


@dataclass
class Round:
    """What crossed in one round: each datagram's size each way, and how many were Initials."""

    client_datagrams: list[int] = field(default_factory=list)
    server_datagrams: list[int] = field(default_factory=list)
    client_initials: int = 0
    server_initials: int = 0


@dataclass
class PairTrace:
    """What one sans-IO exchange did, round by round."""

    rounds: list[Round] = field(default_factory=list)
    client_cpu_ns: int = 0
    server_cpu_ns: int = 0
    client_complete_round: int | None = None
    server_complete_round: int | None = None
    first_app_byte_round: int | None = None
    timer_fires: int = 0
    client: Any = None
    server: Any = None

    @property
    def total_cpu_ns(self) -> int:
        return self.client_cpu_ns + self.server_cpu_ns


def run_pair(
    connection_class: type,
    client_config: Any,
    server_config: Any,
    request: bytes | None = None,
    on_client: Callable[[Any], None] | None = None,
    on_server: Callable[[Any], None] | None = None,
    max_rounds: int = 30,
) -> PairTrace:
    """Handshake (and optionally echo ``request`` on one stream) entirely in memory.

    Stops when both handshakes are complete (and the echo arrived, if asked) and a round
    passes with nothing to send. CPU time is measured separately for the client's and the
    server's calls (``time.process_time_ns``), so the pump's own bookkeeping is not counted.
    """
    clock = time.process_time_ns
    trace = PairTrace()
    now = 1000.0
    t0 = clock()
    client = connection_class(configuration=client_config)
    if on_client is not None:
        on_client(client)
    client.connect(SERVER_ADDR, now)
    trace.client_cpu_ns += clock() - t0
    server = None
    sent_request = False
    got_reply = request is None
    quiet = 0
    for index in range(1, max_rounds + 1):
        rnd = Round()
        # client -> server
        t0 = clock()
        c_out = client.datagrams_to_send(now)
        trace.client_cpu_ns += clock() - t0
        now += 0.0005
        for data, _ in c_out:
            rnd.client_datagrams.append(len(data))
            rnd.client_initials += is_initial(data)
            if server is None:
                t0 = clock()
                server = connection_class(
                    configuration=server_config,
                    original_destination_connection_id=initial_dcid(data),
                )
                trace.server_cpu_ns += clock() - t0
                if on_server is not None:
                    on_server(server)
            t0 = clock()
            server.receive_datagram(data, CLIENT_ADDR, now)
            trace.server_cpu_ns += clock() - t0
        if server is not None:
            t0 = clock()
            while (event := server.next_event()) is not None:
                kind = type(event).__name__
                if kind == "HandshakeCompleted" and trace.server_complete_round is None:
                    trace.server_complete_round = index
                elif kind == "StreamDataReceived":
                    server.send_stream_data(event.stream_id, event.data, event.end_stream)
                elif kind == "ConnectionTerminated":
                    raise HandshakeFailed(f"server: {event.error_code} {event.reason_phrase}")
            s_out = server.datagrams_to_send(now)
            trace.server_cpu_ns += clock() - t0
        else:
            s_out = []
        now += 0.0005
        # server -> client
        t0 = clock()
        for data, _ in s_out:
            rnd.server_datagrams.append(len(data))
            rnd.server_initials += is_initial(data)
            client.receive_datagram(data, SERVER_ADDR, now)
        while (event := client.next_event()) is not None:
            kind = type(event).__name__
            if kind == "HandshakeCompleted" and trace.client_complete_round is None:
                trace.client_complete_round = index
            elif kind == "StreamDataReceived" and event.data:
                got_reply = True
                if trace.first_app_byte_round is None:
                    trace.first_app_byte_round = index
            elif kind == "ConnectionTerminated":
                raise HandshakeFailed(f"client: {event.error_code} {event.reason_phrase}")
        if request is not None and not sent_request and trace.client_complete_round is not None:
            stream_id = client.get_next_available_stream_id()
            client.send_stream_data(stream_id, request, end_stream=True)
            sent_request = True
        trace.client_cpu_ns += clock() - t0
        trace.rounds.append(rnd)
        done = (
            trace.client_complete_round is not None
            and trace.server_complete_round is not None
            and got_reply
        )
        if not c_out and not s_out:
            if done:
                quiet += 1
                if quiet >= 1:
                    break
            else:
                # nothing in flight: only a timer can move things (never expected here)
                timers = [t for t in (client.get_timer(), server and server.get_timer()) if t]
                if not timers:
                    raise HandshakeFailed("stalled with no timer")
                now = max(now, min(timers))
                trace.timer_fires += 1
                t0 = clock()
                client.handle_timer(now)
                trace.client_cpu_ns += clock() - t0
                if server is not None:
                    t0 = clock()
                    server.handle_timer(now)
                    trace.server_cpu_ns += clock() - t0
    else:
        raise HandshakeFailed(f"no completion after {max_rounds} rounds")
    # drop the trailing empty round
    while (
        trace.rounds
        and not trace.rounds[-1].client_datagrams
        and not (trace.rounds[-1].server_datagrams)
    ):
        trace.rounds.pop()
    trace.client, trace.server = client, server
    return trace
