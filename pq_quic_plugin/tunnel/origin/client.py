"""The connector's side toward the origin: one client, one path per kind of service.

* ``http://HOST:PORT[/base]``: HTTP/1.1 over TCP (:mod:`.h1`), kept-alive connections.
* ``https://HOST:PORT[/base]``: HTTP/3 with the connector's post-quantum policy (:mod:`.h3`).
* WebSockets over HTTP/1.1, TLS for ``https://`` services (:mod:`.websocket`).

Bodies stream both ways and nothing holds a whole body. Every failure to reach the origin or to
get a well-formed response head raises :class:`OriginError` with the status the visitor should
get (502, or 504 for timeouts) and a plain reason naming the origin URL.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ...policy import Policy
from ..config import Service, parse_service
from .h1 import H1Client
from .h3 import H3Client
from .request import OriginError, OriginRequest, OriginResponse, PeekedBody
from .websocket import OriginWebSocket, open_websocket

__all__ = ["OriginClient", "origin_service"]


@functools.lru_cache(maxsize=256)
def _parsed(url: str) -> Service:
    try:
        return parse_service(url)
    except ValueError as exc:
        raise OriginError(502, f"origin {url}: {exc}") from None


def origin_service(service: Service | str) -> Service:
    """The parsed service (URL text is parsed once and cached); only http/https reach origins."""
    parsed = _parsed(service) if isinstance(service, str) else service
    if parsed.kind not in ("http", "https"):
        raise OriginError(
            502,
            f"origin {parsed.text}: not an origin URL (use http://HOST:PORT or https://HOST:PORT)",
        )
    return parsed


class OriginClient:
    """One per connector: hands proxied requests to origins.

    ``policy`` is the post-quantum policy for ``https://`` (HTTP/3) origins: ``"prefer"`` (the
    default) or ``"require"`` (what the tunnel passes with ``--post-quantum``: only
    post-quantum groups are offered and a classical-only origin is refused, never used).
    ``connect_timeout`` bounds a TCP connect or a QUIC handshake; keep-alive HTTP/1.1
    connections idle longer than ``keepalive`` seconds are not reused.
    """

    def __init__(
        self,
        policy: str = "prefer",
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 4.0,
        max_idle_per_origin: int = 16,
    ) -> None:
        self.policy = Policy.parse(policy).value  # a bad policy fails here, not per request
        self.connect_timeout = connect_timeout
        self._h1 = H1Client(connect_timeout, keepalive, max_idle_per_origin)
        self._h3 = H3Client(self.policy, connect_timeout)

    @property
    def quic_sessions(self) -> int:
        """How many HTTP/3 connections to origins are open and pooled."""
        return self._h3.sessions

    async def aclose(self) -> None:
        """Close pooled connections (QUIC sessions and idle HTTP/1.1 connections)."""
        self._h1.close()
        await self._h3.aclose()

    async def request(self, request: OriginRequest) -> OriginResponse:
        """Send one request to the origin; return once the response head is in.

        Raises :class:`OriginError` (502/504). An exception raised by the request body (say the
        visitor went away) is not an origin error: the origin request is cancelled and that
        exception propagates unchanged, here or from the response body iterator.
        """
        service = origin_service(request.service)
        body = await PeekedBody.of(request.body)
        if service.kind == "https":
            return await self._h3.request(service, request, body)
        return await self._h1.request(service, request, body)

    async def websocket(
        self, request: OriginRequest, subprotocols: Sequence[str] = ()
    ) -> OriginWebSocket:
        """Open a WebSocket to the origin over HTTP/1.1 (wsproto).

        ``http://`` services get ``ws://``; ``https://`` services get TLS over TCP (``wss://``)
        on the same host and port, verified against ``request.ca_file`` (system roots when
        None) and ``request.server_name``. This hop's key exchange is Python OpenSSL's TLS and
        is reported as ``group=None, post_quantum=False`` even under the ``require`` policy
        (the origin sees that in the hop list). ``request.method`` and ``body`` are not used.

        Returns an :class:`OriginWebSocket` whose ``status`` is 101 when accepted or the
        origin's refusal status. Raises :class:`OriginError` when the origin cannot be
        reached or gives no valid handshake answer.
        """
        service = origin_service(request.service)
        return await open_websocket(service, request, subprotocols, self.connect_timeout)
