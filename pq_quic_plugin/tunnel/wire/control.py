"""The control stream after registration: one reading loop for every side that listens on it.

Once registered, the edge, the connector and a peer edge keep stream 0 open for short CONTROL
messages (``drain``, ``hostnames``, ``ping``). The rule for what each side may skip lives here:
a frame of another type, and a message that does not decode, are passed over and the stream
stays up (docs/protocol.md: "a CONTROL message the edge cannot read is ignored"), so a bad
message costs the peer nothing and a newer peer can add messages an older one skips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from .frames import FrameType, ProtocolError, decode_control
from .transport import TunnelStream

__all__ = ["control_messages"]


async def control_messages(
    stream: TunnelStream, ignored: Callable[[ProtocolError], None] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Each CONTROL message on ``stream`` until it ends; ``ignored`` hears of each one that was
    skipped because it did not decode. Raises :class:`~.frames.StreamReset` as ``read`` does."""
    while (frame := await stream.read()) is not None:
        kind, payload = frame
        if kind != FrameType.CONTROL:
            continue
        try:
            message = decode_control(payload)
        except ProtocolError as exc:
            if ignored is not None:
                ignored(exc)
            continue
        yield message
