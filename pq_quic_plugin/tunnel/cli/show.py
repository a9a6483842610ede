"""``pq-tunnel list`` and ``pq-tunnel info``: what the store and the running edge know.

Both read the tunnel store and the edge's live file (``edge/live_file.py``); a live file whose
edge is gone is ignored, so a dead edge's connections are never shown as live. Tables are
aligned to their widest cell, as ``cloudflared tunnel list`` prints them; ``--json`` gives the
same facts for scripts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ..config import ConfigError
from .common import fail, store_path

__all__ = ["cmd_info", "cmd_list", "format_table"]


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines, every column as wide as its widest cell (the first row is the
    header); the last column is not padded, so lines carry no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1]
        if len(row) > 1
        else row[0]
        for row in rows
    ]


def _when(moment: datetime | float) -> str:
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _connections_summary(conns: list[dict[str, Any]]) -> str:
    return ", ".join(f"#{c.get('conn_index')} {c.get('group') or '?'}" for c in conns) or "-"


def cmd_list(args: argparse.Namespace) -> int:
    from ..edge.live_file import read_live_state
    from ..edge.store import StoreError, TunnelStore

    try:
        path = store_path(args)
        with TunnelStore(path) as store:
            records = store.list()
    except (ConfigError, StoreError, OSError) as exc:
        return fail(str(exc))
    state = read_live_state(path)
    live = state.tunnels if state is not None else {}
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "name": r.name,
                        "created": _when(r.created_at),
                        "hostnames": list(r.hostnames),
                        "connections": live.get(r.id, []),
                    }
                    for r in records
                ],
                indent=2,
            )
        )
        return 0
    if not records:
        print("No tunnels. Create one with: pq-tunnel create NAME --hostname HOST")
        return 0
    rows = [["ID", "NAME", "CREATED", "HOSTNAMES", "CONNECTIONS"]]
    for r in records:
        rows.append(
            [
                r.id,
                r.name,
                _when(r.created_at),
                ",".join(r.hostnames) or "-",
                _connections_summary(live.get(r.id, [])),
            ]
        )
    print("\n".join(format_table(rows)))
    return 0


def _info(record: Any, state: Any) -> dict[str, Any]:
    """The facts ``info`` shows, as ``--json`` prints them: connections grouped by connector."""
    conns = state.tunnels.get(record.id, []) if state is not None else []
    connectors: dict[str, dict[str, Any]] = {}
    for c in sorted(conns, key=lambda c: (str(c.get("connector_id")), c.get("conn_index", 0))):
        entry = connectors.setdefault(
            str(c.get("connector_id")),
            {
                "connector_id": c.get("connector_id"),
                "version": c.get("version") or "?",
                "remote": str(c.get("remote", "")),
                "connections": [],
            },
        )
        entry["connections"].append(
            {
                "conn_index": c.get("conn_index"),
                "edge_id": state.edge_id,
                "location": state.location,
                "protocol": c.get("protocol") or "quic",
                "group": c.get("group"),
                "post_quantum": bool(c.get("post_quantum")),
                "remote": c.get("remote"),
                "registered_at": _when(float(c.get("registered_at", 0))),
                "requests": c.get("requests", 0),
                "in_flight": c.get("in_flight", 0),
                "draining": bool(c.get("draining")),
            }
        )
    edge = None
    if state is not None:
        edge = {"edge_id": state.edge_id, "location": state.location, "pid": state.pid}
    return {
        "id": record.id,
        "name": record.name,
        "created": _when(record.created_at),
        "hostnames": list(record.hostnames),
        "edge": edge,
        "connectors": list(connectors.values()),
    }


def _print_info(info: dict[str, Any]) -> None:
    edge = info["edge"]
    where = (
        f"{edge['edge_id']} (location {edge['location']}, pid {edge['pid']})"
        if edge
        else "no running edge found next to the store"
    )
    for label, value in (
        ("NAME", info["name"]),
        ("ID", info["id"]),
        ("CREATED", info["created"]),
        ("HOSTNAMES", ", ".join(info["hostnames"]) or "-"),
        ("EDGE", where),
    ):
        print(f"{label + ':':<11}{value}")
    if not info["connectors"]:
        print("\nThis tunnel has no active connection.")
        return
    for connector in info["connectors"]:
        print(
            f"\nCONNECTOR {connector['connector_id']}  version {connector['version']}  "
            f"from {connector['remote']}"
        )
        rows = [["CONN", "EDGE", "PROTOCOL", "GROUP", "PQ", "SINCE", "REQUESTS", "STATE"]]
        for c in connector["connections"]:
            rows.append(
                [
                    f"#{c['conn_index']}",
                    str(c["edge_id"]),
                    str(c["protocol"]),
                    str(c["group"] or "?"),
                    "yes" if c["post_quantum"] else "NO",
                    c["registered_at"],
                    str(c["requests"]),
                    "draining" if c["draining"] else "ready",
                ]
            )
        print("\n".join("  " + line for line in format_table(rows)))


def cmd_info(args: argparse.Namespace) -> int:
    """One tunnel: its hostnames, the running edge, and every connector with its
    connections (edge, protocol, key-exchange group, since when, requests)."""
    from ..edge.live_file import read_live_state
    from ..edge.store import StoreError, TunnelStore

    try:
        path = store_path(args)
        with TunnelStore(path) as store:
            record = store.require(args.name)
    except (ConfigError, StoreError, OSError) as exc:
        return fail(str(exc))
    info = _info(record, read_live_state(path))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0
