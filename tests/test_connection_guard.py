"""One hostile ClientHello, one buggy plugin, one over-long close: only that connection suffers.

In memory (sans-IO): a configured aioquic server connection is fed Initial datagrams built byte
by byte (tests/fuzz_clienthello_wire.py), exactly as a listener would feed it. The listeners
themselves, as processes under the same inputs, are tests/test_fuzz_clienthello.py.

* A ClientHello listing 110 (or 32,000) groups, none acceptable: the refusal's reason used to
  name every one, the CONNECTION_CLOSE no longer fit an Initial packet and aioquic raised
  ``QuicPacketBuilderStop`` out of ``datagrams_to_send``; the refusal's log line grew to 200 KB
  for a 64 KB ClientHello. Now the alert goes out, with a reason of at most 200 bytes, and the
  log line stays short.
* Any exception out of the connection's entry points (a group plugin with a bug; a close whose
  reason does not fit) closes that connection, logs one line, and never reaches the caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import broken_group_plugin
import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from fuzz_clienthello_wire import (
    KEY_SHARE,
    SUPPORTED_GROUPS,
    baseline,
    initial_datagrams,
    key_share_body,
    u16_list,
    unknown_groups,
)

from pq_quic_plugin import configure
from pq_quic_plugin.aioquic_binding.reasons import MAX_REASON_BYTES

CLIENT = ("127.0.0.1", 50000)
HANDSHAKE_FAILURE = 0x100 + 40
INTERNAL_ERROR = 0x1
X25519 = 0x001D


def _server(pki: Any, policy: str = "prefer") -> QuicConnection:
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    config.load_cert_chain(str(pki.cert), str(pki.key))
    configure(config, policy)
    return QuicConnection(configuration=config, original_destination_connection_id=os.urandom(8))


def _feed(server: QuicConnection, crypto: bytes, scid: bytes) -> None:
    dcid = server.original_destination_connection_id
    for datagram in initial_datagrams(dcid, scid, crypto):
        server.receive_datagram(datagram, CLIENT, now=0.0)


def _unknown_groups_hello(scid: bytes, count: int) -> bytes:
    hello = baseline(scid, "h3", [X25519], [X25519])
    groups = unknown_groups(count)
    hello = hello.with_extension(SUPPORTED_GROUPS, u16_list(groups))
    hello = hello.with_extension(KEY_SHARE, key_share_body([(groups[0], b"x" * 32)]))
    return hello.encode()[0]


def _ended(server: QuicConnection) -> events.ConnectionTerminated:
    """Run the connection's timers to the end of its closing period; return its last event."""
    for _ in range(10):
        timer = server.get_timer()
        if timer is None:
            break
        server.handle_timer(now=timer)
    last = None
    while (event := server.next_event()) is not None:
        last = event
    assert isinstance(last, events.ConnectionTerminated), last
    return last


@pytest.mark.parametrize("count", [110, 32000])
def test_refusing_many_unknown_groups_sends_a_short_alert_and_logs_a_short_line(
    pki: Any, count: int, caplog: pytest.LogCaptureFixture
) -> None:
    server = _server(pki)
    scid = os.urandom(8)
    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        _feed(server, _unknown_groups_hello(scid, count), scid)
        datagrams = server.datagrams_to_send(now=0.0)  # raised QuicPacketBuilderStop before

    assert datagrams, "the refusal sent nothing"
    assert server._state is QuicConnectionState.CLOSING
    close = _ended(server)
    assert close.error_code == HANDSHAKE_FAILURE
    assert len(close.reason_phrase.encode()) <= MAX_REASON_BYTES
    assert f"client offered {count}:" in close.reason_phrase  # a count, then the first few
    refusals = [r.getMessage() for r in caplog.records if "refusing handshake" in r.getMessage()]
    assert len(refusals) == 1 and len(refusals[0]) < 400, refusals
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)


@pytest.fixture
def broken_group() -> Iterator[int]:
    broken_group_plugin.register()
    try:
        yield broken_group_plugin.BROKEN_CODEPOINT
    finally:
        broken_group_plugin.unregister()


def test_a_group_plugin_that_raises_closes_only_its_connection(
    pki: Any, broken_group: int, caplog: pytest.LogCaptureFixture
) -> None:
    server = _server(pki)
    scid = os.urandom(8)
    hello = baseline(scid, "h3", [broken_group], [])
    hello = hello.with_extension(KEY_SHARE, key_share_body([(broken_group, b"k" * 32)]))
    with caplog.at_level(logging.DEBUG, logger="pq_quic_plugin"):
        _feed(server, hello.encode()[0], scid)  # raised RuntimeError into the listener before
        _feed(server, hello.encode()[0], scid)  # a retransmission: still one log line
        datagrams = server.datagrams_to_send(now=0.0)

    assert datagrams, "no CONNECTION_CLOSE was sent"
    assert _ended(server).error_code == INTERNAL_ERROR
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    line = failures[0].getMessage()
    assert "RuntimeError" in line and broken_group_plugin.BUG in line
    assert "\n" not in line and failures[0].exc_info is None  # one line, no traceback


def test_a_close_that_does_not_fit_is_sent_without_its_reason(
    pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The application closes a connection mid-handshake with a 2 KB reason: stock aioquic
    raises out of every ``datagrams_to_send`` from then on and never ends the connection."""
    server = _server(pki)
    scid = os.urandom(8)
    _feed(server, baseline(scid, "h3", [X25519], [X25519]).encode()[0], scid)
    server.datagrams_to_send(now=0.0)  # ServerHello and the rest of the server's flight
    server.close(error_code=0x0A, frame_type=0x06, reason_phrase="x" * 2000)
    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        datagrams = server.datagrams_to_send(now=0.0)
        assert server.datagrams_to_send(now=0.0) == []

    assert datagrams, "the close was not sent"
    close = _ended(server)
    assert close.error_code == 0x0A and close.reason_phrase == ""
    assert sum("QuicPacketBuilderStop" in r.getMessage() for r in caplog.records) == 1


def test_stock_connections_keep_aioquic_behaviour(pki: Any) -> None:
    """The guard is for the connections the binding runs; a stock one still raises."""
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    config.load_cert_chain(str(pki.cert), str(pki.key))
    configure(QuicConfiguration(is_client=False))  # the wrappers are installed, for others
    server = QuicConnection(configuration=config, original_destination_connection_id=b"s" * 8)
    scid = os.urandom(8)
    _feed(server, baseline(scid, "h3", [X25519], [X25519]).encode()[0], scid)
    server.datagrams_to_send(now=0.0)
    server.close(error_code=0x0A, frame_type=0x06, reason_phrase="x" * 2000)
    with pytest.raises(Exception) as raised:  # noqa: B017 - aioquic's own exception type
        server.datagrams_to_send(now=0.0)
    assert type(raised.value).__name__ == "QuicPacketBuilderStop"
