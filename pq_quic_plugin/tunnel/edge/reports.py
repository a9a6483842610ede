"""The edge's collector for connectors' post-quantum failure reports (``/pq-report``).

A connector whose post-quantum handshake fails cannot tell the edge over the tunnel, so it POSTs
a small JSON report to a URL (``pq-report-url``) that the edge serves on its public side, on any
host that is not a tunnel's. Reports are untrusted input from the internet: bounded in size,
flattened to short scalars, and kept only in memory (the last 200).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any

from ...asgi.types import Receive, Scope, Send
from .responses import plain_text, read_body

__all__ = ["MAX_REPORT", "PqReports"]

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

MAX_REPORT = 16 * 1024


class PqReports:
    """The last reports, newest first; an ASGI endpoint: POST adds one, GET lists them."""

    def __init__(self, keep: int = 200) -> None:
        self.reports: deque[dict[str, Any]] = deque(maxlen=keep)

    def latest(self, count: int) -> list[dict[str, Any]]:
        return list(self.reports)[:count]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "POST":
            await self._receive(scope, receive, send)
            return
        body = json.dumps(list(self.reports), indent=2).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _receive(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive, MAX_REPORT)
        try:
            report = json.loads(body)
            if not isinstance(report, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            await plain_text(send, 400, f"a report is a JSON object: {exc}")
            return
        report = {
            str(k)[:64]: (v if isinstance(v, (int, float, bool)) or v is None else str(v)[:500])
            for k, v in report.items()
        }
        report["received_at"] = time.time()
        report["from"] = (scope.get("client") or ["?"])[0]
        self.reports.appendleft(report)
        logger.warning("post-quantum failure report: %s", report)
        await plain_text(send, 202, "report received")
