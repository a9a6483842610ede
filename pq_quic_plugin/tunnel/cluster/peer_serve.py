"""The serving edge's half of a relayed request: a peer edge's stream, piped to one of this
edge's own connector connections and the response piped back (hop 2, docs/cluster.md).

The relaying edge sends exactly what it would send a connector (docs/protocol.md, "Requests"):
a HEADERS frame, then the body or WebSocket frames, with one more field in the head,
``tunnel_id``, which this edge routes on. The hop list arrives with the visitor-edge and
edge-edge hops; this edge appends its own edge-connector hop, so the origin sees four.

From there on frames are copied as they are, one at a time in each direction, each send
waiting for room (:meth:`TunnelStream.send`): memory stays bounded by the two streams' windows
whatever the body size, and a reset on either side (the visitor went away, the origin failed)
resets the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..edge.app import connector_hop
from ..edge.registry import Registry
from ..log_safe import shown
from ..wire import FrameType, ProtocolError, StreamReset, TunnelStream
from .route import NO_CONNECTION_STATUS
from .stats import PeerStats

__all__ = ["pipe", "serve_relayed"]

logger = logging.getLogger("pq_quic_plugin.tunnel.cluster")


async def serve_relayed(
    stream: TunnelStream, peer: str, registry: Registry, edge_id: str, stats: PeerStats
) -> None:
    """Serve one relayed request from the peer edge ``peer``; raises StreamReset or
    ProtocolError for the link's stream task to reset the stream."""
    head = await stream.read_json(FrameType.HEADERS)
    tunnel_id = head.pop("tunnel_id", None)
    hops = head.get("hops")
    if not isinstance(tunnel_id, str) or not isinstance(hops, list) or not _check_hops(hops):
        raise ProtocolError("relayed head without tunnel_id or hops")
    live = registry.pick(tunnel_id)
    channel = None
    if live is not None:
        try:
            channel = live.connection.open_channel()
        except StreamReset:
            channel = None
    if live is None or channel is None:
        stats.served(peer, ok=False)
        logger.info(
            "relayed request from edge %s for tunnel %s: no live connection here",
            shown(peer, 60),
            shown(tunnel_id, 40),
        )
        reason = f"edge {edge_id} has no live connection for the tunnel"
        await stream.send_json(
            FrameType.ERROR, {"status": NO_CONNECTION_STATUS, "reason": reason}, end=True
        )
        return
    head["hops"] = [*hops, connector_hop(live)]
    live.requests += 1
    live.in_flight += 1
    stats.served(peer, ok=True)
    try:
        await channel.send_json(FrameType.HEADERS, head)
        await pipe(stream, channel)
    finally:
        live.in_flight -= 1
        live.connection.forget(channel)


async def pipe(a: TunnelStream, b: TunnelStream) -> None:
    """Copy frames both ways until both directions have ended. A reset or protocol error on
    either side resets both and is raised, also once a direction is done: a visitor that
    goes away after its (empty) body cancels the origin request still waiting for its head."""
    failed = asyncio.Event()
    for stream in (a, b):
        stream.on_fail.append(lambda _: failed.set())
    watch = asyncio.ensure_future(failed.wait())
    copies = {asyncio.ensure_future(_copy(a, b)), asyncio.ensure_future(_copy(b, a))}
    pending = set(copies)
    try:
        while pending:
            done, _ = await asyncio.wait({*pending, watch}, return_when=asyncio.FIRST_COMPLETED)
            for task in done & copies:
                pending.discard(task)
                error = task.exception()
                if error is not None:
                    raise error
            if watch in done and pending:
                raise StreamReset("the other side of the relay reset the stream")
    except BaseException:
        a.reset()
        b.reset()
        raise
    finally:
        watch.cancel()
        for task in copies:
            task.cancel()
        for task in copies:
            with contextlib.suppress(asyncio.CancelledError, StreamReset, ProtocolError):
                await task


async def _copy(src: TunnelStream, dst: TunnelStream) -> None:
    while (frame := await src.read()) is not None:
        await dst.send(frame[0], frame[1])
    await dst.end()


def _check_hops(hops: Any) -> bool:
    """Every hop an object (the origin's middleware shows them as they are)."""
    return isinstance(hops, list) and all(isinstance(h, dict) for h in hops)
