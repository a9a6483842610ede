"""A real browser over TCP: headless Chromium fetches the example app from hypercorn-pq --pq
with QUIC switched off, and tshark reads the ServerHello's key share off the loopback wire.

Chromium (Debian's package, its own TLS stack: BoringSSL) offers X25519MLKEM768 over TCP by
default, so this is an independent peer for the post-quantum TCP layer, under both of
hypercorn's worker classes with two worker processes sharing the socket.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from peers.chromium import dump_dom, screenshot
from servers import free_port, hypercorn_pq
from tcp_util import X25519MLKEM768, server_hello_groups, tls_args, tshark_capture

from pq_quic_plugin.devcert import DevPKI

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOT = "example-app-chromium-tcp.png"


def _cell(dom: str, name: str) -> str | None:
    """The text of the example page's table cell ``id=name``."""
    match = re.search(rf'id="{name}">([^<]*)<', dom)
    return match.group(1).strip() if match else None


@pytest.mark.parametrize("worker", ["asyncio", "trio"])
def test_chromium_over_tcp_gets_x25519mlkem768(pki: DevPKI, tmp_path: Path, worker: str) -> None:
    port = free_port()
    args = ["--pq", "-k", worker, "-w", "2", *tls_args(pki, port), "app:app"]
    url = f"https://127.0.0.1:{port}/"
    with hypercorn_pq(args, tmp_path, port) as server:
        with tshark_capture(f"tcp port {port}", tmp_path / "handshake.pcap") as pcap:
            dom = dump_dom(url, pki.spki_sha256_b64, force_quic=False)
        shot = None
        if worker == "asyncio":
            shot = screenshot(url, tmp_path / "chromium.png", pki.spki_sha256_b64, force_quic=False)
        log = server.log()
    assert "X25519MLKEM768" in dom and "(0x11EC)" in dom
    assert _cell(dom, "protocol") == "HTTP/2" and _cell(dom, "transport") == "tcp"
    assert "not post-quantum" not in dom and "post-quantum" in dom
    groups = server_hello_groups(pcap, port)
    assert groups and all(g == X25519MLKEM768 for g in groups), groups
    assert "Traceback" not in log
    if shot is not None:
        assert shot.stat().st_size > 10_000
        target = os.environ.get("PQ_SCREENSHOT_DIR")
        if target:  # refresh the picture in docs/
            shutil.copy(shot, Path(target) / SCREENSHOT)
