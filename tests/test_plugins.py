"""Third-party groups through pluggy: a real package installed with pip, found by entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from plugin_util import x25519_copy
from script_util import run_script

from pq_quic_plugin import available_groups
from pq_quic_plugin.plugins import GroupConflictError

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

    result = run_script(HANDSHAKE_SCRIPT, pki, site)
    assert result["client"] == result["server"] == "X25519MLKEM1024Example"
    assert result["echo"] == "ping over post-quantum QUIC"
    # Built-ins keep their place in front; the plugin's group is added after them.
    assert result["names"][0] == "X25519MLKEM768"
    assert result["names"][-1] == "X25519MLKEM1024Example"


def test_a_plugin_cannot_replace_a_builtin_codepoint() -> None:
    with x25519_copy(0x11EC, "Impostor"):  # tries to take over X25519MLKEM768's codepoint
        with pytest.raises(GroupConflictError, match="Impostor .*clashes with X25519MLKEM768"):
            available_groups()
    assert available_groups()[0].name == "X25519MLKEM768"
