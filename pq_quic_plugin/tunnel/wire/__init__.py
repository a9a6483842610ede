"""The edge-connector protocol: sans-IO frames (:mod:`.frames`), carried over QUIC streams
(:mod:`.channel`) or HTTP/2 streams on TLS over TCP (:mod:`.h2_transport`), both behind the
:class:`TunnelLink` / :class:`TunnelStream` protocols (:mod:`.transport`) and built on one
transport-neutral stream and connection (:mod:`.channel_base`, :mod:`.link_base`). See
docs/protocol.md.
"""

from .channel import Channel, StreamHandler, TunnelConnection
from .control import control_messages
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
from .transport import TunnelLink, TunnelStream

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
    "TunnelLink",
    "TunnelStream",
    "StreamReset",
    "control_messages",
    "decode_control",
    "encode_frame",
    "encode_json",
]
