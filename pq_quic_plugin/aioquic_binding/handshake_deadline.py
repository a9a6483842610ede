"""A QUIC handshake must finish in time: a deadline for the server connections the binding runs.

A client that sends one valid Initial ClientHello and then nothing leaves the server a
half-open connection (TLS state, key shares, sent-packet records: about 150 KB) until aioquic's
idle timeout, 60 s under hypercorn. A hostile client doing that a few hundred times a second
keeps tens of thousands of them alive: the long ClientHello fuzz run took hypercorn-pq from
119 MB to 517 MB. No legitimate handshake needs that long, so a server connection of ours whose
handshake has not completed ``timeout`` seconds (default 10) after its first datagram is closed.

The deadline rides on aioquic's own timer, so it needs no task and no change to any host:
every host (``serve()``, hypercorn, the pq-tunnel edge) arms one timer per connection from
``get_timer()`` and calls ``handle_timer(now)`` when it fires. During the handshake only, the
connection gets instance-level versions of three methods (:class:`HandshakeDeadline`):

* ``datagrams_to_send``: its first call, which every host makes right after the first datagram,
  anchors the deadline at ``now + timeout`` on the host's own clock (trio's is not
  ``time.monotonic``'s, so the deadline cannot be taken from a clock of ours);
* ``get_timer``: aioquic's timer, or the deadline when that comes first;
* ``handle_timer``: at the deadline, close the connection instead of aioquic's loss handling.

As soon as the handshake completes or the connection is ending they are removed again: an
established connection, and every connection the binding does not run, pays nothing.

The close is aioquic's own: ``close()`` queues a CONNECTION_CLOSE (CONNECTION_REFUSED,
"handshake timeout") for every packet space that still has keys, and sends nothing when none
has (the drop is silent then); the host's transmit after the timer enters the closing period,
whose end emits ``ConnectionTerminated``, and the host removes the connection from its table
like any closed one.

Closes are not logged one by one (an attack would flood the log): one WARNING line at most
every :data:`SUMMARY_INTERVAL` seconds says how many were closed since the previous line.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from aioquic.quic.connection import END_STATES, QuicConnection, QuicErrorCode
from aioquic.quic.packet import QuicFrameType

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "HandshakeDeadline",
    "check_timeout",
    "dropped_total",
]

logger = logging.getLogger("pq_quic_plugin")

#: Seconds a server connection has, from its first datagram, to complete its handshake.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: The reason phrase of the CONNECTION_CLOSE a late handshake gets.
REASON = "handshake timeout"
#: At most one summary line per this many seconds.
SUMMARY_INTERVAL = 60.0
_METHODS = ("datagrams_to_send", "get_timer", "handle_timer")


def check_timeout(value: Any) -> float | None:
    """A handshake timeout as given by a user: seconds > 0, or None/0 for no deadline.

    Raises ``ValueError`` naming the value otherwise (a negative, NaN, infinite or non-number
    value would silently mean "close at once" or "never").
    """
    if value is None or value is False:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"handshake timeout must be a number of seconds (0: none), not {value!r}"
        ) from None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"handshake timeout must be >= 0 seconds (0: none), not {value!r}")
    return seconds or None


class HandshakeDeadline:
    """One server connection's deadline; :meth:`arm` puts its methods on the connection."""

    __slots__ = ("at", "connection", "timeout")

    def __init__(self, connection: QuicConnection, timeout: float) -> None:
        self.connection = connection
        self.timeout = timeout
        #: The host's clock time at which the handshake must be complete (None: not anchored).
        self.at: float | None = None

    def arm(self) -> None:
        for name in _METHODS:
            self.connection.__dict__[name] = getattr(self, name)

    def disarm(self) -> None:
        """Back to aioquic's methods; also breaks the connection -> method -> self cycle."""
        for name in _METHODS:
            self.connection.__dict__.pop(name, None)

    def datagrams_to_send(self, now: float) -> Any:
        connection = self.connection
        if self.at is None:
            self.at = now + self.timeout
        connection.__dict__.pop("datagrams_to_send", None)  # anchored: aioquic's from now on
        return connection.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        connection = self.connection
        if connection._handshake_complete or connection._state in END_STATES:
            self.disarm()
            return connection.get_timer()
        timer = type(connection).get_timer(connection)
        at = self.at
        if at is None or (timer is not None and timer <= at):
            return timer
        return at

    def handle_timer(self, now: float) -> None:
        connection = self.connection
        at = self.at
        if at is None or now < at:
            type(connection).handle_timer(connection, now)
            return
        self.disarm()
        if (
            connection._handshake_complete
            or connection._state in END_STATES
            or connection._close_event is not None  # a close of its own is under way
        ):
            connection.handle_timer(now)
            return
        # A transport close (frame type given), as for an idle peer: an application close
        # would reach the client as APPLICATION_ERROR during the handshake.
        connection.close(
            error_code=QuicErrorCode.CONNECTION_REFUSED,
            frame_type=QuicFrameType.PADDING,
            reason_phrase=REASON,
        )
        _summary.note(self.timeout)


class _DropSummary:
    """Counts the closes and logs them, at most one line per :data:`SUMMARY_INTERVAL`.

    The first close logs at once; later ones are counted and reported with the first close
    after the interval (a count left at the end of an attack waits for the next one).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self._unreported = 0
        self._last: float | None = None

    def note(self, timeout: float) -> None:
        with self._lock:
            self.total += 1
            self._unreported += 1
            clock = time.monotonic()
            if self._last is not None and clock - self._last < SUMMARY_INTERVAL:
                return
            count, total = self._unreported, self.total
            self._unreported, self._last = 0, clock
        logger.warning(
            "QUIC handshake deadline: closed %d server connection%s whose handshake did not "
            "complete within %g s (%d in all; at most one such line a minute; the deadline is "
            "configure(handshake_timeout=...), hypercorn-pq --pq-handshake-timeout)",
            count,
            "" if count == 1 else "s",
            timeout,
            total,
        )


_summary = _DropSummary()


def dropped_total() -> int:
    """How many connections this process closed at their handshake deadline."""
    return _summary.total
