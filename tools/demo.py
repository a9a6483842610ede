"""``make demo``: the whole chain on loopback, visited by real clients, every hop printed.

The origin is the example app under ``hypercorn-pq --pq``; in front of it run a pq-tunnel edge
and a connector with ``--post-quantum``. Every line printed comes from a real handshake: our
aioquic client under each policy, stock aioquic (classical), niquests over qh3 (an independent
TLS stack), httpx over TCP on ``pq_quic_plugin.ssl_context`` (HTTP/2 and HTTP/1.1) and Python's
own ``ssl`` over TCP (classical), first straight to the origin, then through the tunnel.

Each row shows the two halves of a handshake separately: the key-exchange group and how the
server authenticated (its signature scheme, post-quantum only for ML-DSA on an all-ML-DSA chain;
docs/auth.md). The edge and the origin hold an ML-DSA-65 certificate next to the ECDSA one, so a
client that offers ML-DSA gets it and any other client gets ECDSA, and the rows show both kinds
side by side. Everything shown is what the *servers* recorded (the example app's
``/api/connection`` and the tunnel's hop list), never what the demo configured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

import pq_quic_plugin
from pq_quic_plugin.http3 import fetch

from .loopback import TUNNEL_HOST, Chain, running_chain

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = ROOT / "examples" / "asgi_app"


#: Column widths: client, transport, group, key-exchange verdict, authentication.
_WIDTHS = (34, 8, 16, 17, 30)
_HEADER = ("client", "via", "group", "key exchange", "authentication")


def _auth(entry: Mapping[str, Any]) -> str:
    """``ML-DSA-65 (post-quantum)`` / ``ECDSA-P256-SHA256 (classical)``, as docs/auth.md words
    it; ``not reported`` when the server did not say (it never guesses)."""
    scheme = entry.get("signature_scheme")
    if not scheme:
        return "not reported"
    return f"{scheme} ({'post-quantum' if entry.get('post_quantum_auth') is True else 'classical'})"


def _columns(cells: tuple[str, ...], note: str = "") -> str:
    padded = " ".join(f"{cell:<{width}}" for cell, width in zip(cells, _WIDTHS, strict=True))
    return f"  {padded} {note}".rstrip()


def _header(first: str = "client") -> str:
    return _columns((first, *_HEADER[1:]))


def _row(client: str, transport: str, entry: Mapping[str, Any], note: str = "") -> str:
    """One connection (or hop): ``entry`` is the server's facts or a hop of the hop list, both
    with ``group``, ``post_quantum``, ``signature_scheme`` and ``post_quantum_auth``."""
    verdict = "post-quantum" if entry.get("post_quantum") is True else "NOT post-quantum"
    group = entry.get("group") or "unknown"
    return _columns((client, transport, group, verdict, _auth(entry)), note)


async def _quic_rows(base: str, cafile: Path) -> list[str]:
    rows = []
    for label, policy in [
        ("pq-quic-plugin client (prefer)", "prefer"),
        ("pq-quic-plugin client (require)", "require"),
        ("stock aioquic client (classical)", "off"),
    ]:
        resp = await fetch(base + "/api/connection", policy, cafile=str(cafile))
        facts = json.loads(resp.body)
        ours = resp.group.name if resp.group else "-"
        rows.append(_row(label, "HTTP/3", facts, f"(client saw: {ours})"))
    return rows


def _niquests_row(base: str, cafile: Path) -> str:
    try:
        import niquests
    except ImportError:
        return _row("niquests/qh3", "HTTP/3", {}, "(pip install niquests to see it)")
    with niquests.Session(disable_http1=True, disable_http2=True, retries=0) as session:
        resp = session.get(base + "/api/connection", verify=str(cafile), timeout=15)
        facts = resp.json()
    return _row("niquests over qh3 (independent)", "HTTP/3", facts)


async def _pq_tcp_facts(url: str, cafile: Path, http2: bool) -> dict:
    """``url`` over TLS on TCP with httpx's async client on the post-quantum context (which
    offers ML-DSA first: ``auth="prefer"``, the default)."""
    context = pq_quic_plugin.ssl_context("require", server_side=False, cafile=cafile)
    async with httpx.AsyncClient(verify=context, http2=http2, timeout=15) as client:
        resp = await client.get(url + "/api/connection")
        return dict(resp.json())


async def _tcp_rows(base: str, cafile: Path) -> list[str]:
    rows = []
    for http2 in (True, False):
        facts = await _pq_tcp_facts(base, cafile, http2)
        rows.append(_row("httpx + pq ssl_context (require)", facts["protocol"], facts))
    return rows


def _stdlib_facts(url: str, cafile: Path) -> dict:
    """``url`` with Python's own ``ssl`` (the system OpenSSL: neither ML-KEM nor ML-DSA)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url + "/api/connection", context=context, timeout=15) as resp:
        return dict(json.loads(resp.read()))


def _stdlib_tcp_row(base: str, cafile: Path) -> str:
    facts = _stdlib_facts(base, cafile)
    openssl = " ".join(ssl.OPENSSL_VERSION.split()[:2])
    note = f"({openssl}: no ML-KEM, no ML-DSA)"
    return _row("urllib (Python's ssl, classical)", facts["protocol"], facts, note)


def _hop_rows(facts: Mapping[str, Any]) -> list[str]:
    return [
        _row(f"  hop {hop['hop']}", str(hop.get("transport", "?")).upper()[:7], hop)
        for hop in facts.get("hops", [])
    ]


def _auth_summary(hops: list[Mapping[str, Any]]) -> str:
    """``post-quantum on every hop``, or the hops that were not authenticated post-quantum."""
    classical = [str(hop.get("hop")) for hop in hops if hop.get("post_quantum_auth") is not True]
    if not hops:
        return "no hops reported"
    if not classical:
        return "post-quantum on every hop"
    return "classical on " + ", ".join(classical)


def _tunnel_visit(label: str, facts: Mapping[str, Any]) -> list[str]:
    verdict = (
        "every hop post-quantum"
        if facts["all_hops_post_quantum"]
        else "NOT post-quantum end to end"
    )
    auth = _auth_summary(list(facts.get("hops", [])))
    return [f"  {label}: {verdict}; authentication: {auth}", *_hop_rows(facts)]


async def _tunnel_rows(url: str, cafile: Path) -> list[str]:
    rows = []
    for label, policy in [
        ("pq-quic-plugin client (require)", "require"),
        ("stock aioquic client (classical)", "off"),
    ]:
        resp = await fetch(url + "/api/connection", policy, cafile=str(cafile))
        rows += _tunnel_visit(label, json.loads(resp.body))
    facts = await _pq_tcp_facts(url, cafile, http2=True)
    rows += _tunnel_visit("httpx + pq ssl_context over TCP (require, HTTP/2)", facts)
    facts = await asyncio.to_thread(_stdlib_facts, url, cafile)
    rows += _tunnel_visit("urllib (Python's ssl, classical) over TCP", facts)
    return rows


def _chromium_lines(chain: Chain) -> str:
    """The commands that open the tunnel in Chromium, trusting both test certificates.

    Which one Chromium gets depends on the transport (docs/auth.md, "Browsers"): over TCP it
    offers ML-DSA first and gets the ML-DSA-65 certificate, over HTTP/3 it offers no ML-DSA and
    gets the ECDSA one. So both SPKI hashes are listed, ML-DSA first, in both commands.
    """
    spki = ",".join(p.spki_sha256_b64 for p in (chain.pq_pki, chain.pki) if p is not None)
    browser = (
        f"--host-resolver-rules='MAP {TUNNEL_HOST} 127.0.0.1' "
        f"--ignore-certificate-errors-spki-list={spki} {chain.url}/"
    )
    return (
        f"Open it in Chromium over HTTP/3 (through the tunnel; Chromium offers no ML-DSA over "
        f"QUIC, so it gets the ECDSA certificate):\n  chromium --enable-quic "
        f"--origin-to-force-quic-on={TUNNEL_HOST}:{chain.public_port} {browser}\n"
        f"or over TCP (HTTP/2, post-quantum key exchange and ML-DSA-65 authentication):\n"
        f"  chromium --disable-quic {browser}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the check")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pq-demo-"))
    print(
        "Starting on loopback: origin (hypercorn-pq --pq, examples/asgi_app), "
        "pq-tunnel edge, pq-tunnel connector --post-quantum; the edge and the origin hold an "
        "ML-DSA-65 and an ECDSA certificate ..."
    )
    with running_chain(work, ml_dsa_edge=True, ml_dsa_origin=True) as chain:
        cafile = chain.cafile  # both CAs: each client verifies whichever certificate it gets
        origin = f"https://127.0.0.1:{chain.origin_port}"
        print(f"  origin    https://127.0.0.1:{chain.origin_port}  (HTTP/3 + TCP)")
        print(
            f"  edge      https://{TUNNEL_HOST}:{chain.public_port}  (public, HTTP/3 + TCP); "
            f"connectors on udp {chain.connector_port}"
        )
        print(
            f"  connector 2 HA connections, --post-quantum; metrics "
            f"http://127.0.0.1:{chain.connector_metrics}/metrics"
        )
        print("\n1. Direct to the origin (what each client negotiated, as the server saw it):")
        print(_header())
        for row in asyncio.run(_quic_rows(origin, cafile)):
            print(row)
        print(_niquests_row(origin, cafile))
        for row in asyncio.run(_tcp_rows(origin, cafile)):
            print(row)
        print(_stdlib_tcp_row(origin, cafile))
        print("\n2. Through the tunnel (visitor -> edge -> connector -> origin), every hop:")
        print(_header("client, then each hop"))
        for row in asyncio.run(_tunnel_rows(chain.url, cafile)):
            print(row)
        print(f"\n{_chromium_lines(chain)}")
        print(f"Edge status page: http://127.0.0.1:{chain.edge_metrics}/  Logs: {work}")
        if args.once:
            return 0
        print("Serving until Ctrl-C.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
