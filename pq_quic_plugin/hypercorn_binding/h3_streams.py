"""A sturdier event loop for hypercorn's HTTP/3 connections: no listener crash, bounded memory.

hypercorn 0.18's ``H3Protocol`` has three problems that matter to a server on the internet,
and that this module fixes for every connection of a ``hypercorn-pq`` listener (installed per
connection by :mod:`.hooks`, hypercorn itself is not edited):

1. **A late FIN kills the whole QUIC listener.** When a client ends its request stream with an
   empty DATA+FIN after the response is complete (legal, and what some clients do), hypercorn
   looks the stream up after it has already dropped it; the ``KeyError`` escapes through
   ``QuicProtocol.handle`` and ends the UDP server task. Every later handshake times out, with
   nothing in the log. Here events for unknown or finished streams are ignored, and an error in
   one connection closes that connection only.
2. **One slow reader stalls every connection.** hypercorn feeds request bodies into a ten-slot
   queue with ``await``, from the one task that reads all datagrams of the listener, so an
   application that reads its body slowly blocks all other connections (and handshakes) until
   the UDP socket overflows. Here the queue never blocks; instead the QUIC receive window of
   the request stream opens only as the application takes the body (``ReceiveCredit`` in
   ``aioquic_binding.flow_control``), which bounds memory per request to one window and pushes
   back on the client the way TCP does.
3. **Downloads are buffered whole.** A response body written faster than the client reads it
   piles up in aioquic's send buffer. Here the application's ``send`` waits while more than
   ``send_backpressure.SEND_BUFFER_HIGH`` bytes of the stream are unacknowledged.

4. **An answer to a stopped stream kills the listener.** A client that sends STOP_SENDING (a
   browser leaving a page mid-request) makes aioquic reset and then forget the stream; the
   application's answer then raises in ``send``, hypercorn's own 500 raises again from the same
   task, and the task group cancels the listener's datagram loop. Here messages for a reset or
   forgotten stream are dropped, the application is told ``http.disconnect``, and a send that
   fails resets its stream only.

It also tells the application when the client resets its request or the connection ends
(``http.disconnect``), and resets a response stream the application left unfinished (it
returned or raised mid-body), which stock hypercorn does not do for HTTP/3: its client waits
for the rest of the body until the connection times out.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aioquic.h3.connection import ErrorCode
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.connection import QuicConnection
from hypercorn.protocol.events import Body, Data, EndBody, StreamClosed
from hypercorn.protocol.h3 import H3Protocol
from hypercorn.protocol.http_stream import HTTPStream

from ..aioquic_binding.facade import SendState, quic_of, send_state
from ..aioquic_binding.flow_control import ReceiveCredit
from ..aioquic_binding.send_backpressure import wait_for_send_room

logger = logging.getLogger("pq_quic_plugin.hypercorn")

#: Unacknowledged bytes per response stream above which the application's send() waits.
#: hypercorn's app queues hold messages, not bytes; flow control bounds the bytes instead, so
#: the queue itself must never make the datagram loop wait.
_UNBOUNDED_QUEUE = 1 << 30


#: Send states in which a response message has nowhere to go: the peer sent STOP_SENDING or
#: RESET_STREAM (aioquic then resets our side), or aioquic already forgot the stream.
_ABANDONED = frozenset({SendState.RESET, SendState.GONE})


def harden(protocol: H3Protocol) -> None:
    """Give one hypercorn ``H3Protocol`` the guarded event loop and flow control."""
    quic = quic_of(protocol.connection)
    credit = ReceiveCredit.of(quic)
    config = copy.copy(protocol.config)
    config.max_app_queue_size = _UNBOUNDED_QUEUE
    protocol.config = config
    stock_stream_send = protocol.stream_send

    async def handle(quic_event: quic_events.QuicEvent) -> None:
        try:
            await _handle(protocol, credit, quic_event)
        except Exception:  # noqa: BLE001 - one broken connection must not end the listener
            logger.exception("HTTP/3 connection failed; closing it (the listener carries on)")
            try:
                quic.close(error_code=ErrorCode.H3_INTERNAL_ERROR, reason_phrase="internal error")
                await protocol.send()
            except Exception:  # noqa: BLE001 - the connection is beyond saving; the listener is not
                logger.debug("could not send CONNECTION_CLOSE", exc_info=True)

    async def stream_send(event: Any) -> None:
        if isinstance(event, StreamClosed):
            # The app is done: nobody reads the rest of the request body any more. H3_NO_ERROR
            # is the code RFC 9114 (section 4.1.2) asks for in that STOP_SENDING.
            is_http = credit.tracked(event.stream_id)
            flush = credit.release(event.stream_id, stop_code=ErrorCode.H3_NO_ERROR)
            if is_http:
                flush = _reset_if_unfinished(quic, event.stream_id) or flush
            await stock_stream_send(event)
            if flush:
                await protocol.send()  # carries the STOP_SENDING / RESET_STREAM
            return
        if send_state(quic, event.stream_id) in _ABANDONED:
            return  # the client stopped or reset this response: nobody is left to send it to
        try:
            await stock_stream_send(event)
        except Exception:  # noqa: BLE001 - see _send_failed
            await _send_failed(protocol, quic, event.stream_id)
            return
        if isinstance(event, (Body, Data)):
            await _drain(protocol, quic, event.stream_id)

    protocol.handle = handle  # type: ignore[method-assign]
    protocol.stream_send = stream_send  # type: ignore[method-assign]


def consumer(protocol: H3Protocol) -> Callable[[int, int], Awaitable[None]]:
    """What the app wrapper calls when the application took ``size`` body bytes of a stream."""
    credit = ReceiveCredit.of(quic_of(protocol.connection))

    async def consumed(stream_id: int, size: int) -> None:
        if credit.consumed(stream_id, size):
            await protocol.send()  # carries the MAX_STREAM_DATA

    return consumed


async def _handle(protocol: H3Protocol, credit: ReceiveCredit, quic_event: Any) -> None:
    if isinstance(quic_event, (quic_events.StreamReset, quic_events.StopSendingReceived)):
        # A reset request, or STOP_SENDING on the response (a browser leaving the page):
        # either way the application should stop producing an answer nobody will read.
        await _close_stream(protocol, credit, quic_event.stream_id)
    elif isinstance(quic_event, quic_events.ConnectionTerminated):
        for stream_id in list(protocol.streams):
            await _close_stream(protocol, credit, stream_id)
        return
    for event in _coalesced(protocol.connection.handle_event(quic_event)):
        stream = protocol.streams.get(getattr(event, "stream_id", -1))
        if isinstance(event, HeadersReceived):
            if stream is None:
                if protocol.context.terminated.is_set():
                    continue
                await protocol._create_stream(event)
                stream = protocol.streams.get(event.stream_id)
                if isinstance(stream, HTTPStream):
                    credit.track(event.stream_id)
            # else: trailers; hypercorn has no use for them, but their FIN ends the body.
            if event.stream_ended and stream is not None:
                await stream.handle(EndBody(stream_id=event.stream_id))
        elif isinstance(event, DataReceived):
            if stream is None:
                continue  # data or a late FIN for a stream whose response is complete
            if event.data:
                credit.delivered(event.stream_id, len(event.data))
                await stream.handle(Body(stream_id=event.stream_id, data=event.data))
            if event.stream_ended:
                await stream.handle(EndBody(stream_id=event.stream_id))


def _coalesced(h3_events: list[H3Event]) -> list[H3Event]:
    """Merge runs of DATA for the same stream: a peer sending one-byte DATA frames should cost
    one queued message per datagram, not one per frame."""
    merged: list[H3Event] = []
    for event in h3_events:
        last = merged[-1] if merged else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.stream_id == event.stream_id
            and not last.stream_ended
            and last.push_id == event.push_id
        ):
            merged[-1] = DataReceived(
                data=last.data + event.data,
                stream_id=event.stream_id,
                stream_ended=event.stream_ended,
                push_id=event.push_id,
            )
        else:
            merged.append(event)
    return merged


async def _close_stream(protocol: H3Protocol, credit: ReceiveCredit, stream_id: int) -> None:
    """The client reset the request or the connection ended: tell the app (http.disconnect)."""
    credit.release(stream_id)
    stream = protocol.streams.pop(stream_id, None)
    if stream is not None:
        await stream.handle(StreamClosed(stream_id=stream_id))


def _reset_if_unfinished(quic: QuicConnection, stream_id: int) -> bool:
    """An app that ended (or failed) in the middle of its response: reset the stream.

    hypercorn then just forgets the stream, so the client would wait for the rest of the body
    until the connection times out, or, worse, take a body cut short for a complete one.
    """
    if send_state(quic, stream_id) is not SendState.OPEN:
        return False
    quic.reset_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
    return True


async def _send_failed(protocol: H3Protocol, quic: QuicConnection, stream_id: int) -> None:
    """One stream's send failed: reset that stream, keep the connection and the listener.

    The send runs in the application's task, and hypercorn sends its own 500 from the same
    task after the application raised; a second exception there escapes that task, and the
    worker's task group then cancels the listener's datagram loop: every later handshake on
    the listener times out, with nothing logged. So no failure to send one stream's message
    may leave this function.
    """
    logger.warning(
        "HTTP/3: could not send on stream %d; reset it (the connection carries on)",
        stream_id,
        exc_info=logger.isEnabledFor(logging.DEBUG),
    )
    try:
        if send_state(quic, stream_id) is SendState.OPEN:
            quic.reset_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
            await protocol.send()
    except Exception:  # noqa: BLE001 - the stream is lost either way; the listener is not
        logger.debug("could not reset stream %d", stream_id, exc_info=True)


async def _drain(protocol: H3Protocol, quic: QuicConnection, stream_id: int) -> None:
    """Wait while the stream has more than SEND_BUFFER_HIGH bytes unacknowledged.

    Waits with the worker's own sleep: hypercorn owns the datagram loop, so nothing wakes us
    on an acknowledgement, and the same code must run under asyncio and trio workers.
    """
    await wait_for_send_room(quic, stream_id, protocol.context.sleep)
