"""The edge's status page: which tunnels have live connections, with which key exchange.

Served on the metrics address only (``/``, ``/status`` and ``/status.json``), because it names
tunnels, hostnames and connectors' addresses. The HTML is rendered on the server and needs no
JavaScript, so it reads the same in a terminal browser and in a screenshot.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..edge.server import Edge
    from .metrics import Metrics

__all__ = ["render_status", "status_data"]

#: How many post-quantum failure reports the page lists (newest first).
REPORTS_SHOWN = 20


def status_data(edge: Edge, metrics: Metrics) -> dict[str, Any]:
    """What the page shows, as JSON-ready data (also served as ``/status.json``)."""
    tunnels = []
    for record in edge.store.list():
        conns = [c.describe() for c in edge.registry.connections(record.id)]
        tunnels.append(
            {
                "id": record.id,
                "name": record.name,
                "hostnames": list(record.hostnames),
                "connections": conns,
                "requests_per_minute": metrics.recent.rate(record.id) * 60,
            }
        )
    return {
        "edge_id": edge.config.edge_id,
        "location": edge.config.location,
        "tunnels": tunnels,
        "pq_reports": edge.app.reports.latest(REPORTS_SHOWN),
        # The cluster's other edges and the relay's traffic with each (docs/cluster.md).
        "cluster": edge.peers.describe() if edge.peers is not None else None,
    }


def render_status(data: dict[str, Any]) -> str:
    """Server-side HTML of :func:`status_data`, every value escaped."""
    e = html.escape
    rows = []
    for t in data["tunnels"]:
        conns = (
            "".join(
                f"<li>connIndex {c['conn_index']}: <b>{e(str(c['group']))}</b> "
                f"<span class={'pq' if c['post_quantum'] else 'classic'}>"
                f"{'post-quantum' if c['post_quantum'] else 'NOT post-quantum'}</span>"
                f"{' (draining)' if c['draining'] else ''} from {e(c['remote'])} "
                f"over {e(str(c.get('protocol', 'quic')))}, "
                f"{c['requests']} requests</li>"
                for c in t["connections"]
            )
            or "<li class=classic>no live connection</li>"
        )
        rows.append(
            f"<tr><td><b>{e(t['name'])}</b><br><small>{e(t['id'])}</small></td>"
            f"<td>{e(', '.join(t['hostnames']))}</td><td><ul>{conns}</ul></td>"
            f"<td>{t['requests_per_minute']:.1f}/min</td></tr>"
        )
    reports = (
        "".join(
            f"<li>{e(time.strftime('%H:%M:%S', time.gmtime(r.get('received_at', 0))))} UTC: "
            f"group {e(str(r.get('group')))}, {e(str(r.get('version')))}: "
            f"{e(str(r.get('error')))}</li>"
            for r in data["pq_reports"]
        )
        or "<li>none</li>"
    )
    return f"""<!doctype html><html><head><meta charset=utf-8>
<title>pq-tunnel edge {e(data["edge_id"])}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#1d2330;background:#f6f7fb}}
h1{{font-size:1.5em}} table{{border-collapse:collapse;width:100%;background:#fff}}
td,th{{border:1px solid #d5d9e3;padding:.5em;vertical-align:top;text-align:left}}
th{{background:#e9ecf4}} .pq{{color:#0a7d32;font-weight:600}} .classic{{color:#b3261e;
font-weight:600}} ul{{margin:0;padding-left:1.2em}} small{{color:#667}}</style></head><body>
<h1>pq-tunnel edge <code>{e(data["edge_id"])}</code> ({e(data["location"])})</h1>
<table><tr><th>Tunnel</th><th>Hostnames</th><th>Live connections (key exchange)</th>
<th>Requests</th></tr>{"".join(rows) or "<tr><td colspan=4>no tunnels</td></tr>"}</table>
{_cluster_section(data.get("cluster"))}
<h2>Recent post-quantum failure reports</h2><ul>{reports}</ul>
<p><small>Refreshed {e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))};
/metrics, /ready and /healthcheck on the metrics address.</small></p></body></html>"""


def _cluster_section(cluster: dict[str, Any] | None) -> str:
    """The other edges of the cluster and the relay's traffic with each; empty without one."""
    if cluster is None:
        return ""
    e = html.escape
    rows = []
    for p in cluster["peers"]:
        rtt = "" if p["rtt_ms"] is None else f", RTT {p['rtt_ms']:.1f} ms"
        rows.append(
            f"<tr><td><b>{e(p['edge_id'])}</b><br><small>{e(p['relay'])}</small></td>"
            f"<td>{p['connections']}</td>"
            f"<td>{e(str(p['link'] or 'none'))} {e(str(p['group'] or ''))}{rtt}</td>"
            f"<td>{p.get('relayed', 0)} relayed, {p.get('errors', 0)} errors, "
            f"{p.get('served', 0)} served for it</td></tr>"
        )
    return (
        "<h2>Cluster: the other edges</h2><table><tr><th>Edge</th><th>Connections</th>"
        "<th>Relay link</th><th>Relay traffic</th></tr>"
        f"{''.join(rows) or '<tr><td colspan=4>no other edge in the registry</td></tr>'}</table>"
    )
