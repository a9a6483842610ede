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

aioquic asks every stream for its limits in every packet it builds, including the empty
attempts after each datagram received, so the wrapper's common case (a tracked stream with
nothing new to announce) returns after one comparison: with dozens of streams open it runs
hundreds of thousands of times per second of transfer.

This leans on private names of ``QuicConnection`` (``_write_stream_limits``, ``_streams``) and
of its streams' receivers; all are listed in
:data:`~pq_quic_plugin.aioquic_binding.version.REQUIRED_INTERNALS` and checked at import.
"""

from __future__ import annotations

from typing import Any

from aioquic.quic.connection import QuicConnection


class ReceiveCredit:
    """Bounded, reader-paced receive windows for chosen streams of one QUIC connection."""

    def __init__(self, quic: QuicConnection, window: int | None = None) -> None:
        self.window = window or quic.configuration.max_stream_data
        self._quic = quic
        self._unread: dict[int, int] = {}
        original = quic._write_stream_limits
        unread = self._unread

        def write_stream_limits(builder: Any, space: Any, stream: Any) -> None:
            if stream.stream_id not in unread or not stream.max_stream_data_local:
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
        self._unread.setdefault(stream_id, 0)

    def tracked(self, stream_id: int) -> bool:
        return stream_id in self._unread

    def delivered(self, stream_id: int, size: int) -> None:
        """``size`` bytes of the stream were queued for the reader."""
        if stream_id in self._unread:
            self._unread[stream_id] += size

    def consumed(self, stream_id: int, size: int) -> bool:
        """The reader took ``size`` bytes; True when the limit was raised (the caller transmits,
        which carries the MAX_STREAM_DATA)."""
        unread = self._unread.get(stream_id)
        if unread is None:
            return False
        unread = max(0, unread - size)
        self._unread[stream_id] = unread
        stream = self._quic._streams.get(stream_id)
        if stream is None or not stream.max_stream_data_local or stream.receiver.is_finished:
            return False
        raised = self._raised_limit(stream, unread)
        if raised is None:
            return False
        stream.max_stream_data_local = raised  # announced by the next packet built
        return True

    def _raised_limit(self, stream: Any, unread: int) -> int | None:
        """The new limit, ``consumed + window``, once it is a quarter window above the current
        one (so MAX_STREAM_DATA goes out once per step, not in every packet); else None."""
        target = stream.receiver._buffer_start - unread + self.window
        return target if target - stream.max_stream_data_local >= self.window // 4 else None

    def release(self, stream_id: int, stop_code: int | None = None) -> bool:
        """Stop pacing the stream; with ``stop_code``, ask the peer to stop sending if it was
        still sending (nobody will read the rest). True when a STOP_SENDING was queued (the
        caller transmits)."""
        if self._unread.pop(stream_id, None) is None or stop_code is None:
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
