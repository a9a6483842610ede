"""Real aioquic handshakes over UDP on 127.0.0.1: every group, both sides ours."""

from __future__ import annotations

import logging

import pytest
from quic_util import client_configuration, echo_once, run, running_server, server_configuration

import pq_quic_plugin
from pq_quic_plugin import available_groups, configure

GROUP_NAMES = [g.name for g in available_groups()]


@pytest.mark.parametrize("name", GROUP_NAMES)
def test_every_group_completes_a_handshake(pki, name: str) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "prefer")
        client = configure(client_configuration(pki), "prefer", groups=[name])
        async with running_server(server) as srv:
            result = await echo_once(srv.port, client)
            return result, srv.results

    result, server_results = run(scenario)
    assert result.echo == b"ping over post-quantum QUIC"
    assert result.group == name
    assert server_results == [{"group": name, "retry": False}]
    assert result.post_quantum == pq_quic_plugin.group_by_name(name).post_quantum


def test_default_prefer_negotiates_x25519mlkem768_in_one_round_trip(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki))
        client = configure(client_configuration(pki))
        async with running_server(server) as srv:
            return await echo_once(srv.port, client), srv.results

    result, server_results = run(scenario)
    assert (result.group, result.retry) == ("X25519MLKEM768", False)
    assert server_results[0]["group"] == "X25519MLKEM768"


def test_server_follows_its_own_preference_not_the_clients_share_order(pki) -> None:
    # The client lists x25519 first and sends both shares; aioquic would take x25519.
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "prefer")
        client = configure(
            client_configuration(pki),
            "prefer",
            groups=["x25519", "X25519MLKEM768"],
            key_shares=["x25519", "X25519MLKEM768"],
        )
        async with running_server(server) as srv:
            return await echo_once(srv.port, client)

    assert run(scenario).group == "X25519MLKEM768"


def test_server_group_list_orders_the_choice(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(
            server_configuration(pki), "prefer", groups=["SecP256r1MLKEM768", "X25519MLKEM768"]
        )
        client = configure(
            client_configuration(pki),
            "prefer",
            groups=["X25519MLKEM768", "SecP256r1MLKEM768"],
            key_shares=["X25519MLKEM768", "SecP256r1MLKEM768"],
        )
        async with running_server(server) as srv:
            return await echo_once(srv.port, client)

    assert run(scenario).group == "SecP256r1MLKEM768"


def test_group_names_are_case_insensitive(pki) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        server = configure(server_configuration(pki), "PREFER", groups=["x25519mlkem768"])
        client = configure(client_configuration(pki), "Require", groups=["X25519MLKEM768"])
        async with running_server(server) as srv:
            return await echo_once(srv.port, client)

    assert run(scenario).group == "X25519MLKEM768"


def test_unknown_group_name_lists_valid_names() -> None:
    from aioquic.quic.configuration import QuicConfiguration

    with pytest.raises(pq_quic_plugin.UnknownGroupError) as info:
        configure(QuicConfiguration(is_client=True), "prefer", groups=["X25519Kyber9000"])
    assert "X25519Kyber9000" in str(info.value)
    assert "X25519MLKEM768" in str(info.value) and "secp384r1" in str(info.value)


def test_require_with_only_classical_groups_is_a_configuration_error() -> None:
    from aioquic.quic.configuration import QuicConfiguration

    with pytest.raises(ValueError, match="at least one post-quantum group"):
        configure(QuicConfiguration(is_client=True), "require", groups=["x25519"])


def test_policy_is_logged_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    from aioquic.quic.configuration import QuicConfiguration

    with caplog.at_level(logging.INFO, logger="pq_quic_plugin"):
        configure(QuicConfiguration(is_client=True), "require")
    assert "policy=require groups=[X25519MLKEM768]" in caplog.text
