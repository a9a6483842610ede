"""The tunnel benchmark's paths from its client to the origin, and the client for each.

Each tunnel has a direct path over its own transport beside it (HTTP/3 for pq-tunnel over QUIC,
TLS/TCP for pq-tunnel over http2 and ``ssh -R``), so that a ratio prices the tunnel and not
HTTP/3 against HTTP/1.1. pq-tunnel over http2 is a second tunnel on the same edge and origin
(:data:`H2_HOST`), its connector with ``protocol: http2``: TCP on every hop.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from tools.loopback import Chain

DIRECT_H3, TUNNEL = "direct HTTP/3", "pq-tunnel"
DIRECT_TCP, SSH = "direct TCP", "ssh -R"
TUNNEL_H2 = "pq-tunnel http2"
#: The http2 tunnel's hostname; the client reaches it through 127.0.0.1 with this Host header.
H2_HOST = "h2.localhost"
SMALL = "/pid"  # the example app's smallest response: {"pid":N}, a dozen bytes of JSON


@dataclass
class Route:
    """One way from the benchmark's client to the origin."""

    label: str
    transport: str  # "h3" or "tcp"
    url: str
    pids: list[int]  # the path's own processes (CPU per request is theirs)
    note: str
    client: Any = field(default=None, repr=False)  # QuicConfiguration or ssl.SSLContext
    headers: dict[str, str] | None = None  # sent with every request (TCP routes)
    roles: list[str] = field(default_factory=list)  # what each of ``pids`` is, in order

    def named_pids(self) -> dict[str, int]:
        """The path's processes by role (``origin``, ``edge``, ``connector``, ``sshd``...)."""
        names = self.roles or [f"pid{i}" for i in range(len(self.pids))]
        return dict(zip(names, self.pids, strict=False))


def build_routes(
    chain: Chain, ssh: dict[str, Any] | None, h2_connector: int | None = None
) -> list[Route]:
    """The paths; ``h2_connector`` is the PID of the http2 tunnel's connector, if running."""
    from pq_quic_plugin.http3 import client_configuration

    ca = str(chain.pki.ca_cert)
    origin = [chain.origin.proc.pid] if chain.origin else []
    tunnel = [*origin, chain.edge.proc.pid] + (
        [chain.connector.proc.pid] if chain.connector else []
    )
    routes = [
        Route(
            DIRECT_H3,
            "h3",
            f"https://127.0.0.1:{chain.origin_port}",
            origin,
            "HTTP/3 to hypercorn-pq --pq, X25519MLKEM768",
        ),
        Route(
            TUNNEL,
            "h3",
            chain.url,
            tunnel,
            "HTTP/3 to the edge, edge -> connector -> origin, X25519MLKEM768 on every hop",
        ),
        Route(
            DIRECT_TCP,
            "tcp",
            f"https://127.0.0.1:{chain.origin_port}",
            origin,
            "HTTPS/1.1 keep-alive (httpx) to the origin's TCP listener",
        ),
    ]
    if h2_connector is not None:
        routes.append(
            Route(
                TUNNEL_H2,
                "tcp",
                f"https://127.0.0.1:{chain.public_port}",
                [*origin, chain.edge.proc.pid, h2_connector],
                "HTTPS/1.1 to the edge, edge -> connector over HTTP/2 on TLS/TCP, connector -> "
                "origin HTTP/2 on TLS/TCP; X25519MLKEM768 on every hop",
                headers={"host": H2_HOST},
            )
        )
    if ssh is not None:
        routes.append(
            Route(
                SSH,
                "tcp",
                f"https://127.0.0.1:{ssh['port']}",
                [*origin, *ssh["pids"]],
                f"the same HTTPS/1.1 inside ssh -R ({ssh['kex']}, {ssh['cipher']})",
            )
        )
    for r in routes:
        r.roles = _roles(r, chain)
        r.client = (
            client_configuration("require", cafile=ca)
            if r.transport == "h3"
            else ssl.create_default_context(cafile=ca)
        )
    return routes


def _roles(route: Route, chain: Chain) -> list[str]:
    """Names for the route's processes, in the order :func:`build_routes` lists them."""
    names = ["origin"] if chain.origin else []
    if route.label in (TUNNEL, TUNNEL_H2):
        names += ["edge", "connector"]
    elif route.label == SSH:
        names += ["sshd", "ssh"]  # ssh_tunnel's pids: the server, then the client
    return names[: len(route.pids)]
