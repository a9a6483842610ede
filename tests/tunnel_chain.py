"""Test access to the loopback tunnel chain (origin, edge, connector as real processes)."""

from pathlib import Path

from tools.loopback import (  # noqa: F401
    TUNNEL_HOST,
    Chain,
    running_chain,
    start,
    start_edge,
    tunnel_cli,
    write_edge_config,
)
from tools.processes import free_port


def start_classical_edge(chain: Chain) -> tuple[int, int, int]:
    """A second edge beside ``chain``'s, on its store, whose connector listener accepts only
    classical groups (a --post-quantum connector is refused there); it stops with the chain.
    Returns its public, connector and metrics ports."""
    public, connectors, metrics = (free_port() for _ in range(3))
    config = write_edge_config(
        chain.dir,
        chain.pki,
        public,
        connectors,
        metrics,
        connector_policy="prefer",
        groups=["x25519", "secp256r1"],
        name="classical-edge.yaml",
    )
    chain.extra.append(start_edge(config, chain.dir / "edge2.log", chain.dir))
    return public, connectors, metrics


def origin_rule(port: int, ca_file: Path, hostname: str | None = None) -> dict[str, str]:
    """An ingress rule to the HTTPS origin on 127.0.0.1:``port`` (a devcert ``localhost``
    certificate issued by ``ca_file``); without ``hostname``, every hostname the edge routes
    to the tunnel, so one added later reaches the origin too."""
    rule = {} if hostname is None else {"hostname": hostname}
    return rule | {
        "service": f"https://127.0.0.1:{port}",
        "origin-ca-file": str(ca_file),
        "origin-server-name": "localhost",
    }


def tunnel_host_rules(service: str) -> list[dict[str, str]]:
    """Ingress that sends :data:`TUNNEL_HOST` to ``service`` and any other host a 404."""
    return [{"hostname": TUNNEL_HOST, "service": service}, {"service": "http_status:404"}]
