"""``https://`` origins over TLS on TCP, as cloudflared reaches them: HTTP/2 when the origin
offers it by ALPN, HTTP/1.1 otherwise.

``origin-protocol: auto`` offers ``h2`` and ``http/1.1`` and lets the origin choose; ``http2``
offers ``h2`` only (an origin that does not take it is a 502 that says so); ``http1`` offers
``http/1.1`` only. An origin that chose HTTP/2 gets one connection for all requests
(:class:`~.h2.H2Session`) while it has a stream free, and another when every one is full
(:mod:`.connection_choice`); one that chose HTTP/1.1 gets a keep-alive pool, as ``http://``
origins do (:class:`~.h1.H1Client`). Either way the hop carries the group the TLS handshake
agreed on, so under ``--post-quantum`` the origin sees a post-quantum hop or no request at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from ..config import Service
from .connection_choice import choose
from .h1 import H1Client, H1Connection
from .h2 import H2Session, StreamRefused
from .h2_request import send_request
from .request import OriginError, OriginHop, OriginRequest, OriginResponse, PeekedBody
from .tls import ALPN_FOR, TLSConnector, TLSStream

__all__ = ["HttpsClient"]

logger = logging.getLogger("pq_quic_plugin.tunnel.origin")

#: What a TLS origin connection is pooled by: where it goes (host and port, or socket path),
#: CA file, server name, whether the certificate was verified, the key-exchange policy.
TLSKey = tuple[str, str, int, str | None, str | None, bool, str | None]


class _NowHTTP2(Exception):
    """A connection opened for HTTP/1.1 under ``auto`` got ``h2``: it is now the origin's
    HTTP/2 session, and the request goes there."""


class HttpsClient:
    """Requests to ``https://`` services over TLS on TCP (``origin-protocol`` other than
    ``http3``), sharing the HTTP/1.1 pool with the plain ``http://`` path."""

    def __init__(self, tls: TLSConnector, h1: H1Client) -> None:
        self.tls = tls
        self.h1 = h1
        #: Per origin, its HTTP/2 connections, oldest first (new requests fill the oldest, so a
        #: connection opened for a burst goes idle and closes when the burst is over).
        self._sessions: dict[TLSKey, list[H2Session]] = {}
        self._locks: dict[TLSKey, asyncio.Lock] = {}
        #: What ALPN chose the last time, per origin: "h2", or "http/1.1" (also for no ALPN).
        self._chosen: dict[TLSKey, str] = {}
        #: What was last logged per origin, so a pool of HTTP/1.1 connections logs once.
        self._logged: dict[TLSKey, tuple[str, str | None]] = {}

    @property
    def sessions(self) -> int:
        """How many HTTP/2 connections to origins are open and pooled."""
        return sum(1 for ss in self._sessions.values() for s in ss if s.usable)

    @property
    def streams(self) -> int:
        """How many requests are open on those connections."""
        return sum(len(s.streams) for ss in self._sessions.values() for s in ss)

    async def aclose(self) -> None:
        sessions = [s for ss in self._sessions.values() for s in ss]
        self._sessions = {}
        for session in sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.aclose(), 5)

    @staticmethod
    def key(service: Service, request: OriginRequest) -> TLSKey:
        where = service.socket_path if service.is_unix else service.host
        return (
            "tls",
            where,
            service.port,
            request.ca_file,
            request.server_name,
            request.verify,
            request.policy,
        )

    async def request(
        self, service: Service, request: OriginRequest, body: PeekedBody
    ) -> OriginResponse:
        key = self.key(service, request)
        refused = False
        while True:
            if request.protocol == "http1" or (
                request.protocol == "auto" and self._chosen.get(key) == "http/1.1"
            ):
                try:
                    return await self._http1(service, request, body, None)
                except _NowHTTP2:
                    continue
            connection = await self._h2_or_h1(service, request, body)
            if isinstance(connection, H1Connection):
                return await self._http1(service, request, body, connection)
            try:
                return await send_request(connection, service, request, body)
            except StreamRefused as exc:
                if refused or not body.empty:
                    raise OriginError(
                        502, f"origin {service.text}: HTTP/2 request failed: {exc.reason}"
                    ) from None
                refused = True  # not processed by the origin: once more, on a new connection

    async def _http1(
        self,
        service: Service,
        request: OriginRequest,
        body: PeekedBody,
        fresh: H1Connection | None,
    ) -> OriginResponse:
        key, alpn = self.key(service, request), ALPN_FOR[request.protocol]

        async def connect() -> H1Connection:
            opened = await self.tls.connect(service, request, alpn)
            if opened.alpn == "h2":  # `auto` still offers h2: the origin may have changed
                self._adopt(key, service, opened)
                raise _NowHTTP2()
            self._chosen[key] = "http/1.1"
            return self._h1_connection(key, service, opened)

        return await self.h1.request(service, request, body, key=key, connect=connect, fresh=fresh)

    async def _h2_or_h1(
        self,
        service: Service,
        request: OriginRequest,
        body: PeekedBody,
    ) -> H2Session | H1Connection:
        """The origin's HTTP/2 session, opened if need be; or, when ALPN chose HTTP/1.1 on the
        connection just opened (``auto``), that connection, for this request."""
        key, alpn = self.key(service, request), ALPN_FOR[request.protocol]
        # As for HTTP/1.1 keep-alive: a connection idle long enough for the origin to be closing
        # it is not used for a request that cannot be replayed.
        keepalive = self.h1.keepalive_for(request)
        max_idle = keepalive if body.empty else min(keepalive, 1.0)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one handshake per origin at a time; other origins do not wait
            session = self._pick(key, max_idle)
            if session is not None:
                return session
            opened = await self.tls.connect(service, request, alpn)
            if opened.alpn == "h2":
                return self._adopt(key, service, opened)
            if request.protocol == "http2":
                opened.writer.close()
                chose = f"it chose {opened.alpn}" if opened.alpn else "no protocol was agreed"
                raise OriginError(
                    502,
                    f"origin {service.text} does not offer HTTP/2 by ALPN ({chose}); use "
                    "origin-protocol: auto or http1 for this origin",
                )
            self._chosen[key] = "http/1.1"
            return self._h1_connection(key, service, opened)

    def _adopt(self, key: TLSKey, service: Service, opened: TLSStream) -> H2Session:
        """Make a new connection whose ALPN chose ``h2`` this origin's HTTP/2 session."""
        self._chosen[key] = "h2"
        hop = dataclasses.replace(opened.hop, http_version="2")
        session = H2Session(opened.reader, opened.writer, service, hop)
        session.start()
        self._sessions.setdefault(key, []).append(session)
        self._log_up(key, service, "HTTP/2", hop)
        return session

    def _pick(self, key: TLSKey, max_idle: float) -> H2Session | None:
        """The origin's HTTP/2 connection for this request (:func:`~.connection_choice.choose`);
        None when a new one is wanted. Connections that cannot take requests, or idle too long
        for this one, are let go first."""
        sessions = self._sessions.get(key, [])
        for session in [s for s in sessions if not s.usable or s.idle_for() >= max_idle]:
            sessions.remove(session)
            session.retire()  # closes once its requests in flight are done
        return choose(sessions, lambda s: s.has_room, lambda s: len(s.streams))

    def _h1_connection(self, key: TLSKey, service: Service, opened: TLSStream) -> H1Connection:
        self._log_up(key, service, "HTTP/1.1", opened.hop)
        return H1Connection(key, opened.reader, opened.writer, hop=opened.hop)

    def _log_up(self, key: TLSKey, service: Service, protocol: str, hop: OriginHop) -> None:
        """INFO for a new origin, or one whose protocol or group changed; DEBUG otherwise."""
        seen = (protocol, hop.group)
        level = logging.DEBUG if self._logged.get(key) == seen else logging.INFO
        self._logged[key] = seen
        logger.log(
            level,
            "origin %s: %s over TLS on %s, key exchange %s (%s)",
            service.text,
            protocol,
            "a Unix socket" if service.is_unix else "TCP",
            hop.group or "unknown",
            "post-quantum" if hop.post_quantum else "classical",
        )
