"""``make demo``: the whole chain on loopback, visited by real clients, every hop printed.

The origin is the example app under ``hypercorn-pq --pq``; in front of it run a pq-tunnel edge
and a connector with ``--post-quantum``. Every line printed comes from a real handshake: our
aioquic client under each policy, stock aioquic (classical), niquests over qh3 (an independent
TLS stack), httpx over TCP on ``pq_quic_plugin.ssl_context`` (HTTP/2 and HTTP/1.1) and Python's
own ``ssl`` over TCP (classical), first straight to the origin, then through the tunnel. The
groups shown are what the *servers* recorded (the example app's ``/api/connection``).
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
from pathlib import Path

import httpx

import pq_quic_plugin
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.http3 import fetch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = ROOT / "examples" / "asgi_app"


def _row(client: str, transport: str, group: str | None, pq: bool | None, note: str = "") -> str:
    verdict = "post-quantum" if pq else "NOT post-quantum"
    return f"  {client:<34} {transport:<8} {group or 'unknown':<16} {verdict:<17} {note}".rstrip()


async def _quic_rows(base: str, pki: DevPKI) -> list[str]:
    rows = []
    for label, policy in [
        ("pq-quic-plugin client (prefer)", "prefer"),
        ("pq-quic-plugin client (require)", "require"),
        ("stock aioquic client (classical)", "off"),
    ]:
        resp = await fetch(base + "/api/connection", policy, cafile=str(pki.ca_cert))
        facts = json.loads(resp.body)
        ours = resp.group.name if resp.group else "-"
        rows.append(
            _row(label, "HTTP/3", facts["group"], facts["post_quantum"], f"(client saw: {ours})")
        )
    return rows


def _niquests_row(base: str, pki: DevPKI) -> str:
    try:
        import niquests
    except ImportError:
        return _row("niquests/qh3", "HTTP/3", None, None, "(pip install niquests to see it)")
    with niquests.Session(disable_http1=True, disable_http2=True, retries=0) as session:
        resp = session.get(base + "/api/connection", verify=str(pki.ca_cert), timeout=15)
        facts = resp.json()
    return _row("niquests over qh3 (independent)", "HTTP/3", facts["group"], facts["post_quantum"])


async def _pq_tcp_facts(url: str, pki: DevPKI, http2: bool) -> dict:
    """``url`` over TLS on TCP with httpx's async client on the post-quantum context."""
    context = pq_quic_plugin.ssl_context("require", server_side=False, cafile=pki.ca_cert)
    async with httpx.AsyncClient(verify=context, http2=http2, timeout=15) as client:
        resp = await client.get(url + "/api/connection")
        return dict(resp.json())


async def _tcp_rows(base: str, pki: DevPKI) -> list[str]:
    rows = []
    for http2 in (True, False):
        facts = await _pq_tcp_facts(base, pki, http2)
        label = "httpx + pq ssl_context (require)"
        rows.append(_row(label, facts["protocol"], facts["group"], facts["post_quantum"]))
    return rows


def _stdlib_tcp_row(base: str, pki: DevPKI) -> str:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with urllib.request.urlopen(base + "/api/connection", context=context, timeout=15) as resp:
        facts = json.loads(resp.read())
    return _row(
        "urllib (Python's ssl, classical)",
        facts["protocol"],
        facts["group"],
        facts["post_quantum"],
        f"({' '.join(ssl.OPENSSL_VERSION.split()[:2])}: no ML-KEM)",
    )


def _hop_rows(facts: dict) -> list[str]:
    rows = []
    for hop in facts.get("hops", []):
        rows.append(
            _row(
                f"  hop {hop['hop']}",
                str(hop.get("transport", "?")).upper()[:7],
                hop.get("group"),
                hop.get("post_quantum"),
            )
        )
    return rows


def _tunnel_visit(label: str, facts: dict) -> list[str]:
    verdict = (
        "every hop post-quantum"
        if facts["all_hops_post_quantum"]
        else "NOT post-quantum end to end"
    )
    return [f"  {label}: {verdict}", *_hop_rows(facts)]


async def _tunnel_rows(url: str, pki: DevPKI) -> list[str]:
    rows = []
    for label, policy in [
        ("pq-quic-plugin client (require)", "require"),
        ("stock aioquic client (classical)", "off"),
    ]:
        resp = await fetch(url + "/api/connection", policy, cafile=str(pki.ca_cert))
        rows += _tunnel_visit(label, json.loads(resp.body))
    facts = await _pq_tcp_facts(url, pki, http2=True)
    rows += _tunnel_visit("httpx + pq ssl_context over TCP (require, HTTP/2)", facts)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the check")
    args = parser.parse_args(argv)

    from .loopback import TUNNEL_HOST, running_chain

    work = Path(tempfile.mkdtemp(prefix="pq-demo-"))
    print(
        "Starting on loopback: origin (hypercorn-pq --pq, examples/asgi_app), "
        "pq-tunnel edge, pq-tunnel connector --post-quantum ..."
    )
    with running_chain(work) as chain:
        pki = chain.pki
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
        print(f"  {'client':<34} {'via':<8} {'group':<16} verdict")
        for row in asyncio.run(_quic_rows(origin, pki)):
            print(row)
        print(_niquests_row(origin, pki))
        for row in asyncio.run(_tcp_rows(origin, pki)):
            print(row)
        print(_stdlib_tcp_row(origin, pki))
        print("\n2. Through the tunnel (visitor -> edge -> connector -> origin), every hop:")
        for row in asyncio.run(_tunnel_rows(chain.url, pki)):
            print(row)
        browser = (
            f"--host-resolver-rules='MAP {TUNNEL_HOST} 127.0.0.1' "
            f"--ignore-certificate-errors-spki-list={pki.spki_sha256_b64} {chain.url}/"
        )
        print(
            f"\nOpen it in Chromium over HTTP/3 (through the tunnel):\n  chromium --enable-quic "
            f"--origin-to-force-quic-on={TUNNEL_HOST}:{chain.public_port} {browser}\n"
            f"or over TCP (HTTP/2, post-quantum too):\n  chromium --disable-quic {browser}\n"
            f"Edge status page: http://127.0.0.1:{chain.edge_metrics}/  Logs: {work}"
        )
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
