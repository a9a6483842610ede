"""The edge's collector for connectors' post-quantum failure reports (``POST /pq-report``).

A connector whose post-quantum handshake fails cannot tell the edge over the tunnel, so it POSTs
a small JSON report to a URL (``pq-report-url``) that the edge serves on its public side, on any
host that is not a tunnel's. That makes every report untrusted input from the internet, so:

* **Who may report.** A report carries a proof from its tunnel's key (headers
  ``pq-report-tunnel``, ``pq-report-time``, ``pq-report-proof``: an HMAC over the body with a key
  derived from the tunnel secret, :func:`~..credentials.report_proof`, checked in constant time
  against the key the store holds; the time must be within :data:`MAX_SKEW`), or comes from
  loopback. Anyone else gets the same ``403`` whatever was wrong.
* **How much.** At most :data:`MAX_REPORT` bytes; a token bucket per source address and one per
  tunnel (:mod:`..rate_limit`), so a flood is refused (``429``) before it is read, logged or
  stored, and cannot push real reports out.
* **What is kept.** Flattened to short printable scalars and finite numbers (``NaN`` is refused
  on input, so ``/status.json`` stays JSON), in the tunnel store, the newest
  :data:`~.store.REPORTS_KEPT`, so an edge restart keeps them: the SQLite file, or the
  cluster's Redis, where every edge's status page shows every edge's reports (an edge that
  cannot reach Redis keeps them in memory and sends them once it can).
* **Who may read.** Nobody here: ``GET`` answers ``405``; the reports are on the metrics address
  (``/pq-report`` and the status page).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

from ...asgi.hop_trust import normalise_ip
from ...asgi.types import Receive, Scope, Send
from .. import strict_json
from ..credentials import verify_report_proof
from ..log_safe import shown
from ..rate_limit import TokenBuckets
from .hello import canonical_uuid
from .responses import plain_text
from .store import EdgeStore

__all__ = ["MAX_REPORT", "MAX_SKEW", "PqReports", "REPORT_HEADERS"]

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

MAX_REPORT = 16 * 1024
#: How far a signed report's time may be from the edge's clock (seconds): bounds replays.
MAX_SKEW = 300
MAX_FIELDS = 32
MAX_TEXT = 500
#: The headers that carry a report's proof (tunnel UUID, Unix time, base64 HMAC).
REPORT_HEADERS = ("pq-report-tunnel", "pq-report-time", "pq-report-proof")
#: Per source address: a burst of 5, then one every 12 s; per tunnel: 20, then one every 3 s.
PER_SOURCE = (1 / 12, 5)
PER_TUNNEL = (1 / 3, 20)
_REFUSED = (
    "a post-quantum failure report needs a valid proof from its tunnel's key "
    "(pq-report-* headers, as pq-tunnel run sends) or must come from loopback"
)


class PqReports:
    """An ASGI endpoint: a POST adds a report to the store; anything else is ``405``."""

    def __init__(self, store: EdgeStore, *, clock: Any = time.time) -> None:
        self.store = store
        self._clock = clock
        self._per_source = TokenBuckets(*PER_SOURCE)
        self._per_tunnel = TokenBuckets(*PER_TUNNEL)

    def latest(self, count: int) -> list[dict[str, Any]]:
        """The newest reports, newest first (for the metrics address only)."""
        return self.store.reports(count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await plain_text(
                send,
                405,
                "POST only; the reports are on the edge's metrics address (/pq-report)",
                [(b"allow", b"POST")],
            )
            return
        source = _source(scope)
        if not self._per_source.take(source):
            await self._too_many(send, self._per_source.retry_after(source))
            return
        declared = _header(scope, "content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_REPORT):
            await plain_text(send, 413, f"a report is at most {MAX_REPORT} bytes")
            return
        body = await _read_at_most(receive, MAX_REPORT)
        if body is None:
            await plain_text(send, 413, f"a report is at most {MAX_REPORT} bytes")
            return
        tunnel = self._authenticate(scope, body, source)
        if tunnel is None:
            await plain_text(send, 403, _REFUSED)
            return
        if tunnel and not self._per_tunnel.take(tunnel):
            await self._too_many(send, self._per_tunnel.retry_after(tunnel))
            return
        try:
            raw = strict_json.loads(body, max_bytes=MAX_REPORT, max_depth=2)
            if not isinstance(raw, dict):
                raise strict_json.StrictJSONError("not an object")
        except strict_json.StrictJSONError as exc:
            await plain_text(send, 400, f"a report is a JSON object with finite numbers: {exc}")
            return
        report = _flatten(raw)
        report["received_at"] = self._clock()
        report["from"] = source
        report["tunnel_id"] = tunnel or None
        self.store.add_report(report)
        logger.warning(
            "post-quantum failure report from %s%s: group=%s error=%s",
            source,
            f" (tunnel {tunnel})" if tunnel else " (loopback, unsigned)",
            shown(report.get("group"), 40),
            shown(report.get("error"), 200),
        )
        await plain_text(send, 202, "report received")

    def _authenticate(self, scope: Scope, body: bytes, source: str) -> str | None:
        """The tunnel a signed report proves, ``""`` for an unsigned one from loopback, or
        ``None``. Every failure costs the same work (a key lookup and an HMAC)."""
        tunnel, stamp, presented = (_header(scope, h) for h in REPORT_HEADERS)
        if tunnel is None and stamp is None and presented is None:
            return "" if _is_loopback(source) else None
        tunnel_id = canonical_uuid(tunnel or "")
        record = self.store.by_id(tunnel_id) if tunnel_id else None
        try:
            when = int(stamp or "")
            proof = base64.b64decode(presented or "", validate=True)
        except (ValueError, binascii.Error):
            when, proof = -1, b""
        key = record.auth_key if record is not None else bytes(32)
        proven = verify_report_proof(key, tunnel_id or _NO_TUNNEL, max(when, 0), body, proof)
        fresh = abs(self._clock() - when) <= MAX_SKEW
        if record is None or not proven or not fresh:
            logger.info(
                "refused a post-quantum failure report from %s: %s",
                source,
                "unknown tunnel"
                if record is None
                else "stale or future time"
                if proven
                else "wrong proof",
            )
            return None
        return record.id

    async def _too_many(self, send: Send, retry_after: float) -> None:
        seconds = str(max(1, int(retry_after + 0.999))).encode()
        await plain_text(send, 429, "too many reports; try later", [(b"retry-after", seconds)])


_NO_TUNNEL = "00000000-0000-4000-8000-000000000000"


def _flatten(report: dict[str, Any]) -> dict[str, Any]:
    """At most :data:`MAX_FIELDS` fields: short printable keys, scalars kept, the rest as
    short text (strict decoding already refused non-finite numbers)."""
    out: dict[str, Any] = {}
    for key, value in list(report.items())[:MAX_FIELDS]:
        name = _printable(str(key))[:64]
        if isinstance(value, (bool, int, float)) or value is None:
            out[name] = value if not isinstance(value, int) or abs(value) < 2**53 else str(value)
        else:
            out[name] = _printable(value if isinstance(value, str) else str(value))[:MAX_TEXT]
    return out


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[: MAX_TEXT * 2])


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers") or ():
        if bytes(key).lower() == wanted:
            return bytes(value).decode("latin-1")[:200]
    return None


def _source(scope: Scope) -> str:
    client = scope.get("client")
    if isinstance(client, (list, tuple)) and client and client[0] is not None:
        try:
            return str(normalise_ip(str(client[0])[:64]))
        except ValueError:
            return "unknown"
    return "unknown"


def _is_loopback(source: str) -> bool:
    try:
        return normalise_ip(source).is_loopback
    except ValueError:
        return False


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it passes ``limit`` (the rest is not read)."""
    body = bytearray()
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)
