"""An HTTP/3 listener that stops when it is told to, not a graceful timeout later.

hypercorn's HTTP/3 loop (``UDPServer.run``: ``while not terminated or not idle``) checks for
shutdown only after its next datagram, so every stop (Ctrl-C, SIGTERM, a restart) of a server
nobody was sending to waited out the whole ``graceful_timeout`` (3 s by default) before the
worker could exit. And hypercorn never closes an HTTP/3 connection at shutdown: a browser's idle
connection (browsers keep them for minutes) made the loop wait the same time, and the browser
learned of the stop only by timing out.

So, once a worker is terminating, :func:`start_shutdown_helper`'s task

1. closes every connection that has no request in flight and nothing unacknowledged, with
   H3_NO_ERROR (RFC 9114 5.2), and re-arms its timer so that it leaves hypercorn's table after
   the closing period; connections with requests in flight are looked at again every turn and
   closed once their last response is through, up to the graceful timeout;
2. sends the listener a one-byte datagram (not a QUIC packet: hypercorn drops it) every
   :data:`WAKE_EVERY` seconds until this worker's loop has read one with no connection left
   (the guarded ``handle`` in :mod:`.quic_guard` marks that): the loop then ends at once. More
   than one because the workers of ``-w N`` share the socket, so any of them may read it.

The task runs beside the listener, not in its task group: a task group waits for its tasks, so
one that waits for shutdown would hold up any group whose owner never sets ``terminated``
(code that drives ``QuicProtocol`` itself). Left waiting, it is cancelled with the event loop
(asyncio) or the run (a trio system task).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from aioquic.h3.connection import ErrorCode
from hypercorn.events import RawData
from hypercorn.protocol.quic import QuicProtocol

from ..aioquic_binding.facade import unacked_send_bytes

logger = logging.getLogger("pq_quic_plugin.hypercorn")

__all__ = ["WAKE_DATAGRAM", "WAKE_EVERY", "mark_if_done", "start_shutdown_helper"]

#: What wakes a listener's loop at shutdown: not a QUIC packet (its fixed bit is 0), so
#: hypercorn drops it; one byte because asyncio does not send an empty datagram.
WAKE_DATAGRAM = b"\x00"
#: How often it is sent until a loop of this worker has read one.
WAKE_EVERY = 0.05
_DONE = "_pq_quic_done"
_HELPERS: set[asyncio.Task[None]] = set()


def mark_if_done(protocol: QuicProtocol) -> None:
    """Called after each datagram the loop handled: whether the loop is about to end."""
    if protocol.context.terminated.is_set() and protocol.idle:
        setattr(protocol, _DONE, True)


def start_shutdown_helper(protocol: QuicProtocol) -> None:
    """Start the task that waits for shutdown beside ``protocol`` (see the module docstring)."""
    try:
        if type(protocol.task_group).__module__.startswith("hypercorn.trio"):
            import trio

            trio.lowlevel.spawn_system_task(_on_shutdown, protocol)
        else:
            task = asyncio.get_running_loop().create_task(_on_shutdown(protocol))
            _HELPERS.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(_HELPERS.discard)
    except RuntimeError:  # built outside a running loop: not by a serving worker
        logger.debug("HTTP/3 listener built outside an event loop: no shutdown helper")


async def _on_shutdown(protocol: QuicProtocol) -> None:
    await protocol.context.terminated.wait()
    try:
        await _until_the_loop_ends(protocol)
    except Exception:  # noqa: BLE001 - a trio system task must not raise; the stop goes on
        logger.warning("HTTP/3 listener: the shutdown helper failed", exc_info=True)


async def _until_the_loop_ends(protocol: QuicProtocol) -> None:
    """Close what is idle and wake the loop, every WAKE_EVERY, until it ends or time is up."""
    deadline = protocol.context.time() + protocol.config.graceful_timeout
    closed: set[int] = set()
    while not getattr(protocol, _DONE, False) and protocol.context.time() < deadline:
        await _close_idle_connections(protocol, closed)
        if protocol.server is not None:
            try:
                await protocol.send(RawData(data=WAKE_DATAGRAM, address=protocol.server))
            except OSError:  # the loop then ends at graceful_timeout, as without this task
                logger.debug("could not wake the HTTP/3 listener for shutdown", exc_info=True)
                return
        await protocol.context.sleep(WAKE_EVERY)


async def _close_idle_connections(protocol: QuicProtocol, closed: set[int]) -> None:
    """Close (H3_NO_ERROR) every connection with no request in flight and nothing of ours
    unacknowledged: a response already written but not yet received would be lost with it.
    Checked again each turn, so a connection closes as soon as its last response is through."""
    for connection in {id(c): c for c in protocol.connections.values()}.values():
        if id(connection) in closed:
            continue
        if connection.h3 is not None and connection.h3.streams:
            continue  # requests in flight: they may finish within the graceful timeout
        if unacked_send_bytes(connection.quic):
            continue
        closed.add(id(connection))
        try:
            await _close(protocol, connection)
        except Exception:  # noqa: BLE001 - it then ends at its idle timeout or the graceful one
            logger.debug("could not close an idle HTTP/3 connection at shutdown", exc_info=True)


async def _close(protocol: QuicProtocol, connection: Any) -> None:
    quic = connection.quic
    quic.close(error_code=ErrorCode.H3_NO_ERROR, reason_phrase="server shutting down")
    await protocol.send_all(connection)
    timer = quic.get_timer()  # now the end of the closing period
    if timer is not None:  # as hypercorn arms it after a datagram
        await connection.task.restart(
            protocol.task_group, partial(protocol._handle_timer, timer, connection)
        )
