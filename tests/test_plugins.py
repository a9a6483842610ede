"""Third-party groups through pluggy: a real package installed with pip, found by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pq_quic_plugin import available_groups
from pq_quic_plugin.hookspecs import hookimpl
from pq_quic_plugin.plugins import GroupConflictError, register_plugin, unregister_plugin

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

PLUGIN_MODULE = '''
"""A third-party group: X25519 + ML-KEM-1024 under a private-use codepoint."""
from pq_quic_plugin.hookspecs import hookimpl
from pq_quic_plugin.groups import HybridGroup
from pq_quic_plugin.groups.ecdh import X25519Group
from pq_quic_plugin.groups.mlkem import ML_KEM_1024, MLKEMGroup


@hookimpl
def pq_quic_register_groups():
    return [HybridGroup("X25519MLKEM1024Example", 0xFE10, MLKEMGroup(ML_KEM_1024), X25519Group())]
'''

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "pq-quic-example-group"
version = "1.0"
dependencies = []

[project.entry-points.pq_quic_plugin]
example = "pq_quic_example_group"
"""

HANDSHAKE_SCRIPT = """
import json, sys, types
from pathlib import Path
from quic_util import Peer, handshake
import pq_quic_plugin

pki = types.SimpleNamespace(
    cert=Path(sys.argv[1]), key=Path(sys.argv[2]), ca_cert=Path(sys.argv[3])
)
out = handshake(pki, server=Peer("require"),
                client=Peer("require", groups=["x25519mlkem1024example"]))
print(json.dumps({"client": out.group, "server": out.server[0]["group"],
                  "names": [g.name for g in pq_quic_plugin.available_groups()],
                  "echo": out.echo.decode()}))
"""


def test_entry_point_plugin_installed_with_pip_negotiates_end_to_end(pki, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (src / "pq_quic_example_group.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        timeout=180,
    )
    assert list(site.glob("pq_quic_example_group-1.0.dist-info/entry_points.txt"))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(TESTS), str(ROOT)]))
    out = subprocess.run(
        [sys.executable, "-c", HANDSHAKE_SCRIPT, str(pki.cert), str(pki.key), str(pki.ca_cert)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["client"] == result["server"] == "X25519MLKEM1024Example"
    assert result["echo"] == "ping over post-quantum QUIC"
    # Built-ins keep their place in front; the plugin's group is added after them.
    assert result["names"][0] == "X25519MLKEM768"
    assert result["names"][-1] == "X25519MLKEM1024Example"


class _Clash:
    """A plugin that tries to take over X25519MLKEM768's codepoint."""

    @hookimpl
    def pq_quic_register_groups(self):  # type: ignore[no-untyped-def]
        from pq_quic_plugin.groups.ecdh import X25519Group

        impostor = X25519Group()
        impostor.codepoint = 0x11EC  # type: ignore[misc]
        impostor.name = "Impostor"  # type: ignore[misc]
        return [impostor]


def test_a_plugin_cannot_replace_a_builtin_codepoint() -> None:
    plugin = _Clash()
    register_plugin(plugin, name="clash")
    try:
        with pytest.raises(GroupConflictError, match="Impostor .*clashes with X25519MLKEM768"):
            available_groups()
    finally:
        unregister_plugin(plugin)
    assert available_groups()[0].name == "X25519MLKEM768"
