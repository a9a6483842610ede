"""The edge's ``edge.yaml``: :class:`EdgeConfig`, its two listener sections, and the loader.

Keys, defaults and flags are in ``fields.EDGE_FIELDS`` and its section tables; this module adds
the rules across keys: the connectors' certificate defaults to the public pair (both or
neither), the connectors' groups must suit their policy, and the two UDP listeners must not
collide.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...policy import GroupPolicy, Policy
from ..hostnames import HostPort
from .auth_pairs import check_pq_pair, connectors_pq_pair, ml_dsa_pairs
from .cluster import ClusterConfig
from .edge_fields import CLUSTER_FIELDS
from .fields import CONNECTORS_FIELDS, EDGE_FIELDS, PUBLIC_FIELDS
from .store_url import RedisURL
from .table import SectionRead, convert_overrides, read_section
from .yaml_reader import YamlReader

__all__ = [
    "ClusterConfig",
    "ConnectorListenerConfig",
    "EdgeConfig",
    "ListenerConfig",
    "PublicListenerConfig",
    "load_edge_config",
]


@dataclass(frozen=True)
class ListenerConfig:
    """The keys both listener sections start with, as ``edge_fields._listener`` declares them:
    where the listener binds and the certificate pair it presents."""

    bind: HostPort
    certfile: Path
    keyfile: Path
    pq_certfile: Path | None = None  # an ML-DSA pair next to the classical one (auth_pairs.py)
    pq_keyfile: Path | None = None

    def certificates(self) -> list[tuple[Path, Path]]:
        """The ML-DSA pair as ``configure_auth``/``ssl_context`` take extra pairs, or none."""
        return ml_dsa_pairs(self)


@dataclass(frozen=True)
class PublicListenerConfig(ListenerConfig):
    """The visitors' side: HTTP/3 on UDP and HTTP/1.1 + HTTP/2 on TCP, both on ``bind``."""

    pq: Policy = PUBLIC_FIELDS.dataclass_default("pq")  # PREFER or REQUIRE
    max_requests_per_visitor: int = PUBLIC_FIELDS.dataclass_default("max_requests_per_visitor")
    max_requests_per_tunnel: int = PUBLIC_FIELDS.dataclass_default("max_requests_per_tunnel")
    body_idle_timeout: float = PUBLIC_FIELDS.dataclass_default("body_idle_timeout")


@dataclass(frozen=True)
class ConnectorListenerConfig(ListenerConfig):
    """The QUIC (UDP) listener connectors dial; ``group_policy()`` gives what it accepts."""

    post_quantum: Policy = CONNECTORS_FIELDS.dataclass_default("post_quantum")
    groups: tuple[str, ...] | None = CONNECTORS_FIELDS.dataclass_default("groups")

    def group_policy(self) -> GroupPolicy:
        """What the listener accepts; ``None`` groups: every registered group, PQ first."""
        return GroupPolicy.server_default(self.post_quantum, self.groups)


@dataclass(frozen=True)
class EdgeConfig:
    """What ``pq-tunnel edge`` needs; ``source`` is the file read. ``store`` is a SQLite file
    or a Redis URL (shown with its password masked); ``cluster`` is set only with Redis."""

    public: PublicListenerConfig
    connectors: ConnectorListenerConfig
    store: Path | RedisURL
    cluster: ClusterConfig | None = EDGE_FIELDS.dataclass_default("cluster")
    metrics: HostPort = EDGE_FIELDS.dataclass_default("metrics")
    loglevel: str = EDGE_FIELDS.dataclass_default("loglevel")
    logfile: Path | None = EDGE_FIELDS.dataclass_default("logfile")
    log_format: str = EDGE_FIELDS.dataclass_default("log_format")
    grace_period: float = EDGE_FIELDS.dataclass_default("grace_period")
    edge_id: str = EDGE_FIELDS.dataclass_default("edge_id")
    location: str = EDGE_FIELDS.dataclass_default("location")
    source: Path | None = None

    def with_overrides(self, **flags: Any) -> EdgeConfig:
        """Apply ``pq-tunnel edge`` flags (attribute names; ``None``: not given), validated as
        in the file, errors naming the flag."""
        return dataclasses.replace(self, **convert_overrides(EDGE_FIELDS, flags))


PUBLIC_FIELDS.check_dataclass(PublicListenerConfig)
CONNECTORS_FIELDS.check_dataclass(ConnectorListenerConfig)
CLUSTER_FIELDS.check_dataclass(ClusterConfig)
EDGE_FIELDS.check_dataclass(EdgeConfig, extra=("source",))


def _connectors(
    r: YamlReader, section: SectionRead, public: PublicListenerConfig
) -> ConnectorListenerConfig:
    """The connectors' listener, with the rules that involve more than one key."""
    keys, values = section.keys, dict(section.values)
    if ("certfile" in keys) != ("keyfile" in keys):
        given, other = ("certfile", "keyfile") if "certfile" in keys else ("keyfile", "certfile")
        raise r.error(
            keys[given][0],
            f"connectors.{given}",
            f"give connectors.{other} too, or neither to reuse the public pair",
        )
    if "certfile" not in keys:
        values["certfile"], values["keyfile"] = public.certfile, public.keyfile
    connectors_pq_pair(r, keys, values, public)
    connectors = ConnectorListenerConfig(**values)
    try:
        connectors.group_policy()
    except ValueError as exc:
        name = "groups" if "groups" in keys else "post-quantum"
        raise r.error(keys[name][1], f"connectors.{name}", str(exc)) from None
    a, b = public.bind, connectors.bind
    if a.port == b.port != 0 and (
        a.host == b.host or "0.0.0.0" in (a.host, b.host) or "::" in (a.host, b.host)
    ):
        raise r.error(
            keys["bind"][1],
            "connectors.bind",
            f"{b} clashes with public.bind {a}: both listen on UDP; use another port",
        )
    return connectors


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Read and validate an ``edge.yaml``; relative paths are against its directory."""
    r = YamlReader(Path(path))
    values = read_section(r, r.compose(), "", EDGE_FIELDS).values
    check_pq_pair(r, values["public"].keys, "public")
    public = PublicListenerConfig(**values["public"].values)
    values["connectors"] = _connectors(r, values["connectors"], public)
    values["public"] = public
    if values["cluster"] is not None:
        values["cluster"] = ClusterConfig(**values["cluster"].values)
    return EdgeConfig(**values, source=r.path)
