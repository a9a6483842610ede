"""Test access to the loopback tunnel chain (origin, edge, connector as real processes)."""

from tools.loopback import (  # noqa: F401
    TUNNEL_HOST,
    Chain,
    running_chain,
    start,
    start_edge,
    tunnel_cli,
    write_edge_config,
)
