"""Receive windows that open as the application reads, not as the network delivers.

aioquic doubles a stream's receive window (MAX_STREAM_DATA) whenever half of it has arrived,
whether or not anybody read the data. A fast sender facing a slow reader therefore makes the
receiver hold an ever larger part of the body in memory: a 100 MB upload to a server whose
application reads slowly ends up mostly in RAM. HTTP/2 and TCP servers avoid this by granting
credit only for what the application consumed; :class:`ReceiveCredit` does the same for the
streams a caller chooses to track, and leaves every other stream to aioquic.

How it works: for a tracked stream the limit advertised to the peer is ``consumed + window``,
where ``consumed`` is what the stream handed upwards (``receiver._buffer_start``) minus what
the caller reported as delivered but not yet consumed. Credit is raised in quarter-window steps,
when the reader consumes (:meth:`ReceiveCredit.consumed`), so that a MAX_STREAM_DATA frame goes
out once per step, not in every packet. aioquic's own doubling is switched off for tracked
streams only for the duration of the limit write.

Window auto-tuning (:func:`tune_windows`): a stream whose reader stopped still holds a whole
window, and so does every hop before it (a tunnel relays through two or three such windows),
so a visitor holding 40 unread downloads once made the tunnel carry, and hold, 40 MiB and more.
A connection set up with :func:`tune_windows` announces a small :data:`START_WINDOW` for every
stream, and each tracked stream's window doubles (up to the configured ``max_stream_data``)
only while its reader keeps up: when half a window was consumed within about two round trips,
the window, not the reader, limits the rate (the rule of TCP's and quic-go's receive
auto-tuning). A bulk transfer reaches the full window within a few round trips; a stream
nobody reads stays at the start.

aioquic asks every stream for its limits in every packet it builds, including the empty
attempts after each datagram received, so the wrapper's common case (a tracked stream with
nothing new to announce) returns after one comparison: with dozens of streams open it runs
hundreds of thousands of times per second of transfer.

This leans on private names of ``QuicConnection`` (``_write_stream_limits``, ``_streams``) and
of its streams' receivers; all are listed in
:data:`~pq_quic_plugin.aioquic_binding.version.REQUIRED_INTERNALS` and checked at import.
"""

from __future__ import annotations

import time
from typing import Any

from aioquic.quic.connection import QuicConnection

__all__ = ["MIN_TUNING_RTT", "START_WINDOW", "ReceiveCredit", "tune_windows"]

#: The window a stream of a :func:`tune_windows` connection starts with.
START_WINDOW = 64 * 1024
#: The round-trip time the tuning assumes at least. On loopback the measured one is tens of
#: microseconds, but a window update takes a turn of both peers' event loops to be answered,
#: so a reader that keeps up would otherwise look slow and keep a small window.
MIN_TUNING_RTT = 0.005


class _Pacing:
    """One tracked stream: what its reader has not taken yet, its window, and the epoch the
    tuning measures (where and when the reader started consuming the current window)."""

    __slots__ = ("epoch_offset", "epoch_time", "unread", "window")

    def __init__(self, window: int) -> None:
        self.unread = 0
        self.window = window
        self.epoch_offset = 0
        self.epoch_time = 0.0  # set when the first bytes arrive


def tune_windows(quic: QuicConnection, start: int = START_WINDOW) -> ReceiveCredit:
    """Make ``quic`` announce ``start`` bytes as every bidirectional stream's initial window,
    and let its :class:`ReceiveCredit` grow each tracked stream's window from there up to the
    configuration's ``max_stream_data`` while its reader keeps up (see the module's text).

    Call it from the protocol's constructor: the transport parameters that announce the
    initial windows are built when the handshake starts. Untracked bidirectional streams start
    at ``start`` too, and grow by aioquic's own doubling.
    """
    if start < quic.configuration.max_stream_data:
        quic._local_max_stream_data_bidi_local = start
        quic._local_max_stream_data_bidi_remote = start
    return ReceiveCredit.of(quic)


class ReceiveCredit:
    """Bounded, reader-paced receive windows for chosen streams of one QUIC connection.

    ``window`` is the largest window a stream gets (default: the configuration's
    ``max_stream_data``); each stream starts at what the connection announced (see
    :func:`tune_windows`) and grows towards it as its reader keeps up.
    """

    def __init__(self, quic: QuicConnection, window: int | None = None) -> None:
        self.window = window or quic.configuration.max_stream_data
        self.start = min(self.window, quic._local_max_stream_data_bidi_local)
        self._quic = quic
        self._paced: dict[int, _Pacing] = {}
        original = quic._write_stream_limits
        paced = self._paced

        def write_stream_limits(builder: Any, space: Any, stream: Any) -> None:
            if stream.stream_id not in paced or not stream.max_stream_data_local:
                original(builder, space, stream)
            elif stream.max_stream_data_local_sent != stream.max_stream_data_local:
                receiver = stream.receiver
                highest = receiver.highest_offset
                receiver.highest_offset = 0  # switches off aioquic's "double it" rule
                try:
                    original(builder, space, stream)
                finally:
                    receiver.highest_offset = highest
            # else: a tracked stream with nothing new to announce (the common case)

        quic._write_stream_limits = write_stream_limits  # type: ignore[method-assign]

    @classmethod
    def of(cls, quic: QuicConnection, window: int | None = None) -> ReceiveCredit:
        """The connection's one ReceiveCredit, made on first use (wrapping twice would nest)."""
        credit = getattr(quic, "_pq_receive_credit", None)
        if credit is None:
            credit = cls(quic, window)
            quic._pq_receive_credit = credit  # type: ignore[attr-defined]
        return credit

    def track(self, stream_id: int) -> None:
        """Start pacing ``stream_id`` by :meth:`consumed` (idempotent)."""
        if stream_id not in self._paced:
            self._paced[stream_id] = _Pacing(self.start)

    def tracked(self, stream_id: int) -> bool:
        return stream_id in self._paced

    def window_of(self, stream_id: int) -> int | None:
        """The tracked stream's current window (None when not tracked)."""
        pacing = self._paced.get(stream_id)
        return pacing.window if pacing is not None else None

    def delivered(self, stream_id: int, size: int) -> None:
        """``size`` bytes of the stream were queued for the reader."""
        pacing = self._paced.get(stream_id)
        if pacing is not None:
            pacing.unread += size
            if not pacing.epoch_time:  # the tuning's first epoch starts with the first bytes
                pacing.epoch_time = time.monotonic()

    def consumed(self, stream_id: int, size: int) -> bool:
        """The reader took ``size`` bytes; True when the limit was raised (the caller transmits,
        which carries the MAX_STREAM_DATA)."""
        pacing = self._paced.get(stream_id)
        if pacing is None:
            return False
        return self.waiting(stream_id, max(0, pacing.unread - size))

    def waiting(self, stream_id: int, size: int) -> bool:
        """Of what was delivered, ``size`` bytes still wait for the reader; the rest counts as
        taken. A reader of framed data says so for the bytes of an incomplete frame, which it
        cannot take before the rest arrives: a frame larger than the window must not stall
        its own stream (the framing bounds a frame's size). True when the limit was raised."""
        pacing = self._paced.get(stream_id)
        if pacing is None:
            return False
        pacing.unread = size
        stream = self._quic._streams.get(stream_id)
        if stream is None or not stream.max_stream_data_local or stream.receiver.is_finished:
            return False
        taken = stream.receiver._buffer_start - pacing.unread
        if pacing.window < self.window and taken - pacing.epoch_offset >= pacing.window // 2:
            self._tune(pacing, taken)
        target = taken + pacing.window
        if target - stream.max_stream_data_local < pacing.window // 4:
            return False  # a MAX_STREAM_DATA once per quarter window, not in every packet
        stream.max_stream_data_local = target  # announced by the next packet built
        return True

    def _tune(self, pacing: _Pacing, taken: int) -> None:
        """At least half the window was consumed since the epoch began: if that took less than
        about two round trips (four per whole window), the window limits the rate, so double
        it; either way, a new epoch starts here."""
        now = time.monotonic()
        loss = self._quic._loss
        rtt = max(loss._rtt_smoothed if loss._rtt_initialized else 0.0, MIN_TUNING_RTT)
        if now - pacing.epoch_time < 4 * rtt * (taken - pacing.epoch_offset) / pacing.window:
            pacing.window = min(pacing.window * 2, self.window)
        pacing.epoch_offset, pacing.epoch_time = taken, now

    def release(self, stream_id: int, stop_code: int | None = None) -> bool:
        """Stop pacing the stream; with ``stop_code``, ask the peer to stop sending if it was
        still sending (nobody will read the rest). True when a STOP_SENDING was queued (the
        caller transmits)."""
        if self._paced.pop(stream_id, None) is None or stop_code is None:
            return False
        stream = self._quic._streams.get(stream_id)
        receiver = stream.receiver if stream is not None else None
        if receiver is None or receiver.is_finished or receiver._stop_error_code is not None:
            return False
        try:
            self._quic.stop_stream(stream_id, stop_code)
        except ValueError:  # a send-only stream, or one the peer already finished
            return False
        return True
