"""`make demo ARGS=--once` keeps working: it runs the real chain (the edge and the origin holding
an ML-DSA-65 and an ECDSA certificate) and prints, for every client and every tunnel hop, the
key-exchange group and how the server authenticated.

The table is read back by the columns its own header names, so a row that drifts out of
alignment fails here too. Every value checked comes from the servers' records of real
handshakes; what they must be follows from what each client offers (our clients and our TCP
context offer ML-DSA first, stock aioquic and Python's ``ssl`` on OpenSSL 3.0 offer none).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PQ_KX = ("X25519MLKEM768", "post-quantum")
CLASSICAL_KX = ("x25519", "NOT post-quantum")
ML_DSA = "ML-DSA-65 (post-quantum)"
ECDSA = "ECDSA-P256-SHA256 (classical)"
HOPS = ["visitor-edge", "edge-connector", "connector-origin"]
HEADER = ("via", "group", "key exchange", "authentication")


@dataclass(frozen=True)
class Row:
    via: str
    group: str
    kx: str
    auth: str


@dataclass(frozen=True)
class Visit:
    summary: str
    hops: dict[str, Row]


def _starts(header: str) -> list[int]:
    return [header.index(name) for name in HEADER]


def _row(line: str, starts: list[int]) -> tuple[str, Row]:
    """Cut ``line`` at the header's column starts; the note after the last column is dropped."""
    bounds = [*starts, len(line)]
    cells = [line[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]
    auth = re.split(r"\s{2,}", cells[3])[0]  # two spaces or more end the column
    return line[: starts[0]].strip(), Row(cells[0], cells[1], cells[2], auth)


def _direct(section: str) -> dict[tuple[str, str], Row]:
    lines = section.splitlines()
    header = next(line for line in lines if line.startswith("  client "))
    starts = _starts(header)
    rows = {}
    for line in lines[lines.index(header) + 1 :]:
        if not line.strip():
            continue
        label, row = _row(line, starts)
        rows[(label, row.via)] = row
    return rows


def _tunnel(section: str) -> dict[str, Visit]:
    lines = section.splitlines()
    header = next(line for line in lines if line.startswith("  client"))
    starts = _starts(header)
    visits: dict[str, Visit] = {}
    label = ""
    for line in lines[lines.index(header) + 1 :]:
        if line.startswith("    hop "):
            hop, row = _row(line, starts)
            visits[label].hops[hop.removeprefix("hop ")] = row
        elif line.startswith("  ") and ": " in line:
            label, summary = line.strip().split(": ", 1)
            visits[label] = Visit(summary, {})
        elif line.strip():
            break
    return visits


def _spki(cert: Path) -> str:
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    der = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    out = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--once"], capture_output=True, text=True, timeout=240
    )
    logs = re.search(r"Logs: (\S+)", out.stdout)
    try:
        assert out.returncode == 0, out.stderr + out.stdout
        assert logs, out.stdout
        yield out.stdout + f"\n[logs {logs.group(1)}]"
    finally:
        if logs and Path(logs.group(1)).parent == Path(tempfile.gettempdir()):
            shutil.rmtree(logs.group(1), ignore_errors=True)  # the demo keeps it for its user


def test_direct_rows_show_key_exchange_and_authentication(demo: str) -> None:
    direct = _direct(demo.split("1. Direct to the origin", 1)[1].split("2. Through", 1)[0])
    for policy in ("prefer", "require"):
        row = direct[(f"pq-quic-plugin client ({policy})", "HTTP/3")]
        assert (row.group, row.kx, row.auth) == (*PQ_KX, ML_DSA), row
    stock = direct[("stock aioquic client (classical)", "HTTP/3")]
    assert (stock.group, stock.kx, stock.auth) == (*CLASSICAL_KX, ECDSA), stock
    # qh3 is an independent stack: its key exchange is ours to check, its signature list is
    # its own (no ML-DSA today); either way the server must have reported a real scheme.
    niquests = direct[("niquests over qh3 (independent)", "HTTP/3")]
    assert (niquests.group, niquests.kx) == PQ_KX and niquests.auth in (ML_DSA, ECDSA), niquests
    for via in ("HTTP/2", "HTTP/1.1"):
        row = direct[("httpx + pq ssl_context (require)", via)]
        assert (row.group, row.kx, row.auth) == (*PQ_KX, ML_DSA), row
    urllib = direct[("urllib (Python's ssl, classical)", "HTTP/1.1")]
    assert (urllib.group, urllib.kx, urllib.auth) == (*CLASSICAL_KX, ECDSA), urllib


def test_every_tunnel_hop_shows_its_authentication(demo: str) -> None:
    visits = _tunnel(demo.split("2. Through the tunnel", 1)[1])
    pq = visits["pq-quic-plugin client (require)"]
    stock = visits["stock aioquic client (classical)"]
    httpx_tcp = visits["httpx + pq ssl_context over TCP (require, HTTP/2)"]
    urllib = visits["urllib (Python's ssl, classical) over TCP"]
    for visit in visits.values():
        assert list(visit.hops) == HOPS, visit
        # The connector offers ML-DSA to the edge and the origin, which both hold one.
        for hop in ("edge-connector", "connector-origin"):
            row = visit.hops[hop]
            assert (row.group, row.kx, row.auth) == (*PQ_KX, ML_DSA), (hop, visit)
        # The summary names exactly the hops the rows show as classically authenticated.
        classical = [hop for hop, row in visit.hops.items() if row.auth != ML_DSA]
        expected = ", ".join(classical) if classical else "post-quantum on every hop"
        assert visit.summary.endswith(expected), visit
    for visit, via in ((pq, "QUIC"), (httpx_tcp, "TCP")):
        row = visit.hops["visitor-edge"]
        assert (row.via, row.group, row.kx, row.auth) == (via, *PQ_KX, ML_DSA), visit
        assert visit.summary == (
            "every hop post-quantum; authentication: post-quantum on every hop"
        ), visit
    for visit, via in ((stock, "QUIC"), (urllib, "TCP")):
        row = visit.hops["visitor-edge"]
        assert (row.via, row.group, row.kx, row.auth) == (via, *CLASSICAL_KX, ECDSA), visit
        assert visit.summary == (
            "NOT post-quantum end to end; authentication: classical on visitor-edge"
        ), visit


def test_chromium_commands_pin_both_edge_certificates(demo: str) -> None:
    """Chromium gets the ML-DSA-65 certificate over TCP and the ECDSA one over HTTP/3
    (docs/auth.md, "Browsers"), so each command must pin both of the edge's leaves."""
    quic = re.search(r"chromium --enable-quic --origin-to-force-quic-on=\S+ (.*)", demo)
    tcp = re.search(r"chromium --disable-quic (.*)", demo)
    assert quic and tcp, demo
    assert quic.group(1) == tcp.group(1)
    assert tcp.group(1).startswith("--host-resolver-rules='MAP localhost 127.0.0.1' ")
    pins = re.search(r"--ignore-certificate-errors-spki-list=(\S+)", tcp.group(1))
    assert pins, tcp.group(1)
    logs = Path(re.findall(r"\[logs (\S+)\]", demo)[-1])
    public = json.loads((logs / "edge.yaml").read_text())["public"]
    served = [_spki(Path(public["pq-certfile"])), _spki(Path(public["certfile"]))]
    assert pins.group(1).split(",") == served
