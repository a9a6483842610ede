"""``<store>.live.json``: the running edge's live connections, for ``pq-tunnel list``.

``pq-tunnel list`` runs in another process and reads the tunnel store directly; live
connections exist only in the edge's memory, so the edge rewrites this file next to the store
whenever a connector registers or leaves. The writer and the reader are both here so the file's
name and shape are defined once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..observer import Observer
from .registry import LiveConnection, Registry

__all__ = ["LiveFile", "live_file_path", "read_live_connections"]

#: A file older than this is a leftover of an edge that died without cleaning up.
STALE_AFTER = 3600 * 24 * 365


def live_file_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".live.json")


class LiveFile(Observer):
    """Rewrites the file (atomically, mode 0600) on every registration change; removed at edge
    stop."""

    def __init__(self, store_path: Path, registry: Registry) -> None:
        self.path = live_file_path(store_path)
        self.registry = registry

    def write(self) -> None:
        tunnels: dict[str, list[dict[str, Any]]] = {}
        for live in self.registry:
            tunnels.setdefault(live.tunnel_id, []).append(live.describe())
        data = json.dumps({"updated": time.time(), "pid": os.getpid(), "tunnels": tunnels})
        tmp = self.path.with_suffix(".tmp")
        # It names tunnels, hostnames and connectors' addresses: as private as the store.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fd, 0o600)  # the umask can only remove bits; be exact anyway
            fh.write(data.encode())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    # -- Observer
    def connector_registered(self, live: LiveConnection) -> None:
        self.write()

    def connector_unregistered(self, live: LiveConnection) -> None:
        self.write()


def read_live_connections(store_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Live connections by tunnel ID as the running edge last wrote them; ``{}`` if none."""
    try:
        data = json.loads(live_file_path(store_path).read_text())
    except (OSError, ValueError):
        return {}
    if time.time() - float(data.get("updated", 0)) > STALE_AFTER:
        return {}
    return {k: list(v) for k, v in data.get("tunnels", {}).items()}
