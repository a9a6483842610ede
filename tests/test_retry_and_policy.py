"""HelloRetryRequest both ways, and the require policy against classical-only peers."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from aioquic import tls
from aioquic.quic.configuration import QuicConfiguration
from quic_util import (
    HANDSHAKE_FAILURE,
    PING,
    STOCK,
    UNEXPECTED_MESSAGE,
    Peer,
    handshake,
)

from pq_quic_plugin.aioquic_binding import PostQuantumContext, settings_of
from pq_quic_plugin.aioquic_binding.hook import _SETTINGS_ATTR


@pytest.mark.parametrize(
    "server,client,group,retry",
    [
        pytest.param(
            Peer("prefer"),
            Peer("prefer", groups=["X25519MLKEM768", "x25519"], key_shares=["x25519"]),
            "X25519MLKEM768",
            True,
            id="hrr-client-with-only-x25519-share-ends-on-x25519mlkem768",
        ),
        pytest.param(
            Peer("require", groups=["X25519MLKEM768"]),
            Peer("require", groups=["MLKEM768", "X25519MLKEM768"], key_shares=["MLKEM768"]),
            "X25519MLKEM768",
            True,
            id="hrr-under-require-too",
        ),
        pytest.param(
            # The server prefers X25519MLKEM768 but the client only sent MLKEM768 (also
            # post-quantum): a retry would cost a round trip and buy nothing.
            Peer("prefer"),
            Peer("prefer", groups=["X25519MLKEM768", "MLKEM768"], key_shares=["MLKEM768"]),
            "MLKEM768",
            False,
            id="no-hrr-when-a-post-quantum-share-is-already-there",
        ),
    ],
)
def test_hello_retry_request(pki, server: Peer, client: Peer, group: str, retry: bool) -> None:
    out = handshake(pki, server=server, client=client)
    assert (out.group, out.retry) == (group, retry)
    assert out.server == [{"group": group, "retry": retry}]
    assert out.echo == PING


class RetryAgainContext(PostQuantumContext):
    """A misbehaving server: answers the second ClientHello with another HelloRetryRequest."""

    def _server_handle_hello(self, input_buf, initial_buf, handshake_buf):  # type: ignore[no-untyped-def]
        if self._pq_retry_sent is not None:
            peer = tls.pull_client_hello(input_buf)
            sent = {cp for cp, _ in peer.key_share or []}
            other = next(
                g
                for g in self.pq_policy.groups
                if g.codepoint in (peer.supported_groups or []) and g.codepoint not in sent
            )
            self._pq_send_retry(
                input_buf, initial_buf, peer, other, self._pq_retry_sent[1], tls.TLS_VERSION_1_3
            )
            return
        super()._server_handle_hello(input_buf, initial_buf, handshake_buf)


def _retry_again(config: QuicConfiguration) -> None:
    """Swap the server's TLS context for :class:`RetryAgainContext`."""
    replaced = dataclasses.replace(settings_of(config), context_class=RetryAgainContext)
    setattr(config, _SETTINGS_ATTR, replaced)


def test_second_hrr_in_one_handshake_is_an_error(pki) -> None:
    out = handshake(
        pki,
        server=Peer("prefer", tweak=_retry_again),
        client=Peer(
            "prefer", groups=["X25519MLKEM768", "x25519", "secp256r1"], key_shares=["x25519"]
        ),
        fails=True,
    )
    # Our client sent the alert itself, so its own close carries unexpected_message.
    assert out.error is not None
    assert out.error.error_code == UNEXPECTED_MESSAGE, out.error
    assert "second HelloRetryRequest" in out.error.reason_phrase
    assert [t.error_code for t in out.server_closes] == [UNEXPECTED_MESSAGE]


def test_require_client_against_classical_only_server_fails_clearly(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    # A stock aioquic server offers P-256, P-384 and X25519 only.
    with caplog.at_level(logging.ERROR, logger="pq_quic_plugin"):
        out = handshake(pki, server=STOCK, client=Peer("require"), fails=True)
    assert out.error is not None and out.error.error_code == HANDSHAKE_FAILURE
    assert "X25519MLKEM768" in out.error.reason_phrase  # names the groups offered
    assert "no post-quantum group" in out.error.reason_phrase
    assert "No classical connection was made" in out.error.reason_phrase
    assert out.server == []  # the server never completed a handshake
    assert "no post-quantum group in common" in caplog.text


def test_require_server_refuses_classical_only_client_with_alert_and_log(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        out = handshake(pki, server=Peer("require"), client=STOCK, fails=True)
    assert out.error is not None and out.error.error_code == HANDSHAKE_FAILURE
    assert "client offered no post-quantum key-exchange group" in out.error.reason_phrase
    assert out.server == []
    assert "refusing handshake: client offered no post-quantum key-exchange group" in caplog.text
    assert "secp256r1" in caplog.text  # the log names what the client offered


def test_prefer_server_gives_stock_client_a_classical_group(pki) -> None:
    out = handshake(pki, server=Peer("prefer"), client=STOCK)
    assert out.group is None  # stock aioquic records nothing
    assert out.server[0]["group"] == "x25519"


def test_prefer_client_against_stock_server_falls_back_and_says_so(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        out = handshake(pki, server=STOCK, client=Peer("prefer"))
    assert (out.group, out.post_quantum) == ("x25519", False)
    assert "NOT post-quantum" in caplog.text and "policy 'prefer'" in caplog.text
