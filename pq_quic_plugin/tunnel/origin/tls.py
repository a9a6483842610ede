"""TLS over TCP to ``https://`` origins, with the connector's post-quantum policy.

Every TCP path to an ``https://`` origin (HTTP/1.1, HTTP/2, WebSocket) connects here, so they
verify the origin the same way (the rule's ``origin-ca-file`` and ``origin-server-name``), offer
the same key-exchange groups (``pq_quic_plugin.ssl_context``: ``require`` offers post-quantum
groups only and never falls back) and report the hop the same way: its group read back from the
TLS object, not assumed.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from dataclasses import dataclass

from ... import negotiated_group, ssl_context
from ...policy import Policy
from ..config import Service
from .errors import OriginError, plain
from .request import OriginHop, OriginRequest
from .sockets import READ_CHUNK, connect_limit, origin_socket

__all__ = ["ALPN_FOR", "TLSConnector", "TLSStream", "handshake_failure", "tls_hop"]

#: What each ``origin-protocol`` offers by ALPN, best first.
ALPN_FOR: dict[str, tuple[str, ...]] = {
    "auto": ("h2", "http/1.1"),
    "http2": ("h2",),
    "http1": ("http/1.1",),
}


@dataclass
class TLSStream:
    """A TLS connection to an origin, its handshake done: the streams, what ALPN chose and
    the hop as it will be reported for HTTP/1.1 (HTTP/2 changes only ``http_version``)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    alpn: str | None
    hop: OriginHop


def tls_hop(writer: asyncio.StreamWriter, http_version: str, transport: str = "tcp") -> OriginHop:
    """The connector-origin hop of this TLS connection: the group the handshake agreed on;
    ``transport`` is ``tcp`` or ``unix``."""
    return OriginHop.over(
        transport, negotiated_group(writer), http_version=http_version, tls=True, connection=writer
    )


#: What a client context is built from: CA file, ALPN list, policy, whether to verify.
ContextKey = tuple[str | None, tuple[str, ...], str, bool]


class TLSConnector:
    """Opens TLS connections to origins; one client context per (CA file, ALPN list, policy,
    verification).

    A context is built once (building one loads the CA file and sets up OpenSSL) and reused by
    every connection with the same verification settings; a CA file that cannot be loaded is
    an :class:`OriginError` for the request, tried again on the next one. ``policy`` and
    ``connect_timeout`` are the client's; a request's ``policy`` (a rule's ``postQuantum``),
    ``connect_timeout`` and ``tls_timeout`` replace them for that request.
    """

    def __init__(self, policy: str, connect_timeout: float, tls_timeout: float = 10.0) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.tls_timeout = tls_timeout
        self._contexts: dict[ContextKey, ssl.SSLContext] = {}

    def context(
        self,
        service: Service,
        ca_file: str | None,
        alpn: tuple[str, ...],
        policy: str | None = None,
        verify: bool = True,
    ) -> ssl.SSLContext:
        chosen = policy or self.policy
        key = (ca_file if verify else None, alpn, chosen, verify)
        context = self._contexts.get(key)
        if context is None:
            try:
                context = ssl_context(
                    chosen,
                    server_side=False,
                    cafile=ca_file if verify else None,
                    alpn=alpn,
                    verify=verify,
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise OriginError(
                    502,
                    f"origin {service.text}: cannot use the origin CA file {ca_file}: {plain(exc)}",
                ) from None
            self._contexts[key] = context
        return context

    async def connect(
        self, service: Service, request: OriginRequest, alpn: tuple[str, ...]
    ) -> TLSStream:
        """A verified TLS connection to the origin offering ``alpn``; failures are an
        :class:`OriginError` that names the origin and says why, told apart: no TCP
        connection, a certificate that did not verify, a post-quantum handshake the origin
        refused (by an alert, or by dropping the connection as TLS stacks without ML-KEM do
        under a post-quantum-only offer)."""
        context = self.context(service, request.ca_file, alpn, request.policy, request.verify)
        sock = await origin_socket(service, connect_limit(request, self.connect_timeout))
        limit = request.tls_timeout if request.tls_timeout is not None else self.tls_timeout
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    sock=sock,
                    ssl=context,
                    server_hostname=request.server_name or service.host,
                    limit=READ_CHUNK,
                ),
                limit,
            )
        except asyncio.TimeoutError:
            sock.close()
            raise OriginError(
                504,
                f"origin {service.text}: no TLS handshake with {service.where} within {limit:g}s "
                "(tlsTimeout)",
            ) from None
        except OSError as exc:  # ssl.SSLError included
            sock.close()
            raise OriginError(502, handshake_failure(service, exc, context)) from None
        tls = writer.get_extra_info("ssl_object")
        chosen = tls.selected_alpn_protocol() if tls is not None else None
        transport = "unix" if service.is_unix else "tcp"
        return TLSStream(reader, writer, chosen, tls_hop(writer, "1.1", transport))


def handshake_failure(service: Service, exc: OSError, context: ssl.SSLContext) -> str:
    """The sentence for a failed TLS handshake with ``service``.

    A refused post-quantum handshake keeps the TLS layer's own explanation (what was offered,
    what to change); a connection dropped during the handshake under ``require`` is explained
    the same way, since that is how a TLS stack without ML-KEM (OpenSSL before 3.5, Python's
    ``ssl``) answers an offer of post-quantum groups only; a verification failure says what did
    not verify; anything else gives OpenSSL's reason.
    """
    head = f"origin {service.text}: TLS handshake with {service.where} failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "certificate verify failed"
        return f"{head}: its certificate did not verify: {detail}"
    text = exc.strerror if isinstance(exc.strerror, str) else str(exc)
    binding = sys.modules.get("pq_quic_plugin.tls_binding")  # not loaded: no such error exists
    if binding is not None and isinstance(exc, binding.PostQuantumRefusedError):
        return f"{head}: {text}"
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
        return f"{head}: {exc.reason or text}"
    if isinstance(exc, ConnectionResetError):
        closed = f"{head}: the origin reset the connection during the handshake"
    elif isinstance(exc, ssl.SSLEOFError) or not exc.strerror:
        closed = f"{head}: the origin closed the connection during the handshake"
    else:
        closed = f"{head}: the connection failed during the handshake: {plain(exc)}"
    group_policy = getattr(context, "group_policy", None)
    if group_policy is not None and group_policy.policy is Policy.REQUIRE:
        return (
            f"{closed}. The connector offered only post-quantum key exchange "
            f"[{', '.join(group_policy.names)}] because it runs with --post-quantum (or the "
            "rule says originRequest: postQuantum: require); an origin "
            "whose TLS cannot do that (OpenSSL before 3.5, Python's ssl module, a classical "
            "group list) refuses the handshake this way. Serve the origin with post-quantum "
            "TLS (e.g. hypercorn-pq --pq), or run the connector without --post-quantum (or "
            "set postQuantum: prefer for this origin). No classical connection was made"
        )
    return closed
