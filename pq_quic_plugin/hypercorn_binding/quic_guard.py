"""hypercorn's QUIC listener outlives any one connection: a guard around its datagram loop.

hypercorn 0.18 runs all of HTTP/3 in one loop per worker (``UDPServer.run``) that passes every
datagram to ``QuicProtocol.handle``; each connection's timer runs ``QuicProtocol._handle_timer``
in a task of the same task group. An exception out of either, for any one connection, ends that
loop or its task group: every later handshake times out and nothing is logged. aioquic raised
one for a refusal whose reason did not fit an Initial packet; a post-quantum connection is
already guarded inside aioquic (:mod:`pq_quic_plugin.aioquic_binding.connection_guard`), but a
listener with ``pq`` off runs stock aioquic, and hypercorn's own code around it can fail too.

So both are wrapped, per listener, by :func:`guard_listener`. On an exception the connection
the datagram (or the timer) belongs to is dropped: forgotten under all its connection IDs, its
timer stopped, a CONNECTION_CLOSE sent if one can still be built; one line is logged, and the
loop goes on with the next datagram.

The timer wrapper also keeps a connection's timer alive under the trio worker. When the timer
fires, hypercorn handles it in the timer's own task and then arms the next one with
``SingleTask.restart``, which cancels the task it holds: the running one. Under trio the new
timer is started from that cancelled task and is cancelled with it (``nursery.start``), so a
connection whose peer went silent never had a timer again: no retransmission, no idle timeout,
no handshake deadline, and it stayed in the table for good. (asyncio survives the same call by
accident.) So once the timer has fired, the running task is no longer the one ``restart``
cancels: it finishes by itself, and the next timer starts in a task of its own.

Shutdown is :mod:`.quic_shutdown`'s (started here, for the same listener).
"""

from __future__ import annotations

import logging
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicErrorCode, QuicFrameType, pull_quic_header
from hypercorn.events import RawData
from hypercorn.protocol.quic import QuicProtocol

from ..aioquic_binding.reasons import bounded_reason
from .quic_shutdown import mark_if_done, start_shutdown_helper

logger = logging.getLogger("pq_quic_plugin.hypercorn")

__all__ = ["guard_listener"]


def guard_listener(protocol: QuicProtocol) -> None:
    """Wrap one listener's ``handle`` and ``_handle_timer`` (idempotent)."""
    if getattr(protocol, "_pq_quic_guarded", False):
        return
    protocol._pq_quic_guarded = True  # type: ignore[attr-defined]
    stock_handle = protocol.handle
    stock_timer = protocol._handle_timer

    async def handle(event: Any) -> None:
        try:
            await stock_handle(event)
        except Exception as exc:  # noqa: BLE001 - one connection must not end the listener
            connection = _connection_of(protocol, event)
            _log(exc, "a datagram", getattr(event, "address", None))
            if connection is not None:
                await _drop(protocol, connection, stop_timer=True)
        mark_if_done(protocol)

    async def handle_timer(timer: float, connection: Any) -> None:
        try:
            await protocol.context.sleep(max(0, timer - protocol.context.time()))
            _release(connection.task)  # fired: arming the next timer must not cancel this task
            await stock_timer(timer, connection)  # its own sleep is over at once
        except Exception as exc:  # noqa: BLE001 - nor may its timer end the task group
            _log(exc, "its timer", None)
            # This task *is* the connection's timer: it ends when we return.
            await _drop(protocol, connection, stop_timer=False)

    protocol.handle = handle  # type: ignore[method-assign]
    protocol._handle_timer = handle_timer  # type: ignore[method-assign]
    start_shutdown_helper(protocol)


def _release(task: Any) -> None:
    """Make the hypercorn ``SingleTask`` forget the task it runs (the caller), without
    cancelling it: ``restart`` and ``stop`` then leave the caller alone."""
    if hasattr(task, "_handle"):  # both workers' SingleTask; another worker's is left as it is
        task._handle = None


def _connection_of(protocol: QuicProtocol, event: Any) -> Any:
    """The connection a datagram was for, as hypercorn looked it up (None if it made none)."""
    if not isinstance(event, RawData):
        return None
    try:
        header = pull_quic_header(Buffer(data=event.data), host_cid_length=8)
    except ValueError:
        return None
    return protocol.connections.get(header.destination_cid)


def _log(exc: Exception, what: str, address: Any) -> None:
    text = bounded_reason(str(exc))
    logger.error(
        "HTTP/3 listener: handling %s%s failed (%s: %s); dropped that connection, the "
        "listener carries on",
        what,
        f" from {address[0]}:{address[1]}" if address else "",
        type(exc).__name__,
        text or "no message",
    )
    logger.debug("the failure", exc_info=exc)


async def _drop(protocol: QuicProtocol, connection: Any, stop_timer: bool) -> None:
    """Forget ``connection`` everywhere hypercorn keeps it; tell the peer if we still can."""
    for cid in list(connection.cids):
        if protocol.connections.get(cid) is connection:
            del protocol.connections[cid]
    connection.cids = set()
    try:
        connection.quic.close(
            error_code=QuicErrorCode.INTERNAL_ERROR, frame_type=QuicFrameType.PADDING
        )
        await protocol.send_all(connection)
    except Exception:  # noqa: BLE001 - the peer will time out instead
        logger.debug("could not send CONNECTION_CLOSE to a dropped connection", exc_info=True)
    if stop_timer:
        try:
            await connection.task.stop()
        except Exception:  # noqa: BLE001 - the timer task is gone either way
            logger.debug("could not stop a dropped connection's timer", exc_info=True)
