"""qh3 and niquests as independent QUIC clients (the qh3 server is in qh3_server.py).

Why these exist: qh3 is an aioquic fork whose TLS 1.3 handshake code was rewritten separately
and offers X25519MLKEM768 by default, so a handshake with it checks our wire format against an
implementation we did not write.

The server handle and the raw-QUIC ALPN are re-exported here, so the tests take every qh3
peer from one module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from qh3.asyncio import QuicConnectionProtocol, connect
from qh3.h3 import events as h3_events
from qh3.h3.connection import H3Connection
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection

from peers.qh3_server import Qh3Server
from peers.qh3_wire import ECHO_ALPN, INITIAL_RTT, HelloRecord, instrument

P = ParamSpec("P")
T = TypeVar("T")

__all__ = [
    "ECHO_ALPN",
    "HttpResult",
    "Qh3HandshakeError",
    "Qh3Result",
    "Qh3Server",
    "niquests_h3_get",
    "qh3_handshake",
    "qh3_handshake_async",
]

# --- qh3 client ----------------------------------------------------------------------------


@dataclass
class Qh3Result:
    """What a qh3 client learned from one connection."""

    alpn: str | None
    selected_group: str | None
    offered_key_shares: list[str]
    supported_groups: list[str]
    response: bytes
    """The echoed bytes (raw ALPN) or the HTTP/3 response body (``h3``)."""
    status: int | None = None
    """HTTP/3 status code, ``None`` for raw QUIC."""
    cipher_suite: str | None = None


class Qh3HandshakeError(ConnectionError):
    """The qh3 connection closed before its handshake completed; carries the close reason."""

    def __init__(
        self, message: str, hello: HelloRecord, terminated: events.ConnectionTerminated | None
    ) -> None:
        super().__init__(message)
        self.hello = hello
        self.error_code = terminated.error_code if terminated is not None else None
        self.reason = terminated.reason_phrase if terminated is not None else None


class _ClientProtocol(QuicConnectionProtocol):
    """Sends one request (``ping`` or ``GET /``) after the handshake and keeps the answer."""

    def __init__(
        self, quic: QuicConnection, groups: Sequence[str] | None, authority: str, **kwargs: Any
    ) -> None:
        super().__init__(quic, **kwargs)
        self.hello = instrument(quic, groups)
        self.terminated: events.ConnectionTerminated | None = None
        # Resolves to (status, body), or to None when the connection closes first.
        self.answer: asyncio.Future[tuple[int | None, bytes] | None] = self._loop.create_future()
        self._authority = authority
        self._h3: H3Connection | None = None
        self._stream_id = -1
        self._status: int | None = None
        self._body = b""

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self._stream_id = self._quic.get_next_available_stream_id()
            if event.alpn_protocol == "h3":
                self._h3 = H3Connection(self._quic)
                self._h3.send_headers(
                    self._stream_id,
                    [
                        (b":method", b"GET"),
                        (b":scheme", b"https"),
                        (b":authority", self._authority.encode()),
                        (b":path", b"/"),
                    ],
                    end_stream=True,
                )
            else:
                self._quic.send_stream_data(self._stream_id, b"ping", end_stream=True)
            self.transmit()
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            if not self.answer.done():
                self.answer.set_result(None)
        elif isinstance(event, events.StreamDataReceived) and self._h3 is None:
            if event.stream_id == self._stream_id:
                self._collect(event.data, event.end_stream)
        elif isinstance(event, events.StreamDataReceived) and self._h3 is not None:
            for h3_event in self._h3.handle_event(event):
                if getattr(h3_event, "stream_id", None) != self._stream_id:
                    continue
                if isinstance(h3_event, h3_events.HeadersReceived):
                    self._status = int(dict(h3_event.headers)[b":status"])
                    self._collect(b"", h3_event.stream_ended)
                elif isinstance(h3_event, h3_events.DataReceived):
                    self._collect(h3_event.data, h3_event.stream_ended)

    def _collect(self, data: bytes, ended: bool) -> None:
        self._body += data
        if ended and not self.answer.done():
            self.answer.set_result((self._status, self._body))


async def qh3_handshake_async(
    host: str,
    port: int,
    alpn: str,
    cafile: str | Path,
    server_name: str = "localhost",
    groups: Sequence[str] | None = None,
    timeout: float = 10.0,
) -> Qh3Result:
    """Connect with qh3, send ``ping`` (or ``GET /`` when ``alpn == "h3"``), read the answer.

    ``groups`` restricts (and orders) qh3's offer, e.g. ``["x25519"]``; ``None`` keeps qh3's
    default offer (GREASE, X25519MLKEM768 + x25519 shares, secp256r1/384r1 without shares).
    """
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=[alpn],
        cafile=str(cafile),
        server_name=server_name,
        offer_ec_key_shares=any(g.startswith("secp") for g in groups or ()),
        initial_rtt=INITIAL_RTT,
    )
    made: list[_ClientProtocol] = []

    def create_protocol(quic: QuicConnection, **kwargs: Any) -> _ClientProtocol:
        made.append(_ClientProtocol(quic, groups, server_name, **kwargs))
        return made[0]

    async def run() -> Qh3Result:
        try:
            async with connect(
                host, port, configuration=configuration, create_protocol=create_protocol
            ) as protocol:
                answer = await made[0].answer
                if answer is None:
                    raise ConnectionError("closed before the answer")
                status, body = answer
                cipher = protocol._quic.get_cipher()
        except ConnectionError as exc:
            protocol_made = made[0] if made else None
            terminated = protocol_made.terminated if protocol_made else None
            detail = (
                f"error_code=0x{terminated.error_code:X} reason={terminated.reason_phrase!r}"
                if terminated is not None
                else repr(exc)
            )
            if protocol_made is None or not protocol_made._connected:
                raise Qh3HandshakeError(
                    f"qh3 handshake with {host}:{port} failed: {detail}",
                    protocol_made.hello if protocol_made else HelloRecord(),
                    terminated,
                ) from exc
            raise ConnectionError(f"qh3 connection closed after handshake: {detail}") from exc
        hello = made[0].hello
        return Qh3Result(
            alpn=protocol._quic.tls.alpn_negotiated if protocol._quic.tls else None,
            selected_group=hello.selected_group,
            offered_key_shares=hello.offered_key_shares,
            supported_groups=hello.supported_groups,
            response=body,
            status=status,
            cipher_suite=cipher.name if cipher is not None else None,
        )

    return await asyncio.wait_for(run(), timeout)


def _blocking(coroutine_function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """``coroutine_function`` made blocking: run on a private loop in a worker thread.

    The worker thread makes it callable from anywhere, even under a running loop; a server on
    that same loop would then starve, so use the async variant in that case.
    """

    @functools.wraps(coroutine_function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(lambda: asyncio.run(coroutine_function(*args, **kwargs))).result()

    return call


#: Blocking :func:`qh3_handshake_async` (same arguments), on a private loop in a worker thread.
qh3_handshake = _blocking(qh3_handshake_async)


# --- niquests client -----------------------------------------------------------------------


@dataclass
class HttpResult:
    """One niquests response: status, body and the HTTP version actually used."""

    status: int
    body: bytes
    http_version: str
    """As urllib3-future's ``ConnectionInfo`` reports it, e.g. ``"HTTP/3.0"``."""


def niquests_h3_get(url: str, cafile: str | Path, timeout: float = 10.0) -> HttpResult:
    """GET ``url`` with niquests over HTTP/3 only, trusting ``cafile``.

    ``disable_http1=True, disable_http2=True`` makes urllib3-future open QUIC straight away
    (no TCP request, no Alt-Svc discovery) and never fall back to TCP, so a QUIC failure is an
    error rather than a silent HTTP/2 success.
    """
    import niquests  # local: optional dependency, only the tests that use it need it

    with niquests.Session(disable_http1=True, disable_http2=True, retries=0) as session:
        response = session.get(url, verify=str(cafile), timeout=timeout)
        info = response.conn_info
        version = info.http_version.value if info and info.http_version else "unknown"
        return HttpResult(
            status=response.status_code or 0, body=response.content or b"", http_version=version
        )
