"""``protocol: auto | quic | http2`` (connector/transports.py) and how failures of an HTTP/2
attempt are sorted (connector/failures.py): which failures move ``auto`` to http2 (only a
connection that could not be made for a network reason), which never do (post-quantum, TLS and
authentication refusals, a registered connection that dropped), and what ``quic`` says when
UDP looks blocked. In-process: real ``Failure`` values and real exceptions, no processes.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from pq_quic_plugin.tunnel.connector.failures import Failure, FailureKind, classify
from pq_quic_plugin.tunnel.connector.registration import RegistrationError
from pq_quic_plugin.tunnel.connector.transports import (
    UDP_BLOCKED_HINT,
    ProtocolChoice,
    initial_protocol,
)

NETWORK = Failure(FailureKind.NETWORK, "timeout: no answer from the edge (handshake)")


@pytest.mark.parametrize(
    ("configured", "first"), [("auto", "quic"), ("quic", "quic"), ("http2", "http2")]
)
def test_each_setting_starts_on_its_transport(configured: str, first: str) -> None:
    assert initial_protocol(configured) == first
    assert ProtocolChoice(configured).current == first


def test_auto_falls_back_to_http2_when_quic_cannot_connect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    choice = ProtocolChoice("auto")
    caplog.set_level("INFO", "pq_quic_plugin.tunnel.connector")
    assert choice.after_failure(NETWORK, handshake_failed=True, index=0) is NETWORK
    assert choice.current == "http2"
    assert "Switching to fallback protocol http2" in caplog.text
    # http2 cannot connect either (the edge is down): back to QUIC, so that the connector does
    # not stay on http2 for good once the edge is back.
    choice.after_failure(Failure(FailureKind.NETWORK, "TCP connection refused"), True, 0)
    assert choice.current == "quic"


@pytest.mark.parametrize(
    "failure",
    [
        Failure(FailureKind.POST_QUANTUM, "post-quantum handshake refused by the peer"),
        Failure(FailureKind.TLS, "TLS alert bad_certificate"),
        Failure(FailureKind.AUTHENTICATION, "the edge refused the registration"),
    ],
    ids=lambda f: f.kind.value,
)
def test_a_refusal_never_switches_transport(failure: Failure) -> None:
    """The key exchange (and the credentials) are the same on both transports: switching would
    only hide the refusal."""
    choice = ProtocolChoice("auto")
    assert choice.after_failure(failure, handshake_failed=True, index=0) is failure
    assert choice.current == "quic"


def test_a_registered_connection_that_drops_stays_on_its_transport() -> None:
    choice = ProtocolChoice("auto")
    dropped = Failure(FailureKind.NETWORK, "connection lost: Idle timeout")
    choice.after_failure(dropped, handshake_failed=False, index=0)
    assert choice.current == "quic"


def test_quic_only_says_udp_looks_blocked_and_names_http2() -> None:
    choice = ProtocolChoice("quic")
    reported = choice.after_failure(NETWORK, handshake_failed=True, index=1)
    assert choice.current == "quic"
    assert reported.kind is FailureKind.NETWORK
    assert reported.reason.startswith(NETWORK.reason) and UDP_BLOCKED_HINT in reported.reason
    assert "`protocol: http2`" in reported.reason
    # http2 only: nothing to say about UDP.
    assert ProtocolChoice("http2").after_failure(NETWORK, True, 0) is NETWORK


class _Link:
    """What ``classify`` reads of an HTTP/2 link that never finished its handshake."""

    closed = False
    handshake_done = False


def test_http2_handshake_failures_are_sorted_like_quics() -> None:
    kw = {"registered": False}
    refused = ssl.SSLError(1, "[SSL: POST_QUANTUM_REFUSED] post-quantum handshake refused")
    refused.reason = "POST_QUANTUM_REFUSED"
    assert classify(refused, _Link(), post_quantum=True, **kw).kind is FailureKind.POST_QUANTUM
    # Without --post-quantum the same alert is a TLS failure: no banner.
    assert classify(refused, _Link(), post_quantum=False, **kw).kind is FailureKind.TLS
    bad_cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert classify(bad_cert, _Link(), post_quantum=True, **kw).kind is FailureKind.TLS
    tcp = classify(ConnectionRefusedError(111, "refused"), None, post_quantum=True, **kw)
    assert (tcp.kind, tcp.reason) == (
        FailureKind.NETWORK,
        "TCP connection refused: nothing listens there",
    )
    silent = classify(asyncio.TimeoutError(), None, post_quantum=True, **kw)
    assert silent == NETWORK
    auth = classify(RegistrationError("authentication failed"), _Link(), post_quantum=True, **kw)
    assert auth.kind is FailureKind.AUTHENTICATION
