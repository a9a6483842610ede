"""HelloRetryRequest both ways, and the require policy against classical-only peers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from aioquic import tls
from quic_util import (
    HANDSHAKE_FAILURE,
    UNEXPECTED_MESSAGE,
    RecordingServerProtocol,
    client_configuration,
    echo_once,
    expect_handshake_failure,
    run,
    running_server,
    server_configuration,
)

from pq_quic_plugin import configure
from pq_quic_plugin.aioquic_binding import PostQuantumContext, settings_of
from pq_quic_plugin.aioquic_binding.hook import _SETTINGS_ATTR


def test_hrr_client_with_only_x25519_share_ends_on_x25519mlkem768(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "prefer")
        client = configure(
            client_configuration(pki),
            "prefer",
            groups=["X25519MLKEM768", "x25519"],
            key_shares=["x25519"],
        )
        async with running_server(server) as srv:
            return await echo_once(srv.port, client), srv.results

    result, server_results = run(scenario)
    assert result.group == "X25519MLKEM768" and result.retry is True
    assert server_results == [{"group": "X25519MLKEM768", "retry": True}]
    assert result.echo == b"ping over post-quantum QUIC"


def test_hrr_under_require_too(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "require", groups=["X25519MLKEM768"])
        client = configure(
            client_configuration(pki),
            "require",
            groups=["MLKEM768", "X25519MLKEM768"],
            key_shares=["MLKEM768"],
        )
        async with running_server(server) as srv:
            return await echo_once(srv.port, client)

    result = run(scenario)
    assert (result.group, result.retry) == ("X25519MLKEM768", True)


def test_no_hrr_when_a_post_quantum_share_is_already_there(pki) -> None:
    # The server prefers X25519MLKEM768 but the client only sent MLKEM768 (also post-quantum):
    # a retry would cost a round trip and buy nothing, so the server takes MLKEM768.
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "prefer")
        client = configure(
            client_configuration(pki),
            "prefer",
            groups=["X25519MLKEM768", "MLKEM768"],
            key_shares=["MLKEM768"],
        )
        async with running_server(server) as srv:
            return await echo_once(srv.port, client)

    result = run(scenario)
    assert (result.group, result.retry) == ("MLKEM768", False)


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


def test_second_hrr_in_one_handshake_is_an_error(pki, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "prefer")
        settings = settings_of(server)
        setattr(
            server, _SETTINGS_ATTR, dataclasses.replace(settings, context_class=RetryAgainContext)
        )
        client = configure(
            client_configuration(pki),
            "prefer",
            groups=["X25519MLKEM768", "x25519", "secp256r1"],
            key_shares=["x25519"],
        )
        async with running_server(server, RecordingServerProtocol) as srv:
            event = await expect_handshake_failure(srv.port, client)
            await asyncio.sleep(0.2)
            return event

    RecordingServerProtocol.terminations = []
    event = run(scenario)
    # Our client sent the alert itself, so its own close carries unexpected_message.
    assert event.error_code == UNEXPECTED_MESSAGE, event
    assert "second HelloRetryRequest" in event.reason_phrase
    assert [t.error_code for t in RecordingServerProtocol.terminations] == [UNEXPECTED_MESSAGE]


def test_require_client_against_classical_only_server_fails_clearly(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        stock_server = server_configuration(pki)  # stock aioquic: P-256, P-384, X25519 only
        client = configure(client_configuration(pki), "require")
        async with running_server(stock_server) as srv:
            event = await expect_handshake_failure(srv.port, client)
            return event, srv.results

    with caplog.at_level(logging.ERROR, logger="pq_quic_plugin"):
        event, server_results = run(scenario)
    assert event.error_code == HANDSHAKE_FAILURE
    assert "X25519MLKEM768" in event.reason_phrase  # names the groups offered
    assert "no post-quantum group" in event.reason_phrase
    assert "No classical connection was made" in event.reason_phrase
    assert server_results == []  # the server never completed a handshake
    assert "no post-quantum group in common" in caplog.text


def test_require_server_refuses_classical_only_client_with_alert_and_log(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "require")
        stock_client = client_configuration(pki)
        async with running_server(server) as srv:
            event = await expect_handshake_failure(srv.port, stock_client)
            return event, srv.results

    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        event, server_results = run(scenario)
    assert event.error_code == HANDSHAKE_FAILURE
    assert "client offered no post-quantum key-exchange group" in event.reason_phrase
    assert server_results == []
    assert "refusing handshake: client offered no post-quantum key-exchange group" in caplog.text
    assert "secp256r1" in caplog.text  # the log names what the client offered


def test_prefer_server_gives_stock_client_a_classical_group(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "prefer")
        async with running_server(server) as srv:
            return await echo_once(srv.port, client_configuration(pki)), srv.results

    result, server_results = run(scenario)
    assert result.group is None  # stock aioquic records nothing
    assert server_results[0]["group"] == "x25519"


def test_prefer_client_against_stock_server_falls_back_and_says_so(
    pki, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        client = configure(client_configuration(pki), "prefer")
        async with running_server(server_configuration(pki)) as srv:
            return await echo_once(srv.port, client)

    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin"):
        result = run(scenario)
    assert (result.group, result.post_quantum) == ("x25519", False)
    assert "NOT post-quantum" in caplog.text and "policy 'prefer'" in caplog.text
