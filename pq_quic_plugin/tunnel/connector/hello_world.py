"""``service: hello_world``: a page the connector serves itself, for smoke tests.

cloudflared's ``hello_world`` shows that the tunnel works without an origin; ours also shows
how the request travelled: every hop's transport and key-exchange group, as the edge and this
connector saw them, then the connector-origin hop, which here is ``internal`` (no network, so no
key exchange). A browser gets HTML; a client that accepts ``application/json`` (``curl -H
'Accept: application/json'``) gets the same facts as JSON, to check in a script.
"""

from __future__ import annotations

import html
import json
from typing import Any

from ...asgi.types import Hop
from ..headers import find
from ..origin import HOP_NAME

__all__ = ["INTERNAL_HOP", "hello_world"]

#: The connector-origin hop of a page the connector answers itself.
INTERNAL_HOP: Hop = {
    "hop": HOP_NAME,
    "transport": "internal",
    "group": None,
    "post_quantum": False,
    "signature_scheme": None,
    "post_quantum_auth": False,
}


def hello_world(
    method: str, path: str, headers: list[tuple[str, str]], hops: list[Hop]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of the page for one request (no body for ``HEAD``).

    ``post_quantum`` in the JSON says whether every hop that crossed a network agreed on a
    post-quantum group: the question a smoke test asks.
    """
    all_hops: list[Hop] = [*hops, INTERNAL_HOP]
    networked = [h for h in all_hops if h.get("transport") != "internal"]
    facts: dict[str, Any] = {
        "service": "hello_world",
        "host": find(headers, "host") or "",
        "method": method,
        "path": path,
        "hops": all_hops,
        "post_quantum": bool(networked) and all(h.get("post_quantum") for h in networked),
    }
    accept = (find(headers, "accept") or "").lower()
    if "application/json" in accept and "text/html" not in accept:
        body = json.dumps(facts, indent=2).encode() + b"\n"
        kind = "application/json"
    else:
        body = _page(facts).encode()
        kind = "text/html; charset=utf-8"
    out = [("content-type", kind), ("content-length", str(len(body)))]
    return 200, out, b"" if method.upper() == "HEAD" else body


def _page(facts: dict[str, Any]) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(hop.get(k) if hop.get(k) is not None else '-'))}</td>"
            for k in ("hop", "transport", "http_version", "group", "post_quantum")
        )
        + "</tr>"
        for hop in facts["hops"]
    )
    verdict = (
        "every hop is post-quantum" if facts["post_quantum"] else "NOT every hop is post-quantum"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>pq-tunnel hello world</title>"
        "</head><body><h1>pq-tunnel: hello world</h1>"
        f"<p>{html.escape(facts['method'])} {html.escape(facts['host'])}"
        f"{html.escape(facts['path'])} reached the connector; {verdict}.</p>"
        "<table border='1'><tr><th>hop</th><th>transport</th><th>HTTP</th><th>group</th>"
        f"<th>post-quantum</th></tr>{rows}</table></body></html>\n"
    )
