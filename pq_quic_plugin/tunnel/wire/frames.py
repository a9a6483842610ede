"""The edge-connector wire format, sans-IO: frame types, error codes, encoding and parsing.

Every stream carries frames ``type (1 byte) | length (QUIC varint) | payload`` (docs/protocol.md).
The stream's FIN ends the body; a RESET_STREAM / STOP_SENDING cancels the request in either
direction. Nothing here does I/O, so every transport (and a test) can use the same framing and
the edge and the connector cannot disagree about the format.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from aioquic.buffer import Buffer, BufferReadError, encode_uint_var

from ...asgi.types import HOPS_HEADER  # noqa: F401 - part of the wire format
from .. import strict_json

ALPN = "pq-tunnel/1"
PROTOCOL_VERSION = 1
CONTROL_STREAM_ID = 0  # the connector's first bidirectional stream
MAX_FRAME = 1 << 20
#: A CONTROL message is a few hundred bytes (a hello with many hostnames a few KiB); a bigger
#: one is refused as soon as its length is read, before any of it is buffered.
MAX_CONTROL = 64 * 1024
DATA_CHUNK = 64 * 1024

#: Application error codes for RESET_STREAM / STOP_SENDING and CONNECTION_CLOSE.
ERROR_CANCELLED = 0x10
ERROR_SHUTDOWN = 0x11
ERROR_AUTH = 0x12


class FrameType(enum.IntEnum):
    DATA = 0x00
    HEADERS = 0x01
    WS_TEXT = 0x02
    WS_BINARY = 0x03
    WS_CLOSE = 0x04
    CONTROL = 0x05
    ERROR = 0x06


class ProtocolError(Exception):
    """The peer broke the framing; the stream (or connection) is closed."""


class StreamReset(ConnectionError):
    """The peer reset or stopped the stream, or the connection went away."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


def encode_frame(frame_type: FrameType, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return bytes([frame_type]) + encode_uint_var(len(payload)) + payload


def encode_json(frame_type: FrameType, message: dict[str, Any]) -> bytes:
    return encode_frame(frame_type, json.dumps(message, separators=(",", ":")).encode())


def decode_control(payload: bytes) -> dict[str, Any]:
    """A CONTROL payload as a JSON object, decoded strictly (:mod:`..strict_json`: bounded
    size and nesting, finite numbers, no repeated keys); raises :class:`ProtocolError`."""
    try:
        value = strict_json.loads(payload, max_bytes=MAX_CONTROL)
    except strict_json.StrictJSONError as exc:
        raise ProtocolError(f"CONTROL payload: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("CONTROL payload is not a JSON object")
    return value


class FrameParser:
    """Incremental parser: feed bytes, get complete frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[FrameType, bytes]]:
        self._buf += data
        frames: list[tuple[FrameType, bytes]] = []
        while self._buf:
            buf = Buffer(data=bytes(self._buf[:9]))
            try:
                kind = buf.pull_uint8()
                length = buf.pull_uint_var()
            except BufferReadError:
                break
            if length > MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
            if kind == FrameType.CONTROL and length > MAX_CONTROL:
                raise ProtocolError(f"CONTROL frame of {length} bytes exceeds {MAX_CONTROL}")
            start = buf.tell()
            if len(self._buf) < start + length:
                break
            try:
                frame_type = FrameType(kind)
            except ValueError:
                raise ProtocolError(f"unknown frame type 0x{kind:02X}") from None
            frames.append((frame_type, bytes(self._buf[start : start + length])))
            del self._buf[: start + length]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)
