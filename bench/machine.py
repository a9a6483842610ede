"""The machine and library versions a result was produced on, recorded in every JSON file.

Benchmark numbers mean nothing without them: a result from another CPU, another Python or
another cryptography backend is not comparable, so each run states what it ran on.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import ssl
import subprocess
from typing import Any

DISTRIBUTIONS = (
    "aioquic",
    "cryptography",
    "pyOpenSSL",
    "pqcrypto",
    "qh3",
    "hypercorn",
    "h2",
    "httpx",
    "pq-quic-plugin",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _openssl_version() -> str | None:
    try:
        from cryptography.hazmat.backends.openssl import backend

        return str(backend.openssl_version_text())
    except Exception:  # noqa: BLE001 - informational only
        return None


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def source_info() -> dict[str, Any]:
    """The commit measured, and the package files that differed from it (work not committed
    yet), so that a result says which code produced it."""
    from . import ROOT

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_package_files": git("status", "--porcelain", "pq_quic_plugin").splitlines(),
    }


def machine_info() -> dict[str, Any]:
    """What every result records: the machine and the versions that produced it."""
    from pq_quic_plugin.groups.mlkem import mlkem_backends

    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": {name: _version(name) for name in DISTRIBUTIONS},
        "openssl": _openssl_version(),
        "openssl_of_python_ssl": ssl.OPENSSL_VERSION,
        "mlkem_backends": mlkem_backends(),
        "loadavg_at_end": loadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def run_header(name: str, quick: bool, **machine_extra: Any) -> dict[str, Any]:
    """The first keys of a results file: which benchmark, whether a ``--quick`` run (whose
    numbers mean nothing), the machine (plus ``machine_extra``) and the code measured."""
    return {
        "benchmark": name,
        "quick": quick,
        "machine": machine_info() | machine_extra,
        "source": source_info(),
    }
