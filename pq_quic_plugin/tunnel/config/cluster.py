"""``cluster:`` in ``edge.yaml``: what an edge needs to be one of several sharing a Redis store.

The relay between edges (hop 2) comes later (docs/cluster.md); its secret file is checked
now, when the file is read, so an edge never starts with a cluster secret that others could
read or that is too short to authenticate anything: at least :data:`MIN_SECRET_BYTES` bytes,
readable by its owner only. The secret itself is not kept in the configuration (which is
printed and logged in places); :func:`read_cluster_secret` reads it when it is needed.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..hostnames import HostPort
from .table import ValueKind
from .yaml_reader import YamlReader

__all__ = [
    "DEFAULT_REGISTRY_TTL",
    "MIN_SECRET_BYTES",
    "ClusterConfig",
    "SecretFileValue",
    "check_secret_file",
    "read_cluster_secret",
]

MIN_SECRET_BYTES = 32
#: How long an edge's entries in the live registry outlive its last heartbeat.
DEFAULT_REGISTRY_TTL = 15.0


@dataclass(frozen=True)
class ClusterConfig:
    """This edge's place in a cluster: where it takes relayed requests (phase 2), the file of
    the secret the cluster's edges share, and how long its registry entries live."""

    relay: HostPort
    secret_file: Path
    registry_ttl: float = DEFAULT_REGISTRY_TTL
    #: The transport of this edge's links to its peers: ``auto`` (QUIC, then HTTP/2), ``quic``
    #: or ``http2`` (the relay listener takes both).
    protocol: str = "auto"
    #: A CA the peers' relay certificates must chain to (checked for the relay address's host,
    #: or ``server_name``); None: the proofs are bound to the certificate's fingerprint only.
    ca_file: Path | None = None
    server_name: str | None = None


def check_secret_file(path: Path) -> None:
    """``ValueError`` unless ``path`` is a regular file of at least :data:`MIN_SECRET_BYTES`
    bytes that only its owner can read or write (mode 0600 or 0400)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ValueError(f"cannot read the cluster secret {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"the cluster secret {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ValueError(
            f"the cluster secret {path} is readable or writable by others (mode {mode:04o}); "
            f"it authenticates edges to each other: chmod 600 {path}"
        )
    if info.st_size < MIN_SECRET_BYTES:
        raise ValueError(
            f"the cluster secret {path} has {info.st_size} bytes; it needs at least "
            f"{MIN_SECRET_BYTES} random bytes, e.g. head -c 32 /dev/urandom > {path}"
        )


def read_cluster_secret(path: Path) -> bytes:
    """The secret, checked again (the file may have changed since the config was read)."""
    check_secret_file(path)
    with open(path, "rb") as fh:
        return fh.read()


class SecretFileValue(ValueKind):
    """A path (relative to the file) to a private file of random bytes."""

    doc = "path (mode 0600, >= 32 bytes)"
    metavar = "FILE"

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> Path:
        path = r.path_value(node, key, must_exist=True)
        r.convert(node, key, lambda _: check_secret_file(path))
        return path

    def convert(self, value: Any) -> Path:
        path = Path(value)
        check_secret_file(path)
        return path
