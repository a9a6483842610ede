"""The edge-connector protocol: sans-IO frames (:mod:`.frames`) and the asyncio channel that
carries them over a QUIC stream (:mod:`.channel`). See docs/protocol.md.
"""

from .channel import Channel, StreamHandler, TunnelConnection
from .frames import (
    ALPN,
    CONTROL_STREAM_ID,
    DATA_CHUNK,
    ERROR_AUTH,
    ERROR_CANCELLED,
    ERROR_SHUTDOWN,
    HOPS_HEADER,
    MAX_CONTROL,
    MAX_FRAME,
    PROTOCOL_VERSION,
    FrameParser,
    FrameType,
    ProtocolError,
    StreamReset,
    decode_control,
    encode_frame,
    encode_json,
)

__all__ = [
    "ALPN",
    "CONTROL_STREAM_ID",
    "DATA_CHUNK",
    "ERROR_AUTH",
    "ERROR_CANCELLED",
    "ERROR_SHUTDOWN",
    "HOPS_HEADER",
    "MAX_CONTROL",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "Channel",
    "FrameParser",
    "FrameType",
    "ProtocolError",
    "StreamHandler",
    "TunnelConnection",
    "StreamReset",
    "decode_control",
    "encode_frame",
    "encode_json",
]
