"""``pq-tunnel list`` and ``pq-tunnel info``: what the store and the running edges know.

Both read the tunnel store and the running edges' live connections (:mod:`.live_view`: the
edge's live file next to a SQLite store, every edge's registry entry in a cluster's Redis); an
edge that is gone is ignored, so a dead edge's connections are never shown as live. With a
cluster, ``list`` ends with the edges (ID, location, relay address, connections, last
heartbeat) and ``info`` says which edge holds each connection. Tables are aligned to their
widest cell, as ``cloudflared tunnel list`` prints them; ``--json`` gives the same facts for
scripts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ..config import ConfigError
from ..edge.live_file import LiveState
from .common import fail, store_path
from .live_view import connections_by_tunnel, is_cluster, live_states

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


def _connections_summary(conns: list[dict[str, Any]], cluster: bool) -> str:
    """``#0 X25519MLKEM768, #1 x25519``; in a cluster, each with its edge: ``... @edge-a``."""
    return (
        ", ".join(
            f"#{c.get('conn_index')} {c.get('group') or '?'}"
            + (f" @{c.get('edge_id')}" if cluster else "")
            for c in conns
        )
        or "-"
    )


def _edges_table(states: list[LiveState]) -> list[str]:
    """The cluster's running edges, for the end of ``list``."""
    if not states:
        return ["", "No edge of this cluster is running (none has sent a heartbeat lately)."]
    rows = [["EDGE", "LOCATION", "HOST", "PID", "RELAY", "CONNECTIONS", "LAST HEARTBEAT"]]
    for s in states:
        count = sum(len(c) for c in s.tunnels.values())
        rows.append(
            [
                s.edge_id,
                s.location,
                s.host or "?",
                str(s.pid),
                s.relay or "-",
                str(count),
                _when(s.updated),
            ]
        )
    return ["", *format_table(rows)]


def cmd_list(args: argparse.Namespace) -> int:
    from ..edge.store import StoreError, open_store

    try:
        with open_store(store_path(args)) as store:
            records = store.list()
            states = live_states(store)
            cluster = is_cluster(store)
    except (ConfigError, StoreError, OSError) as exc:
        return fail(str(exc))
    live = connections_by_tunnel(states)
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
        if cluster:
            print("\n".join(_edges_table(states)))
        return 0
    rows = [["ID", "NAME", "CREATED", "HOSTNAMES", "CONNECTIONS"]]
    for r in records:
        rows.append(
            [
                r.id,
                r.name,
                _when(r.created_at),
                ",".join(r.hostnames) or "-",
                _connections_summary(live.get(r.id, []), cluster),
            ]
        )
    print("\n".join(format_table(rows)))
    if cluster:
        print("\n".join(_edges_table(states)))
    return 0


def _edge_facts(state: LiveState, tunnel_id: str) -> dict[str, Any]:
    return {
        "edge_id": state.edge_id,
        "location": state.location,
        "pid": state.pid,
        "host": state.host,
        "relay": state.relay,
        "connections": len(state.tunnels.get(tunnel_id, [])),
    }


def _info(record: Any, states: list[LiveState]) -> dict[str, Any]:
    """The facts ``info`` shows, as ``--json`` prints them: connections grouped by connector,
    each naming the edge that holds it; ``edges``: every running edge of the store (``edge``:
    the one edge, for a store with one)."""
    conns = connections_by_tunnel(states).get(record.id, [])
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
                "edge_id": c.get("edge_id"),
                "location": c.get("location"),
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
    edges = [_edge_facts(s, record.id) for s in states]
    return {
        "id": record.id,
        "name": record.name,
        "created": _when(record.created_at),
        "hostnames": list(record.hostnames),
        "edge": edges[0] if len(edges) == 1 else None,
        "edges": edges,
        "connectors": list(connectors.values()),
    }


def _where(edge: dict[str, Any]) -> str:
    host = f", host {edge['host']}" if edge.get("host") else ""
    relay = f", relay {edge['relay']}" if edge.get("relay") else ""
    return f"{edge['edge_id']} (location {edge['location']}{host}, pid {edge['pid']}{relay})"


def _print_info(info: dict[str, Any], cluster: bool) -> None:
    edges = info["edges"]
    if not cluster:
        where = _where(edges[0]) if edges else "no running edge found next to the store"
    elif edges:
        where = "; ".join(f"{_where(e)}: {e['connections']} connection(s)" for e in edges)
    else:
        where = "no edge of this cluster is running"
    for label, value in (
        ("NAME", info["name"]),
        ("ID", info["id"]),
        ("CREATED", info["created"]),
        ("HOSTNAMES", ", ".join(info["hostnames"]) or "-"),
        ("EDGES" if cluster else "EDGE", where),
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
    from ..edge.store import StoreError, open_store

    try:
        with open_store(store_path(args)) as store:
            record = store.require(args.name)
            states = live_states(store)
            cluster = is_cluster(store)
    except (ConfigError, StoreError, OSError) as exc:
        return fail(str(exc))
    info = _info(record, states)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info, cluster)
    return 0
