"""The connector's side toward the origin: one client, one path per kind of service.

* ``http://HOST:PORT[/base]``: HTTP/1.1 over TCP (:mod:`.h1`), kept-alive connections.
* ``https://HOST:PORT[/base]``: TLS over TCP with the connector's post-quantum policy
  (:mod:`.https`): HTTP/2 (:mod:`.h2`) when the origin offers it by ALPN, else HTTP/1.1; or,
  with ``origin-protocol: http3``, HTTP/3 over QUIC (:mod:`.h3`).
* ``unix:/path`` and ``unix+tls:/path``: the same two over a Unix socket (:mod:`.sockets`).
* WebSockets over HTTP/1.1, TLS on TCP for ``https://`` services (:mod:`.websocket`).

A request carries its rule's ``originRequest`` settings (timeouts, verification, keep-alive,
the hop's key-exchange policy); the client's own settings apply where a rule gives none.

Bodies stream both ways and nothing holds a whole body. Every failure to reach the origin or to
get a well-formed response head raises :class:`OriginError` with the status the visitor should
get (502, 504 for timeouts, 400 for a request that cannot be sent as it is) and a plain reason
naming the origin URL, for the log (:attr:`OriginError.public` is what a visitor may read).
Framing is checked on the way for every protocol (:mod:`.framing`): the request's headers and
body length before they are sent, the response's body against its head.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence

from ...policy import Policy
from ..config import Service, parse_service
from ..config.ingress import check_origin_protocol
from ..config.origin_request import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_CONNECTIONS,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_TLS_TIMEOUT,
)
from .framing import FramedBody, LengthChecked
from .h1 import H1Client
from .h3 import H3Client
from .https import HttpsClient
from .request import OriginError, OriginRequest, OriginResponse, PeekedBody
from .tls import TLSConnector
from .websocket import MAX_MESSAGE, OriginWebSocket, open_websocket

__all__ = ["OriginClient", "origin_service"]


async def _chunks(body: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    """The request body's chunks (none when there is no body)."""
    if body is not None:
        async for chunk in body:
            yield chunk


@functools.lru_cache(maxsize=256)
def _parsed(url: str) -> Service:
    try:
        return parse_service(url)
    except ValueError as exc:
        raise OriginError(502, f"origin {url}: {exc}") from None


def origin_service(service: Service | str) -> Service:
    """The parsed service (URL text is parsed once and cached); only http/https and the Unix
    socket services reach origins."""
    parsed = _parsed(service) if isinstance(service, str) else service
    if not parsed.is_origin:
        raise OriginError(
            502,
            f"origin {parsed.text}: not an origin URL (use http://HOST:PORT, https://HOST:PORT, "
            "unix:/PATH or unix+tls:/PATH)",
        )
    return parsed


class OriginClient:
    """One per connector: hands proxied requests to origins.

    ``policy`` is the post-quantum policy for ``https://`` origins, over TCP and over QUIC:
    ``"prefer"`` (the default) or ``"require"`` (what the tunnel passes with
    ``--post-quantum``: only post-quantum groups are offered and a classical-only origin is
    refused, never used). ``connect_timeout`` bounds a TCP (or Unix socket) connect, or a
    QUIC handshake, and ``tls_timeout`` a TLS handshake on TCP; keep-alive HTTP/1.1
    connections, and HTTP/2 connections without a request, idle longer than ``keepalive``
    seconds are not reused, and at most ``max_idle_per_origin`` idle HTTP/1.1 connections are
    kept per origin. A request's own settings (its rule's ``originRequest``) win over these.
    """

    def __init__(
        self,
        policy: str = "prefer",
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        tls_timeout: float = DEFAULT_TLS_TIMEOUT,
        keepalive: float = DEFAULT_KEEPALIVE_TIMEOUT,
        max_idle_per_origin: int = DEFAULT_KEEPALIVE_CONNECTIONS,
    ) -> None:
        self.policy = Policy.parse(policy).value  # a bad policy fails here, not per request
        self.connect_timeout = connect_timeout
        self._tls = TLSConnector(self.policy, connect_timeout, tls_timeout)
        self._h1 = H1Client(connect_timeout, keepalive, max_idle_per_origin)
        self._https = HttpsClient(self._tls, self._h1)
        self._h3 = H3Client(self.policy, connect_timeout)

    @property
    def quic_sessions(self) -> int:
        """How many HTTP/3 connections to origins are open and pooled."""
        return self._h3.sessions

    @property
    def quic_streams(self) -> int:
        """How many requests are in flight on those HTTP/3 connections."""
        return self._h3.streams

    @property
    def h2_sessions(self) -> int:
        """How many HTTP/2 connections to origins are open and pooled."""
        return self._https.sessions

    @property
    def h2_streams(self) -> int:
        """How many requests are open on those HTTP/2 connections."""
        return self._https.streams

    async def aclose(self) -> None:
        """Close pooled connections (HTTP/2 and QUIC sessions, idle HTTP/1.1 connections)."""
        self._h1.close()
        await self._https.aclose()
        await self._h3.aclose()

    async def request(self, request: OriginRequest) -> OriginResponse:
        """Send one request to the origin; return once the response head is in.

        Raises :class:`OriginError` (502/504). An exception raised by the request body (say the
        visitor went away) is not an origin error: the origin request is cancelled and that
        exception propagates unchanged, here or from the response body iterator.
        """
        service = origin_service(request.service)
        try:
            check_origin_protocol(request.protocol, service)
        except ValueError as exc:
            raise OriginError(502, f"origin {service.text}: origin-protocol: {exc}") from None
        if request.policy is not None:
            Policy.parse(request.policy)  # a typo is a programming error, found at once
        body = await PeekedBody.of(LengthChecked(_chunks(request.body), request.body_length))
        if not service.tls:
            response = await self._h1.request(service, request, body)
        elif request.protocol == "http3":
            response = await self._h3.request(service, request, body)
        else:
            response = await self._https.request(service, request, body)
        # Every protocol's response leaves through here: one framing rule for all of them.
        try:
            response.body = FramedBody(
                response.body, request.method, response.status, response.headers, service
            )
        except OriginError:
            await response.aclose()
            raise
        return response

    async def websocket(
        self,
        request: OriginRequest,
        subprotocols: Sequence[str] = (),
        max_message: int = MAX_MESSAGE,
    ) -> OriginWebSocket:
        """Open a WebSocket to the origin over HTTP/1.1 (wsproto).

        ``http://`` (and ``unix:``) services get ``ws://``; ``https://`` (and ``unix+tls:``)
        services get TLS (``wss://``) on the same address, whatever the rule's
        ``origin-protocol``, with the same
        post-quantum policy and verification (``request.ca_file``, system roots when None, and
        ``request.server_name``) as HTTP requests, and the hop reports the group it agreed on.
        ``request.method`` and ``body`` are not used.

        Returns an :class:`OriginWebSocket` whose ``status`` is 101 when accepted or the
        origin's refusal status. Raises :class:`OriginError` when the origin cannot be
        reached or gives no valid handshake answer. A message from the origin over
        ``max_message`` bytes closes the WebSocket with 1009 ("message too big").
        """
        service = origin_service(request.service)
        return await open_websocket(
            service, request, subprotocols, self.connect_timeout, self._tls, max_message
        )
