"""The h2 binding (``pq_quic_plugin/h2_binding``): a frame's ``repr`` without hex-encoding its
whole payload, the same text as hyperframe's, and the import-time checks every binding has.

h2 4.4 formats ``repr(frame)`` of every received frame for a trace log that is off; hyperframe
hex-encodes a DATA frame's whole payload for it and keeps 20 characters. The binding's version
hex-encodes at most 11 bytes (what 20 characters show, plus one to know whether "..." follows).
"""

from __future__ import annotations

import ast
import binascii
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hyperframe.frame as frames
import pytest
from internals_util import checks_enabled, is_private  # noqa: F401 (autouse fixture)

from pq_quic_plugin import h2_binding
from pq_quic_plugin.h2_binding import facade, version
from pq_quic_plugin.host_internals import evidence

PACKAGE = Path(version.__file__).resolve().parent


@pytest.fixture
def restored() -> Iterator[None]:
    """Whatever a test does, hyperframe's own function is back afterwards."""
    yield
    facade.restore()


def _payloads() -> Iterator[Any]:
    for size in [*range(0, 24), 31, 32, 100, 16384, 1 << 20]:
        data = bytes(range(256)) * (size // 256 + 1)
        data = data[:size]
        yield data
        yield bytearray(data)
        yield memoryview(data)
    yield None


def test_the_text_is_hyperframes_for_every_size_and_buffer_type() -> None:
    for data in _payloads():
        assert facade.raw_data_repr(data) == facade.original_raw_data_repr(data), data


def test_a_large_payload_is_not_hex_encoded_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regression: hyperframe's hexlify saw the whole megabyte; the binding's sees 11."""
    seen: list[int] = []
    real = binascii.hexlify

    def counting(data: Any) -> bytes:
        seen.append(len(data))
        return real(data)

    monkeypatch.setattr(facade.binascii, "hexlify", counting)
    facade.raw_data_repr(b"\x01" * (1 << 20))
    assert seen == [11]


def _frames() -> Iterator[frames.Frame]:
    """One of every frame class that shows a payload, with a long and a short one."""
    for data in (b"", b"abc", b"x" * 5000):
        yield frames.DataFrame(1, data=data, flags=["END_STREAM"])
        yield frames.HeadersFrame(3, data=data)
        yield frames.ContinuationFrame(3, data=data)
        yield frames.PushPromiseFrame(1, promised_stream_id=2, data=data)
        yield frames.GoAwayFrame(0, last_stream_id=7, error_code=2, additional_data=data)
        yield frames.PingFrame(0, opaque_data=data[:8].ljust(8, b"\0"))
        yield frames.ExtensionFrame(0xA0, 5, flag_byte=0, body=data)
        yield frames.AltSvcFrame(0, origin=b"o", field=data)
    yield frames.WindowUpdateFrame(0, window_increment=100)
    yield frames.SettingsFrame(0, settings={1: 4096})


def test_every_frame_repr_is_unchanged_when_applied(restored: None) -> None:
    before = [repr(f) for f in _frames()]
    h2_binding.apply()
    assert h2_binding.applied()
    assert [repr(f) for f in _frames()] == before
    h2_binding.restore()
    assert not h2_binding.applied()
    assert frames._raw_data_repr is facade.original_raw_data_repr


def test_h2_receives_data_with_the_binding_applied(restored: None) -> None:
    """A real h2 client and server: a large DATA frame arrives whole and intact."""
    h2_binding.apply()
    h2_binding.apply()  # idempotent
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":scheme", "https"),
                            (":authority", "a"), (":path", "/")])  # fmt: skip
    body = bytes(range(256)) * 60
    client.send_data(1, body, end_stream=True)
    events = server.receive_data(client.data_to_send())
    got = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert got == body
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


# ------------------------------------------------------------------ the import-time checks


def test_the_installed_releases_pass() -> None:
    version.check_h2_binding()


def test_every_private_name_the_binding_touches_is_listed() -> None:
    listed = {item.name for item in version.REQUIRED_INTERNALS}
    used: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and is_private(node.attr):
                used.add(node.attr)
    assert used, "the facade reaches hyperframe's private function"
    assert used <= listed, used - listed
    for item in version.REQUIRED_INTERNALS:
        assert evidence(item), item.label


@pytest.mark.parametrize("found", ["4.0.0", "5.0.0"])
def test_an_h2_outside_the_range_is_refused(found: str) -> None:
    with pytest.raises(version.UnsupportedH2Version, match=f"found h2 {found}.*pip install"):
        version.check_h2_binding(h2_version=found)


def test_a_hyperframe_outside_the_range_is_refused() -> None:
    with pytest.raises(version.UnsupportedH2Version, match="found hyperframe 7.0.0"):
        version.check_h2_binding(hyperframe_version="7.0.0")


def test_a_missing_name_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for item in version.REQUIRED_INTERNALS:
        with monkeypatch.context() as patch:
            for holder, attr in evidence(item):
                patch.delattr(holder, attr)
            with pytest.raises(version.UnsupportedH2Version, match=item.name):
                version.check_h2_binding()


def test_hypercorn_pq_workers_apply_it(restored: None) -> None:
    """``hypercorn-pq`` marks its config; each worker applies the binding when it builds its
    TLS context (the one call every worker makes for itself)."""
    from pq_quic_plugin.hypercorn_binding import PostQuantumConfig

    config = PostQuantumConfig()
    config.create_ssl_context()
    assert not h2_binding.applied()
    config.pq_h2_binding = True
    config.create_ssl_context()
    assert h2_binding.applied()


@pytest.mark.parametrize("command", ["edge", "run"])
def test_the_tunnel_programs_apply_it(
    command: str, restored: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``pq-tunnel edge`` and ``pq-tunnel run`` apply it first thing (here they then stop at
    a config file that does not exist)."""
    from pq_quic_plugin.tunnel.cli import main

    assert not h2_binding.applied()
    assert main([command, "--config", str(tmp_path / "missing.yml")]) != 0
    assert h2_binding.applied()


def test_hpack_makes_no_logging_call_per_header_when_applied(restored: None) -> None:
    """hpack's module logger is replaced by one that drops debug lines: encoding and decoding a
    request head make no call into ``logging`` (before: about 50 per request on a tunnel link),
    and the headers still round-trip."""
    import logging

    import hpack

    headers = [(b":method", b"GET"), (b":path", b"/"), (b"x-a", b"1"), (b"x-b", b"2")]
    calls = 0
    stock_debug = logging.Logger.debug

    def counting(self: logging.Logger, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        stock_debug(self, *args, **kwargs)  # type: ignore[arg-type]

    logging.Logger.debug = counting  # type: ignore[method-assign]
    try:
        assert hpack.Decoder().decode(hpack.Encoder().encode(headers), raw=True) == headers
        before = calls
        facade.apply()
        assert hpack.Decoder().decode(hpack.Encoder().encode(headers), raw=True) == headers
        after = calls - before
    finally:
        logging.Logger.debug = stock_debug  # type: ignore[method-assign]
    assert before > 0 and after == 0, (before, after)


# ------------------------------------------------------------------ stream_length.py

_REQUEST = [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/")]


def _answered(lengths: list[bytes], body: bytes | None, make: Any = None) -> tuple[Any, list[Any]]:
    """A client connection (the binding's unless ``make`` says otherwise) asks; a real h2
    server answers with these ``content-length`` fields and ``body``. The client and its
    events."""
    client = (make or h2_binding.client_connection)(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, validate_outbound_headers=False)
    )
    client.initiate_connection()
    server.initiate_connection()
    client.send_headers(1, _REQUEST, end_stream=True)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    head = [(b":status", b"200")] + [(b"content-length", v) for v in lengths]
    server.send_headers(1, head)
    if body is not None:
        server.send_data(1, body, end_stream=True)
    return client, client.receive_data(server.data_to_send())


@pytest.mark.parametrize("lengths", [[b"abc"], [b"-1"], [b"2, 2"], [b"2", b"3"]])
def test_a_content_length_h2_cannot_read_is_left_to_the_client(lengths: list[bytes]) -> None:
    """Plain h2 ends the connection (ProtocolError while reading the head); the binding's
    client connection hands the head over, for the caller to refuse and reset one stream."""
    with pytest.raises(h2.exceptions.ProtocolError, match="content-length"):
        _answered(lengths, None, make=h2.connection.H2Connection)
    client, events = _answered(lengths, None)
    heads = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert heads and [v for k, v in heads[0].headers if k == b"content-length"] == lengths
    client.reset_stream(1)  # what the connector does; the connection is still usable
    client.send_headers(3, _REQUEST, end_stream=True)
    assert client.data_to_send()


def test_a_readable_content_length_is_still_checked_by_h2() -> None:
    """A valid length that the body contradicts is still h2's error, exactly as before (the
    connector's framing judges DATA frames first; h2's check stays as a second line)."""
    with pytest.raises(h2.exceptions.InvalidBodyLengthError):
        _answered([b"5"], b"ok")
    _, events = _answered([b"2"], b"ok")
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"ok"
