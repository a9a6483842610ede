"""The session-wide ``origins`` fixture: the four origin servers of origin_support.py.

A pytest plugin, named in each test_tunnel_origin_* module's ``pytest_plugins`` rather than
imported: an imported fixture is a separate copy per module and would start the four servers once
per module; as a plugin it is registered once, so they start once for all those modules.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from origin_support import APPS, Origins

from tools.loopback import free_port, hypercorn_pq, start, stop
from tools.readiness import wait_listening


@pytest.fixture(scope="session")
def origins(pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    logs = tmp_path_factory.mktemp("origins")
    http_port, pq_port, classical_port, stdlib_port = (free_port() for _ in range(4))
    # A short graceful timeout: hypercorn waits it out at every stop, even when idle.
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key), "--graceful-timeout", "1"]
    hypercorn = [sys.executable, "-m", "hypercorn", "--graceful-timeout", "1", "origin_app:app"]
    plain = start([*hypercorn, "-b", f"127.0.0.1:{http_port}"], logs / "plain.log", cwd=APPS)
    stdlib = start(
        [*hypercorn, *tls, "-b", f"127.0.0.1:{stdlib_port}"], logs / "stdlib-tls.log", cwd=APPS
    )
    try:
        wait_listening(plain, "127.0.0.1", http_port, quic=False)
        wait_listening(stdlib, "127.0.0.1", stdlib_port, quic=False)
        with (
            hypercorn_pq(
                ["--pq", *tls, "-b", f"127.0.0.1:{pq_port}", "origin_app:app"],
                logs,
                port=pq_port,
                cwd=APPS,
            ),
            hypercorn_pq(
                [
                    "--pq",
                    "--pq-groups",
                    "x25519",
                    *tls,
                    "-b",
                    f"127.0.0.1:{classical_port}",
                    "origin_app:app",
                ],
                logs,
                port=classical_port,
                cwd=APPS,
            ),
        ):
            yield Origins(
                f"http://127.0.0.1:{http_port}",
                f"https://127.0.0.1:{pq_port}",
                f"https://127.0.0.1:{classical_port}",
                f"https://127.0.0.1:{stdlib_port}",
                str(pki.ca_cert),
                logs,
            )
    finally:
        stop(plain.proc)
        stop(stdlib.proc)
