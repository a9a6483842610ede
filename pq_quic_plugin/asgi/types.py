"""The ASGI shapes and scope vocabulary every part of the package shares.

Deliberately loose callables: servers, Starlette, FastAPI and plain functions spell the ASGI
callables differently (dict vs MutableMapping messages), and our middleware and apps must accept
all of them. The hop vocabulary lives here, not in the tunnel, because the middleware reads it
and the tunnel writes it: one definition keeps the two from drifting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypedDict

__all__ = ["ASGIApp", "HOPS_HEADER", "Hop", "Message", "Receive", "Scope", "Send", "lifespan"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[Any]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[Any]]

#: Set by pq-tunnel's connector towards the origin (a JSON list of :class:`Hop`); the edge strips
#: it from visitors' requests, and the middleware believes it only from ``trust_hops_from``.
HOPS_HEADER = "pq-tunnel-hops"


class _HopRequired(TypedDict):
    hop: str  # "visitor-edge", "edge-connector", "connector-origin"
    transport: str  # "quic" or "tcp"
    group: str | None
    post_quantum: bool


class Hop(_HopRequired, total=False):
    """One hop of a tunnelled request, as listed in ``pq-tunnel-hops`` and the scope."""

    tls: bool  # TLS over TCP (the connector-origin hop to an https:// service)
    http_version: str  # "1.1", "2", "3": what ran over the hop
    codepoint: int
    signature_scheme: str | None  # the hop's CertificateVerify scheme, e.g. "ML-DSA-65"
    post_quantum_auth: bool  # ML-DSA signature on an all-ML-DSA chain (docs/auth.md)


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI lifespan scope for an app with nothing to start or stop.

    Servers (hypercorn) send lifespan events to every app; one that does not answer them makes
    the server log a warning at each start, so every app of ours delegates here.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
