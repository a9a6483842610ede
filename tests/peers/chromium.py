"""Headless Chromium (Debian's package) as a real HTTP/3 browser.

Chromium offers X25519MLKEM768 over QUIC by default. It does not follow Alt-Svc to a server
whose certificate is not publicly trusted, so HTTP/3 is forced per origin, and the throw-away
certificate is trusted by its SPKI hash (see shared/notes/independent-peers.md).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _flags(url: str, spki_sha256_b64: str, force_quic: bool) -> list[str]:
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed: apt-get install chromium")
    origin = urlsplit(url).netloc
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
        f"--ignore-certificate-errors-spki-list={spki_sha256_b64}",
    ]
    if force_quic:
        flags += ["--enable-quic", f"--origin-to-force-quic-on={origin}"]
    else:
        flags += ["--disable-quic"]
    return flags


def dump_dom(
    url: str,
    spki_sha256_b64: str,
    force_quic: bool = True,
    timeout: float = 60,
    extra_flags: list[str] | None = None,
) -> str:
    """The page's DOM after scripts ran; raises with Chromium's stderr on a QUIC failure."""
    out = subprocess.run(
        [*_flags(url, spki_sha256_b64, force_quic), *(extra_flags or []), "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if "ERR_QUIC_HANDSHAKE_FAILED" in out.stderr or not out.stdout.strip():
        raise RuntimeError(f"chromium could not load {url}:\n{out.stderr[-2000:]}")
    return out.stdout


def screenshot(
    url: str,
    path: Path,
    spki_sha256_b64: str,
    force_quic: bool = True,
    size: str = "1100,800",
    timeout: float = 60,
    extra_flags: list[str] | None = None,
) -> Path:
    subprocess.run(
        [
            *_flags(url, spki_sha256_b64, force_quic),
            *(extra_flags or []),
            f"--window-size={size}",
            "--hide-scrollbars",
            f"--screenshot={path}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot for {url}")
    return path
