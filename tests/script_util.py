"""A Python snippet run in a fresh interpreter, for tests of what patches the process.

``install()`` and plugin entry points change aioquic or the group registry for the whole
process; run in a child interpreter, what they leave behind cannot leak into the test session
(nor the session's state into them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent


def run_script(script: str, pki: Any, *path: Path, timeout: float = 120) -> dict[str, Any]:
    """Run ``script`` (``python -c``) with the PKI's cert, key and CA file as its arguments and
    ``path``, tests/ and the repository on PYTHONPATH; return its last line of output, parsed
    as JSON. Fails the test with the script's stderr when it exits non-zero."""
    pythonpath = os.pathsep.join(str(p) for p in [*path, TESTS, TESTS.parent])
    proc = subprocess.run(
        [sys.executable, "-c", script, str(pki.cert), str(pki.key), str(pki.ca_cert)],
        env=dict(os.environ, PYTHONPATH=pythonpath),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
