"""``make demo``: the example app under ``hypercorn-pq --pq`` on loopback, visited by real clients.

Every line it prints comes from a real handshake: our aioquic client under each policy, stock
aioquic (classical), niquests over qh3 (an independent TLS stack) and plain HTTPS over TCP. The
group shown for each is what the *server* recorded for that connection (the example app's
``/api/connection``), next to what our client itself negotiated where it can tell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .devcert import DevPKI, make_dev_pki
from .http3_client import fetch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = ROOT / "examples" / "asgi_app"


def _free_port() -> int:
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        return int(tcp.getsockname()[1])


@contextlib.contextmanager
def _hypercorn(pki: DevPKI, port: int, log: Path) -> Iterator[subprocess.Popen]:
    cmd = [
        sys.executable, "-m", "pq_quic_plugin.hypercorn_binding", "--pq",
        "--certfile", str(pki.cert), "--keyfile", str(pki.key),
        "-b", f"127.0.0.1:{port}", "app:app",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=EXAMPLE_APP, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "(QUIC)" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"hypercorn-pq did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _row(client: str, transport: str, group: str | None, pq: bool | None, note: str = "") -> str:
    verdict = "post-quantum" if pq else "NOT post-quantum"
    return f"  {client:<34} {transport:<7} {group or 'unknown':<16} {verdict:<17} {note}"


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
        rows.append(_row(label, "HTTP/3", facts["group"], facts["post_quantum"],
                         f"(client saw: {ours})"))
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


def _tcp_row(base: str, pki: DevPKI) -> str:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with urllib.request.urlopen(base + "/api/connection", context=context, timeout=15) as resp:
        facts = json.loads(resp.read())
    return _row("urllib (HTTPS over TCP)", "TCP", facts["group"], facts["post_quantum"],
                "(Python's ssl: group unknown)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the check")
    parser.add_argument("--port", type=int, default=0, help="TCP and UDP port (default: free)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pq-demo-"))
    pki = make_dev_pki(work / "pki", hostnames=("localhost",))
    port = args.port or _free_port()
    base = f"https://127.0.0.1:{port}"
    log = work / "hypercorn-pq.log"
    print(f"Starting hypercorn-pq --pq with examples/asgi_app on 127.0.0.1:{port} (TCP + UDP)")
    with _hypercorn(pki, port, log):
        for line in log.read_text().splitlines():
            if line.startswith("hypercorn-pq:"):
                print("  " + line)
        print("\nWho negotiated what (as recorded by the server for each connection):")
        print(f"  {'client':<34} {'via':<7} {'group':<16} {'verdict':<17}")
        for row in asyncio.run(_quic_rows(base, pki)):
            print(row)
        print(_niquests_row(base, pki))
        print(_tcp_row(base, pki))
        print(
            f"\nOpen it in Chromium over HTTP/3:\n  chromium --enable-quic "
            f"--origin-to-force-quic-on=127.0.0.1:{port} "
            f"--ignore-certificate-errors-spki-list={pki.spki_sha256_b64} {base}/\n"
            f"Server log: {log}"
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
