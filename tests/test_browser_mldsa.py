"""A real browser and post-quantum authentication: headless Chromium against hypercorn-pq holding
an ML-DSA-65 and an ECDSA certificate, over TCP and over HTTP/3, with the CertificateVerify read
off the loopback wire.

The server writes its TLS secrets to ``SSLKEYLOGFILE`` (both listeners honour it), so tshark
decrypts the handshakes and shows which signature scheme each client offered in its ClientHello
and which one the server's CertificateVerify used: the proof comes from the bytes, not from our
own bookkeeping. Chromium trusts both test certificates by their SPKI hashes.

Observed with Debian's Chromium 150: over TCP it offers ML-DSA-44/65/87 (0x0904-0x0906) first
and gets ML-DSA-65; over QUIC its ClientHello lists no ML-DSA (even with
``--enable-features=TlsMldsaSignatures``), so the server answers with ECDSA there. The HTTP/3
test asserts whichever the browser's own ClientHello allows, and fails if the server's choice
does not match it. curl (system OpenSSL 3.0, no ML-DSA) gets ECDSA and is served.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mldsa_tcp_util import Pkis, auth_args, both_pkis
from peers.chromium import dump_dom
from servers import free_port, hypercorn_pq
from tcp_util import CURL, TSHARK, tshark_capture

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ML_DSA = (0x0904, 0x0905, 0x0906)
ML_DSA_65, ECDSA_P256 = 0x0905, 0x0403


@dataclass(frozen=True)
class Wire:
    """What tshark read from one capture: every ClientHello's signature_algorithms and every
    CertificateVerify's scheme, in order."""

    offered: list[list[int]]
    certificate_verify: list[int]


@dataclass(frozen=True)
class Served:
    port: int
    keylog: Path
    spki: str
    pkis: Pkis


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("browser-mldsa")
    pkis: Pkis = both_pkis(directory)
    port = free_port()
    keylog = directory / "server-keys.log"
    env = {"SSLKEYLOGFILE": str(keylog)}  # both listeners write their secrets there
    spki = f"{pkis.ml_dsa.spki_sha256_b64},{pkis.ecdsa.spki_sha256_b64}"
    with hypercorn_pq(auth_args(pkis, port), directory, port, env=env) as server:
        yield Served(port, keylog, spki, pkis)
        log = server.log()
    assert "Traceback" not in log, log[-3000:]


def read_wire(pcap: Path, keylog: Path, port: int) -> Wire:
    """Decrypt with the server's key log and list the handshake's signature facts."""
    assert TSHARK is not None
    out = subprocess.run(
        [
            TSHARK,
            "-r",
            str(pcap),
            "-o",
            f"tls.keylog_file:{keylog}",
            "-d",
            f"tcp.port=={port},tls",
            "-Y",
            "tls.handshake.type==1 || tls.handshake.type==15",
            "-T",
            "fields",
            "-e",
            "tls.handshake.type",
            "-e",
            "tls.handshake.sig_hash_alg",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    offered: list[list[int]] = []
    verify: list[int] = []
    for line in out.stdout.splitlines():
        types, _, algs = line.partition("\t")
        values = [int(v, 0) for v in algs.split(",") if v]
        if "1" in types.split(","):
            offered.append(values)
        elif "15" in types.split(",") and values:
            verify.append(values[-1])
    return Wire(offered, verify)


def cell(dom: str, name: str) -> str:
    match = re.search(rf'id="{name}">(.*?)</td>', dom, re.S)
    assert match, f"no cell {name!r} in the page"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def auth_verdict(dom: str) -> str:
    match = re.search(r'id="auth-verdict">([^<]*)<', dom)
    assert match, "the page has no authentication verdict"
    return match.group(1).strip()


def test_chromium_over_tcp_authenticates_with_ml_dsa_65(served: Served, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{served.port}/"
    with tshark_capture(f"tcp port {served.port}", tmp_path / "tcp.pcap") as pcap:
        dom = dump_dom(url, served.spki, force_quic=False)
    wire = read_wire(pcap, served.keylog, served.port)
    assert wire.offered and all(set(ML_DSA) <= set(o) for o in wire.offered), wire.offered
    assert wire.certificate_verify and set(wire.certificate_verify) == {ML_DSA_65}, wire
    assert cell(dom, "protocol") == "HTTP/2" and cell(dom, "transport") == "tcp"
    assert "X25519MLKEM768" in cell(dom, "group")
    assert cell(dom, "auth") == "post-quantum: ML-DSA-65 (0x0905)"
    assert auth_verdict(dom) == "post-quantum"


def test_chromium_over_http3_gets_what_its_client_hello_allows(
    served: Served, tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{served.port}/"
    with tshark_capture(f"udp port {served.port}", tmp_path / "quic.pcap") as pcap:
        dom = dump_dom(url, served.spki, force_quic=True)
    wire = read_wire(pcap, served.keylog, served.port)
    assert cell(dom, "protocol") == "HTTP/3" and "X25519MLKEM768" in cell(dom, "group")
    assert wire.offered and wire.certificate_verify, wire  # decrypted with the server's secrets
    offers_ml_dsa = any(ML_DSA_65 in o for o in wire.offered)
    if offers_ml_dsa:  # a Chromium whose QUIC stack offers ML-DSA
        assert set(wire.certificate_verify) == {ML_DSA_65}, wire
        assert auth_verdict(dom) == "post-quantum"
    else:  # Chromium 150: QUIC's ClientHello has no ML-DSA, so ECDSA is the right answer
        assert set(wire.certificate_verify) == {ECDSA_P256}, wire
        assert cell(dom, "auth") == "classical: ECDSA-P256-SHA256 (0x0403)"
        assert auth_verdict(dom) == "classical"


def test_curl_gets_the_ecdsa_certificate_and_is_served(served: Served, tmp_path: Path) -> None:
    assert CURL is not None, "apt-get install curl"
    url = f"https://localhost:{served.port}/api/connection"
    with tshark_capture(f"tcp port {served.port}", tmp_path / "curl.pcap") as pcap:
        out = subprocess.run(
            [CURL, "-sS", "--cacert", str(served.pkis.cas), "--max-time", "20", url],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 0, out.stderr
    assert '"signature_scheme":"ECDSA-P256-SHA256"' in out.stdout
    wire = read_wire(pcap, served.keylog, served.port)
    assert wire.offered and not any(set(ML_DSA) & set(o) for o in wire.offered)
    assert wire.certificate_verify == [ECDSA_P256]
