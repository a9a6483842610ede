"""One connection's failure stays that connection's: a guard around aioquic's entry points.

Every server built on aioquic (its own ``serve()``, hypercorn, the pq-tunnel edge) drives each
connection through three calls of ``QuicConnection``: ``receive_datagram``, ``datagrams_to_send``
and ``handle_timer``. An exception out of any of them is not aioquic's to handle, and no host
handles it well: under ``serve()`` it is logged as a traceback for every later datagram of that
connection (whose state never changes, so each call fails again) and the connection is never
removed; under hypercorn it ends the one task that reads every datagram of the listener, so
HTTP/3 stops for everybody, silently. An alert text too long for one Initial packet did exactly
that (``QuicPacketBuilderStop`` out of ``datagrams_to_send``, see :mod:`.reasons`).

For the connections the binding runs (a :func:`~.hook.configure`\\ d configuration, or every one
under :func:`~.hook.install`), :mod:`.hook` wraps the three methods with the functions below.
An exception then

* is logged once per connection, on one line (the traceback only at DEBUG);
* closes the connection: a CONNECTION_CLOSE (INTERNAL_ERROR, or the close already under way
  without its reason phrase) is sent if it can still be built, and the connection enters
  aioquic's closing state either way, so its timer ends it with a ``ConnectionTerminated``
  event and the host forgets it the way it forgets any closed connection;
* never reaches the host, which carries on serving everybody else.

Connections the binding does not run keep aioquic's behaviour, exceptions included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aioquic.quic import events
from aioquic.quic.connection import (
    END_STATES,
    QuicConnection,
    QuicConnectionState,
    QuicErrorCode,
)
from aioquic.quic.packet import QuicFrameType

from .reasons import bounded_reason

__all__ = ["GUARDED_METHODS", "guarded"]

logger = logging.getLogger("pq_quic_plugin")

#: The entry points every host calls, and so the ones :mod:`.hook` wraps.
GUARDED_METHODS = ("receive_datagram", "datagrams_to_send", "handle_timer")
_FAILED_ATTR = "_pq_quic_failed"
_REASON = "internal error"

Original = Callable[..., Any]
IsOurs = Callable[[QuicConnection], bool]


def guarded(name: str, original: Original, is_ours: IsOurs) -> Original:
    """The wrapper of ``QuicConnection.<name>`` (one of :data:`GUARDED_METHODS`)."""
    if name == "datagrams_to_send":

        def datagrams_to_send(self: QuicConnection, now: float) -> Any:
            try:
                return original(self, now)
            except Exception as exc:
                if not is_ours(self):
                    raise
                _report(self, name, exc)
                return _close_after_send_failure(self, original, now)

        wrapper: Original = datagrams_to_send
    elif name == "receive_datagram":

        def receive_datagram(self: QuicConnection, data: bytes, addr: Any, now: float) -> None:
            try:
                original(self, data, addr, now)
            except Exception as exc:
                if not is_ours(self):
                    raise
                _report(self, name, exc)
                _close(self)

        wrapper = receive_datagram
    elif name == "handle_timer":

        def handle_timer(self: QuicConnection, now: float) -> None:
            try:
                original(self, now)
            except Exception as exc:
                if not is_ours(self):
                    raise
                if _report(self, name, exc):
                    _close(self)
                else:
                    # Failing again, maybe in the closing period itself: the timer would fire
                    # at once, forever. End the connection here.
                    _terminate(self)

        wrapper = handle_timer
    else:
        raise ValueError(f"no guard for QuicConnection.{name}")
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = original.__doc__
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


def _report(connection: QuicConnection, where: str, exc: Exception) -> bool:
    """One line per connection, whatever happens to it afterwards; False if it failed before."""
    if getattr(connection, _FAILED_ATTR, False):
        logger.debug("QUIC connection failed again in %s: %r", where, exc)
        return False
    setattr(connection, _FAILED_ATTR, True)
    side = "client" if connection._is_client else "server"
    peer = _peer(connection)
    logger.error(
        "QUIC %s connection%s failed in %s (%s: %s); closing that connection, the listener "
        "carries on",
        side,
        f" with {peer}" if peer else "",
        where,
        type(exc).__name__,
        bounded_reason(str(exc)) or "no message",
    )
    logger.debug("the failure of that connection", exc_info=exc)
    return True


def _peer(connection: QuicConnection) -> str:
    paths = connection._network_paths
    if not paths:
        return ""
    host, port = paths[0].addr[:2]
    return f"{host}:{port}"


def _close(connection: QuicConnection) -> None:
    """Queue a CONNECTION_CLOSE, unless one is queued or the connection is already ending."""
    if connection._close_event is None and connection._state not in END_STATES:
        # A transport close (frame type given): an application close would reach the peer as
        # APPLICATION_ERROR during the handshake, hiding that the failure was ours.
        connection.close(
            error_code=QuicErrorCode.INTERNAL_ERROR,
            frame_type=QuicFrameType.PADDING,
            reason_phrase=_REASON,
        )


def _terminate(connection: QuicConnection) -> None:
    """The last resort: TERMINATED with its event queued, as aioquic's own end of a close."""
    connection._close_at = None
    if connection._state is not QuicConnectionState.TERMINATED:
        connection._events.append(
            connection._close_event
            or events.ConnectionTerminated(
                error_code=QuicErrorCode.INTERNAL_ERROR,
                frame_type=QuicFrameType.PADDING,
                reason_phrase=_REASON,
            )
        )
        connection._set_state(QuicConnectionState.TERMINATED)


def _close_after_send_failure(connection: QuicConnection, original: Original, now: float) -> Any:
    """Building datagrams failed: try once more with nothing but a short CONNECTION_CLOSE, then
    enter the closing state whether or not it could be sent."""
    closing = connection._close_event
    connection._close_event = events.ConnectionTerminated(
        error_code=closing.error_code if closing is not None else QuicErrorCode.INTERNAL_ERROR,
        frame_type=(
            closing.frame_type
            if closing is not None and closing.frame_type is not None
            else QuicFrameType.PADDING
        ),
        reason_phrase="",
    )
    connection._close_pending = True
    try:
        datagrams = original(connection, now)
    except Exception:  # noqa: BLE001 - not even a bare close fits: end the connection silently
        datagrams = []
    if connection._state not in END_STATES:
        connection._close_pending = False
        connection._close_begin(is_initiator=True, now=now)
    return datagrams
