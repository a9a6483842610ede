"""What a failed post-quantum handshake tells the operator: a banner and, if asked, a report.

As cloudflared does: with ``--post-quantum`` there is no classical fallback, so a failure must
be loud and say what to check. When ``pq-report-url`` is set a JSON report goes there too, so
whoever runs the edge learns which networks break post-quantum handshakes. Reporting must never
break the connector: a report that cannot be sent is logged and forgotten.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from ... import __version__
from ..credentials import Credentials, report_proof

__all__ = ["TROUBLESHOOTING", "HandshakeFailure", "post_report", "print_banner", "report_headers"]

logger = logging.getLogger("pq_quic_plugin.tunnel.connector")

#: Where the known problems are written up. The docs are not installed with the package, so
#: this names the file in the project's source rather than a URL that might not exist.
TROUBLESHOOTING = (
    "see docs/tunnel.md, section 'Post-quantum troubleshooting',",
    "in the pq-quic-plugin source",
)
REPORT_TIMEOUT = 5.0


@dataclass(frozen=True)
class HandshakeFailure:
    """One failed post-quantum tunnel handshake."""

    conn_index: int
    edge: str
    group_tried: str | None
    error: str
    connector_id: str
    edge_auth: bool = False
    """The edge's authentication failed (``post-quantum-auth``), not the key exchange."""

    def as_report(self) -> dict[str, Any]:
        """The JSON body of the failure report."""
        return {
            "group": self.group_tried,
            "version": f"pq-quic-plugin/{__version__}",
            "error": self.error,
            "failed": "authentication" if self.edge_auth else "key-exchange",
            "conn_index": self.conn_index,
            "edge": self.edge,
            "connector_id": self.connector_id,
        }


#: The banner's headline and what to check, for a key-exchange failure and for an
#: authentication failure (the edge did not sign with ML-DSA under ``post-quantum-auth``).
_KEY_EXCHANGE = (
    ("POST-QUANTUM TUNNEL CONNECTION FAILED (no classical fallback: --post-quantum is set)",),
    (
        "   - does the edge accept post-quantum key exchange? (edge.yaml: connectors:",
        "     post-quantum: prefer|require, and the group above in connectors: groups)",
        "   - does your network pass UDP and fragmented (multi-datagram) ClientHellos?",
        "   - run without --post-quantum to see whether a classical connection works",
    ),
)
_AUTHENTICATION = (
    (
        "POST-QUANTUM AUTHENTICATION OF THE EDGE FAILED (post-quantum-auth is set: a classical",
        "certificate is never accepted; no connection was made)",
    ),
    (
        "   - does the edge hold an ML-DSA certificate? (edge.yaml: connectors: pq-certfile and",
        "     pq-keyfile; python -m pq_quic_plugin.devcert DIR --sig ml-dsa-65 makes a test one)",
        "   - is its whole chain ML-DSA (an ML-DSA leaf under an ECDSA CA is not enough)?",
        "   - does ca-file hold the ML-DSA CA (devcert's cas.pem holds both)?",
        "   - run without post-quantum-auth to see which certificate the edge presents",
    ),
)


def print_banner(failure: HandshakeFailure) -> None:
    """Say it loudly on stderr, and say what to check next."""
    headline, checks = _AUTHENTICATION if failure.edge_auth else _KEY_EXCHANGE
    lines = [
        "=" * 78,
        *headline,
        f"  connIndex={failure.conn_index} edge={failure.edge} group tried={failure.group_tried}",
        f"  error: {failure.error}",
        "  What to check:",
        *checks,
        f"  Known problems: {TROUBLESHOOTING[0]}",
        f"  {TROUBLESHOOTING[1]}",
        "=" * 78,
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def report_headers(body: bytes, credentials: Credentials | None) -> dict[str, str]:
    """The request headers of a report: with credentials, the proof the edge asks for from a
    reporter that is not on its loopback (docs/tunnel.md, "Security model")."""
    headers = {"content-type": "application/json"}
    if credentials is not None:
        now = int(time.time())
        mac = report_proof(credentials.auth_key, credentials.tunnel_id, now, body)
        headers["pq-report-tunnel"] = credentials.tunnel_id
        headers["pq-report-time"] = str(now)
        headers["pq-report-proof"] = base64.b64encode(mac).decode()
    return headers


async def post_report(
    url: str,
    failure: HandshakeFailure,
    ca_file: str | None,
    credentials: Credentials | None = None,
) -> None:
    """POST the failure report to ``url``, signed with the tunnel's key when ``credentials``
    are given; errors are logged, never raised."""

    def post() -> None:
        context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
        body = json.dumps(failure.as_report()).encode()
        request = urllib.request.Request(
            url, data=body, method="POST", headers=report_headers(body, credentials)
        )
        with urllib.request.urlopen(request, timeout=REPORT_TIMEOUT, context=context) as resp:
            resp.read()

    try:
        await asyncio.get_running_loop().run_in_executor(None, post)
        logger.info("post-quantum failure report sent to %s", url)
    except Exception as exc:  # noqa: BLE001 - reporting must not break the connector
        logger.warning("could not send the post-quantum failure report to %s: %s", url, exc)
