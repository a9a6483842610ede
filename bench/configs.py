"""Matching aioquic client and server configurations, with or without the plugin.

Every comparison in the benchmarks is "the same pair of endpoints, one thing changed" (policy,
groups, key shares, certificate chain), so the pairs are built in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .certs import CertChain

ALPN = "pq-bench"


def aioquic_configs(
    chain: CertChain,
    client_policy: str | None,
    server_policy: str | None,
    client_groups: Sequence[str] | None = None,
    server_groups: Sequence[str] | None = None,
    key_shares: Sequence[str] | None = None,
    alpn: str = ALPN,
) -> tuple[Any, Any]:
    """A (client, server) pair of aioquic configurations; ``None``/"off" policy = stock aioquic."""
    import ssl

    from aioquic.quic.configuration import QuicConfiguration

    from pq_quic_plugin import configure

    client = QuicConfiguration(is_client=True, alpn_protocols=[alpn], server_name="localhost")
    client.load_verify_locations(str(chain.ca))
    client.verify_mode = ssl.CERT_REQUIRED
    server = QuicConfiguration(is_client=False, alpn_protocols=[alpn])
    server.load_cert_chain(str(chain.cert), str(chain.key))
    if client_policy not in (None, "off"):
        configure(client, client_policy, groups=client_groups, key_shares=key_shares)
    if server_policy not in (None, "off"):
        configure(server, server_policy, groups=server_groups)
    return client, server
