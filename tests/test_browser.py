"""A real browser: headless Chromium fetches the example app over HTTP/3 from hypercorn-pq.

Over TCP (QUIC off), the same page: tests/test_browser_tcp.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from peers.chromium import dump_dom, screenshot
from servers import free_port, hypercorn_pq

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_chromium_over_http3_gets_x25519mlkem768(pki, tmp_path: Path) -> None:
    port = free_port()
    args = [
        "--pq",
        "--certfile",
        str(pki.cert),
        "--keyfile",
        str(pki.key),
        "-b",
        f"127.0.0.1:{port}",
        "app:app",
    ]
    with hypercorn_pq(args, tmp_path, port):
        url = f"https://127.0.0.1:{port}/"
        dom = dump_dom(url, pki.spki_sha256_b64)
        shot = screenshot(url, tmp_path / "chromium.png", pki.spki_sha256_b64)
    assert "X25519MLKEM768" in dom
    assert "HTTP/3" in dom
    assert "not post-quantum" not in dom and "post-quantum" in dom
    assert shot.stat().st_size > 10_000
    target = os.environ.get("PQ_SCREENSHOT_DIR")
    if target:  # `make screenshots` refreshes the picture in docs/
        shutil.copy(shot, Path(target) / "example-app-chromium-http3.png")
