"""HTTP/3 to ``https://`` origins with the connector's post-quantum policy, for rules that say
``origin-protocol: http3`` (other ``https://`` rules go over TCP, :mod:`.https`).

One QUIC connection per origin (and verification settings), shared by all requests and reopened
when it closed; another when the origin's stream limit is used up by requests still in flight
(long polls, event streams), so that no request waits for other visitors' requests to end
(:mod:`.connection_choice`, the rule the HTTP/2 pool follows too). The hop reports the
negotiated group, so it is post-quantum when the origin runs ``hypercorn-pq --pq``. Upload
backpressure comes from the stream's send buffer, download backpressure from QUIC flow control
granted as the caller reads (:mod:`pq_quic_plugin.http3`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ...http3 import HTTP3Error, HTTP3Session, client_configuration, open_session
from ..config import Service
from ..headers import forwardable
from ..hostnames import format_hostport
from .connection_choice import choose
from .errors import OriginError, plain
from .framing import wire_headers
from .request import OriginHop, OriginRequest, OriginResponse, PeekedBody

__all__ = ["H3Client"]

logger = logging.getLogger("pq_quic_plugin.tunnel.origin")

#: What a pooled session is keyed by: host, port, CA file, server name, whether the
#: certificate is verified, the key-exchange policy.
SessionKey = tuple[str, int, str | None, str | None, bool, str]


@dataclass
class _Session:
    cm: Any
    session: HTTP3Session


class H3Body(AsyncIterator[bytes]):
    """Turns HTTP/3 stream failures into :class:`OriginError` for the caller."""

    def __init__(self, chunks: AsyncIterator[bytes], service: Service) -> None:
        self._chunks, self._service = chunks, service

    def __aiter__(self) -> H3Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except HTTP3Error as exc:
            raise OriginError(
                502, f"origin {self._service.text} broke off the response body: {exc}"
            ) from None

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


class H3Client:
    """Requests to ``https://`` services (``origin-protocol: http3``) over pooled HTTP/3
    sessions.

    ``policy`` is ``"prefer"`` or ``"require"`` (only post-quantum groups are offered and a
    classical-only origin is refused, never used).
    """

    def __init__(self, policy: str, connect_timeout: float) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        #: Per origin, its connections, oldest first (new requests fill the oldest).
        self._sessions: dict[SessionKey, list[_Session]] = {}
        self._locks: dict[SessionKey, asyncio.Lock] = {}

    @property
    def sessions(self) -> int:
        """How many QUIC connections to origins are pooled."""
        return sum(1 for es in self._sessions.values() for e in es if not e.session.closed)

    @property
    def streams(self) -> int:
        """How many requests are in flight on those connections."""
        return sum(e.session.requests for es in self._sessions.values() for e in es)

    async def aclose(self) -> None:
        sessions = [entry for entries in self._sessions.values() for entry in entries]
        self._sessions = {}
        for entry in sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(entry.cm.__aexit__(None, None, None), 5)

    async def _session(self, service: Service, request: OriginRequest) -> HTTP3Session:
        ca, sni = request.ca_file, request.server_name
        policy = request.policy or self.policy
        key: SessionKey = (service.host, service.port, ca, sni, request.verify, policy)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one handshake per origin at a time; other origins do not wait
            entries = self._sessions.setdefault(key, [])
            for entry in [e for e in entries if e.session.closed]:
                entries.remove(entry)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(entry.cm.__aexit__(None, None, None), 1)
            chosen = choose(entries, lambda e: e.session.has_room, lambda e: e.session.requests)
            if chosen is not None:
                return chosen.session  # full: aioquic sends it when the origin allows a stream
            session = await self._open(service, request, key)
            group = session.group
            logger.info(
                "origin %s: HTTP/3 connection up, key exchange %s (%s)",
                service.text,
                group.name if group else "unknown",
                "post-quantum" if group is not None and group.post_quantum else "classical",
            )
            return session

    async def _open(
        self, service: Service, request: OriginRequest, key: SessionKey
    ) -> HTTP3Session:
        ca = request.ca_file if request.verify else None
        hostport = format_hostport(service.host, service.port)
        limit = self.connect_timeout if request.connect_timeout is None else request.connect_timeout
        where = f"{hostport} (UDP)"
        try:
            config = client_configuration(
                key[5],
                cafile=ca,
                server_name=request.server_name or service.host,
                verify=request.verify,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise OriginError(
                502, f"origin {service.text}: cannot use the origin CA file {ca}: {plain(exc)}"
            ) from None
        try:
            cm = open_session(f"https://{hostport}", config)
            session = await asyncio.wait_for(cm.__aenter__(), limit)
        except asyncio.TimeoutError:
            raise OriginError(
                504,
                f"origin {service.text}: no answer to the QUIC handshake from {where} within "
                f"{limit:g}s (connectTimeout; is it serving HTTP/3 there?)",
            ) from None
        except HTTP3Error as exc:
            raise OriginError(
                502, f"origin {service.text}: QUIC handshake with {where} failed: {exc}"
            ) from None
        except (ConnectionError, OSError, ssl.SSLError, ValueError) as exc:
            raise OriginError(
                502,
                f"origin {service.text}: cannot open an HTTP/3 connection to {where}: {plain(exc)}",
            ) from None
        self._sessions.setdefault(key, []).append(_Session(cm, session))
        return session

    async def request(
        self, service: Service, request: OriginRequest, body: PeekedBody
    ) -> OriginResponse:
        target = request.target(service)
        timeout = request.timeout
        for attempt in (1, 2):
            session = await self._session(service, request)
            hop = OriginHop.over(
                "quic", session.group, http_version="3", connection=session.protocol
            )
            h3_headers = wire_headers(request.headers_to_send(hop, service), lower=True)
            send_body = None if body.empty else body.chunks()
            try:
                response = await session.open_stream(
                    request.method, target, h3_headers, send_body, timeout=timeout
                )
            except asyncio.TimeoutError:
                raise OriginError(
                    504,
                    f"origin {service.text} did not answer {request.method} {target} within "
                    f"{timeout:g}s",
                ) from None
            except HTTP3Error as exc:
                if attempt == 1 and session.closed and send_body is None:
                    continue  # the pooled connection died under us: one fresh try
                raise OriginError(
                    502, f"origin {service.text}: HTTP/3 request failed: {exc}"
                ) from None
            except ConnectionError as exc:
                raise OriginError(
                    502, f"origin {service.text}: HTTP/3 request failed: {plain(exc)}"
                ) from None
            headers = forwardable(
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
            )
            return OriginResponse(response.status, headers, H3Body(response.body, service), hop)
        raise AssertionError("unreachable")
