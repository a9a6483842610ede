"""Issue 14: a stranger on the connector port learns nothing and cannot hold or hurt the edge.

In-process: the real connector listener and store, and a raw QUIC client (``tunnel_rogue``) that
sends what a prober or a broken connector would. Each test names the finding it covers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from pathlib import Path

import pytest
from tunnel_rogue import (
    EdgeSide,
    answer,
    clean_registration,
    closed,
    connector_listener,
    control,
    control_raw,
    hello,
    rogue,
    send_raw,
)

from pq_quic_plugin.aioquic_binding.facade import quic_of
from pq_quic_plugin.tunnel.edge.connectors import AUTH_FAILED, MALFORMED
from pq_quic_plugin.tunnel.wire import (
    ERROR_AUTH,
    MAX_CONTROL,
    FrameParser,
    FrameType,
    ProtocolError,
    decode_control,
    encode_frame,
)

# ---------------------------------------------------------------------- helpers


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _refusal(edge: EdgeSide, sent: dict, auth: dict | None = None) -> tuple[dict, tuple]:
    """hello, challenge, auth (a random proof unless given), then the edge's answer and how it
    closed the connection."""
    async with rogue(edge) as (conn, channel):
        await channel.send_json(FrameType.CONTROL, sent)
        challenge = await asyncio.wait_for(channel.read_json(FrameType.CONTROL), 5)
        assert challenge["type"] == "challenge"  # every tunnel ID is challenged
        if auth is None:
            auth = {"type": "auth", "proof": base64.b64encode(secrets.token_bytes(32)).decode()}
        await channel.send_json(FrameType.CONTROL, auth)
        reply = await asyncio.wait_for(channel.read_json(FrameType.CONTROL), 5)
        how = await closed(conn, 5)
    assert how is not None, "the edge left a refused connection open"
    return reply, how


# ---------------------------------------------------------------------- finding 3


def test_refusals_say_the_same_to_a_stranger_whatever_the_reason(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    """Unknown tunnel, wrong secret, a tunnel's name: one answer; the detail is in the log."""

    async def main() -> None:
        async with connector_listener(tmp_path, pki) as edge:
            unknown = await _refusal(edge, hello(edge, tunnel_id=str(__import__("uuid").uuid4())))
            wrong = await _refusal(edge, hello(edge))
            named = await _refusal(edge, hello(edge, tunnel_id="demo"))
            assert unknown == wrong == named, (unknown, wrong, named)
            reply, (code, reason) = wrong
            assert reply == {"type": "error", "reason": AUTH_FAILED}
            assert code == ERROR_AUTH and reason == AUTH_FAILED
            assert "demo" not in AUTH_FAILED and edge.record.id not in json.dumps(reply)
            log = "\n".join(edge.log.messages())
            assert "unknown tunnel" in log
            assert f"wrong secret for tunnel demo ({edge.record.id})" in log
            assert "'demo' is not a UUID" in log
            assert not edge.log.tracebacks()
            assert edge.registry.count() == 0

    _run(main())


def test_a_tunnel_name_is_not_a_tunnel_id(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    """Even with the right key: only the UUID names a tunnel on the connector port."""

    async def main() -> None:
        async with connector_listener(tmp_path, pki) as edge:
            sent = hello(edge, tunnel_id="demo")
            async with rogue(edge) as (conn, channel):
                await channel.send_json(FrameType.CONTROL, sent)
                challenge = await channel.read_json(FrameType.CONTROL)
                await channel.send_json(FrameType.CONTROL, answer(edge, challenge, sent))
                reply = await asyncio.wait_for(channel.read_json(FrameType.CONTROL), 5)
            assert reply["type"] == "error" and reply["reason"] == AUTH_FAILED
            assert edge.registry.count() == 0
            # The same key with the UUID registers.
            assert (await clean_registration(edge))["type"] == "registered"

    _run(main())


# ---------------------------------------------------------------------- finding 4


def test_peer_strings_are_escaped_and_bounded_in_the_log(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    forged = "x\n2024-01-01 INF Connection registered tunnel=demo"

    async def main() -> None:
        async with connector_listener(tmp_path, pki) as edge:
            await _refusal(edge, hello(edge, tunnel_id=forged))
            for size in (60_000, 900_000):  # within and far beyond the control-frame limit
                async with rogue(edge) as (conn, channel):
                    send_raw(conn, channel, control(hello(edge, tunnel_id="y" * size)))
                    assert (await closed(conn, 5) or (0,))[0] == ERROR_AUTH
            log = edge.log.messages()
            assert not [m for m in log if "\n" in m], "a peer's newline reached the log"
            assert any("'x\\n2024-01-01 INF" in m for m in log)  # escaped, still readable
            assert sum(len(m) for m in log) < 8000, sum(len(m) for m in log)
            assert not edge.log.tracebacks()

    _run(main())


def test_a_connection_that_never_registers_is_closed(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    """Keepalives do not keep an unauthenticated connection open past the deadline."""

    async def main() -> None:
        async with connector_listener(tmp_path, pki, deadline=1.0) as edge:
            async with rogue(edge) as (silent, _), rogue(edge) as (stalled, channel):
                await channel.send_json(FrameType.CONTROL, hello(edge))  # then no auth
                for _ in range(10):
                    for conn in (silent, stalled):
                        if not conn.closed:
                            quic_of(conn).send_ping(0)
                            conn.transmit()
                    await asyncio.sleep(0.3)
                assert silent.terminated and silent.terminated[0] == ERROR_AUTH
                assert stalled.terminated and stalled.terminated[0] == ERROR_AUTH
            assert any("no registration within 1s" in m for m in edge.log.messages())

    _run(main())


def _deep(n: int) -> bytes:
    return b'{"type":"hello","x":' + b"[" * n + b"]" * n + b"}"


HELLO_FIELDS = {
    "conn_index-null": {"conn_index": None},
    "conn_index-list": {"conn_index": [1]},
    "conn_index-bool": {"conn_index": True},
    "conn_index-float": {"conn_index": 1.5},
    "conn_index-negative": {"conn_index": -1},
    "conn_index-huge": {"conn_index": 10**40},
    "version-list": {"version": [1]},
    "version-string": {"version": "1"},
    "version-bool": {"version": True},
    "tunnel_id-list": {"tunnel_id": ["a"]},
    "connector_id-int": {"connector_id": 7},
    "hostnames-dict": {"hostnames": {"a": 1}},
    "hostnames-of-ints": {"hostnames": [1, 2]},
    "software-list": {"software": ["x"]},
}


@pytest.mark.parametrize("fields", HELLO_FIELDS.values(), ids=list(HELLO_FIELDS))
def test_a_hello_with_a_wrong_type_closes_the_connection(tmp_path: Path, pki, fields) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with connector_listener(tmp_path, pki) as edge:
            async with rogue(edge) as (conn, channel):
                send_raw(conn, channel, control(hello(edge, **fields)))
                assert await closed(conn, 5) == (ERROR_AUTH, MALFORMED)
            assert not edge.log.tracebacks()
            assert (await clean_registration(edge))["type"] == "registered"

    _run(main())


RAW_FIRST_FRAMES = {
    "data-frame-first": encode_frame(FrameType.DATA, b"hello"),
    "headers-frame-first": encode_frame(FrameType.HEADERS, b"{}"),
    "not-json": control_raw(b"{not json"),
    "not-an-object": control_raw(b"[1,2]"),
    "nan": control_raw(b'{"type":"hello","version":NaN}'),
    "infinity": control_raw(b'{"type":"hello","version":1,"conn_index":Infinity}'),
    "float-overflow": control_raw(b'{"type":"hello","version":1e999}'),
    "nested-1000-deep": control_raw(_deep(1000)),
    "duplicate-keys": control_raw(b'{"type":"hello","type":"hello"}'),
    "not-utf8": control_raw(b'{"type":"\xff"}'),
    "unknown-frame-type": b"\x7f\x01x",
    "oversize-control-frame": b"\x05" + b"\x80\x10\x00\x00",  # declares 1 MiB, sends nothing
    "type-is-auth": control_raw(b'{"type":"auth","proof":"AAAA"}'),
    "empty-stream": b"",
}


@pytest.mark.parametrize("data", RAW_FIRST_FRAMES.values(), ids=list(RAW_FIRST_FRAMES))
def test_a_protocol_error_closes_the_whole_connection(tmp_path: Path, pki, data: bytes) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with connector_listener(tmp_path, pki) as edge:
            async with rogue(edge) as (conn, channel):
                send_raw(conn, channel, data, end=True)
                assert (await closed(conn, 5) or (None,))[0] == ERROR_AUTH
            assert not edge.log.tracebacks(), edge.log.tracebacks()

    _run(main())


AUTH_MESSAGES = {
    "proof-int": {"type": "auth", "proof": 5},
    "proof-list": {"type": "auth", "proof": ["AAAA"]},
    "proof-null": {"type": "auth", "proof": None},
    "proof-not-base64": {"type": "auth", "proof": "!!!!"},
    "proof-short": {"type": "auth", "proof": "AAAA"},
    "wrong-type": {"type": "registered", "proof": base64.b64encode(b"x" * 32).decode()},
    "no-type": {"proof": base64.b64encode(b"x" * 32).decode()},
}


@pytest.mark.parametrize("message", AUTH_MESSAGES.values(), ids=list(AUTH_MESSAGES))
def test_a_bad_auth_message_closes_the_connection(tmp_path: Path, pki, message: dict) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with connector_listener(tmp_path, pki) as edge:
            async with rogue(edge) as (conn, channel):
                await channel.send_json(FrameType.CONTROL, hello(edge))
                await channel.read_json(FrameType.CONTROL)
                send_raw(conn, channel, control(message))
                assert await closed(conn, 5) == (ERROR_AUTH, MALFORMED)
            assert not edge.log.tracebacks()
            assert edge.registry.count() == 0

    _run(main())


def test_a_second_stream_before_registering_closes_the_connection(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with connector_listener(tmp_path, pki) as edge:
            async with rogue(edge) as (conn, channel):
                send_raw(conn, channel, b"\x05")  # the control stream, its first byte only
                other = conn.open_channel()
                assert other.stream_id != channel.stream_id
                send_raw(conn, other, control(hello(edge)))
                assert (await closed(conn, 5) or (None,))[0] == ERROR_AUTH

    _run(main())


def test_control_frames_are_bounded_and_decoded_strictly() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameParser().feed(b"\x05" + b"\x80\x01\x00\x01")  # MAX_CONTROL + 1, header only
    assert MAX_CONTROL < 1 << 20
    for payload in (b"[1]", b'{"a":NaN}', b'{"a":-Infinity}', b'{"a":1e400}', _deep(50)):
        with pytest.raises(ProtocolError):
            decode_control(payload)
    assert decode_control(b'{"type":"drain","n":1.5}') == {"type": "drain", "n": 1.5}


# ---------------------------------------------------------------------- finding 5: fuzz

FUZZ_CASES = int(os.environ.get("PQ_FUZZ_CASES", "1500"))


@pytest.mark.slow
def test_fuzzed_registrations_get_refusals_never_tracebacks(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    """``PQ_FUZZ_CASES`` mutated registrations from a stranger, in batches; after each batch a
    clean registration still works; nothing the edge logs carries a traceback."""
    from tunnel_fuzz import fuzz_registrations

    _run_long(fuzz_registrations(tmp_path, pki, FUZZ_CASES))


@pytest.mark.slow
def test_fuzzed_frames_from_an_authenticated_connector(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    """A registered connector sending mutated control frames and opening junk streams: each
    is a stream error at most; the connection stays registered and no traceback is logged."""
    from tunnel_fuzz import fuzz_authenticated

    _run_long(fuzz_authenticated(tmp_path, pki, max(300, FUZZ_CASES // 10)))


def _run_long(coro) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(asyncio.wait_for(coro, 60 + FUZZ_CASES / 10))
