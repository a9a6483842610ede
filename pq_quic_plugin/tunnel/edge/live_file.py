"""``<store>.live.json``: the running edge's live connections, for ``pq-tunnel list`` and
``info``.

``pq-tunnel list`` runs in another process and reads the tunnel store directly; live
connections exist only in the edge's memory, so the edge rewrites this file next to the store
whenever a connector registers or leaves, and every :data:`HEARTBEAT` seconds besides. An edge
that died without removing the file (SIGKILL, a crash, a power cut) must not leave its
connections listed as live: the reader ignores a file whose edge process is gone or whose last
heartbeat is older than :data:`STALE_AFTER`. The writer and the reader are both here so the
file's name and shape are defined once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..observer import Observer
from .registry import LiveConnection, Registry

__all__ = [
    "HEARTBEAT",
    "STALE_AFTER",
    "LiveFile",
    "LiveState",
    "live_file_path",
    "process_exists",
    "read_live_connections",
    "read_live_state",
]

#: How often the running edge rewrites the file even when nothing changed.
HEARTBEAT = 5.0
#: A file not rewritten for this long belongs to an edge that is gone (or hung).
STALE_AFTER = 30.0


def live_file_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".live.json")


@dataclass(frozen=True)
class LiveState:
    """What a running edge last published: who it is and its connections by tunnel ID (from
    the live file, or from a cluster's registry on Redis, which adds ``host`` and ``relay``)."""

    edge_id: str
    location: str
    pid: int
    updated: float
    tunnels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    host: str = ""
    relay: str = ""


class LiveFile(Observer):
    """Rewrites the file (atomically, mode 0600) on every registration change and every
    heartbeat; removed at edge stop."""

    def __init__(
        self, store_path: Path, registry: Registry, edge_id: str = "", location: str = ""
    ) -> None:
        self.path = live_file_path(store_path)
        self.registry = registry
        self.edge_id = edge_id
        self.location = location

    def write(self) -> None:
        tunnels: dict[str, list[dict[str, Any]]] = {}
        for live in self.registry:
            tunnels.setdefault(live.tunnel_id, []).append(live.describe())
        data = json.dumps(
            {
                "updated": time.time(),
                "pid": os.getpid(),
                "edge_id": self.edge_id,
                "location": self.location,
                "tunnels": tunnels,
            }
        )
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

    async def start(self) -> None:
        """Write the file (the Redis registry's start claims the edge's ID; a file has no
        one to claim it from)."""
        self.write()

    async def stop(self) -> None:
        self.clear()

    # -- Observer
    def connector_registered(self, live: LiveConnection) -> None:
        self.write()

    def connector_unregistered(self, live: LiveConnection) -> None:
        self.write()


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is a running process (on this machine, where the store is)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


def read_live_state(store_path: Path, now: float | None = None) -> LiveState | None:
    """The running edge's state, or ``None`` when there is no file or its edge is gone (its
    process no longer exists, or it has not written for :data:`STALE_AFTER` seconds)."""
    try:
        data = json.loads(live_file_path(store_path).read_text())
        updated, pid = float(data.get("updated", 0)), int(data.get("pid", 0))
        tunnels = {str(k): list(v) for k, v in dict(data.get("tunnels", {})).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if (now or time.time()) - updated > STALE_AFTER or not process_exists(pid):
        return None
    return LiveState(
        edge_id=str(data.get("edge_id", "")),
        location=str(data.get("location", "")),
        pid=pid,
        updated=updated,
        tunnels=tunnels,
    )


def read_live_connections(store_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Live connections by tunnel ID as the running edge last wrote them; ``{}`` if none or
    if that edge is gone."""
    state = read_live_state(store_path)
    return {} if state is None else state.tunnels
