"""The one reading loop of the control stream after registration (``wire/control.py``), shared
by the connector's ``watch_control`` and the edges that listen on stream 0: other frame types
and undecodable messages are skipped (and reported), the loop ends with the stream, and a
reset reaches the caller."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from pq_quic_plugin.tunnel.wire import (
    FrameType,
    ProtocolError,
    StreamReset,
    TunnelStream,
    control_messages,
)


class _Frames:
    """Frames as a stream's ``read`` returns them, then the end (or a reset)."""

    def __init__(self, frames: list[tuple[FrameType, bytes]], reset: bool = False) -> None:
        self.frames = list(frames)
        self.reset = reset

    async def read(self) -> tuple[FrameType, bytes] | None:
        if self.frames:
            return self.frames.pop(0)
        if self.reset:
            raise StreamReset("stream reset by peer", 0x10)
        return None


async def _collect(stream: _Frames, skipped: list[ProtocolError]) -> list[dict[str, Any]]:
    return [m async for m in control_messages(cast(TunnelStream, stream), skipped.append)]


def test_skips_other_frames_and_bad_messages_and_ends_with_the_stream() -> None:
    stream = _Frames(
        [
            (FrameType.CONTROL, b'{"type":"drain"}'),
            (FrameType.DATA, b'{"type":"not-control"}'),
            (FrameType.CONTROL, b"[1, 2]"),
            (FrameType.CONTROL, b'{"a": 1, "a": 2}'),
            (FrameType.CONTROL, b'{"type":"hostnames","hostnames":["a.example"]}'),
        ]
    )
    skipped: list[ProtocolError] = []
    messages = asyncio.run(_collect(stream, skipped))
    assert messages == [{"type": "drain"}, {"type": "hostnames", "hostnames": ["a.example"]}]
    assert [str(e) for e in skipped][0] == "CONTROL payload is not a JSON object"
    assert len(skipped) == 2


def test_a_reset_reaches_the_caller() -> None:
    stream = _Frames([(FrameType.CONTROL, b'{"type":"drain"}')], reset=True)
    with pytest.raises(StreamReset):
        asyncio.run(_collect(stream, []))
