"""The edge's limit defaults have one home: the ``edge.yaml: public`` field table.

``edge.Limits`` used to repeat the table's defaults (16 / 512 / 60 s) as literals, so a
default changed in ``config/edge_fields.py`` left an edge built without a file (tests, an
embedding program) on the old numbers. These tests hold the two together: an ``edge.yaml``
without the keys loads to exactly ``Limits()``, and a default changed in the table moves
``Limits`` with it. The visitor queue's numbers (``QUEUE_WAIT``, ``QUEUE_FACTOR``) are the ones
the key's documentation states.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pq_quic_plugin.tunnel.config import load_edge_config
from pq_quic_plugin.tunnel.config.edge_fields import PUBLIC_FIELDS
from pq_quic_plugin.tunnel.edge.limits import QUEUE_FACTOR, QUEUE_WAIT, Limits


def _minimal_edge_yaml(tmp_path: Path) -> Path:
    """An edge.yaml with only what is required: no limit keys at all."""
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("placeholder\n")
    path = tmp_path / "edge.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            public:
              bind: 127.0.0.1:8443
              certfile: cert.pem
              keyfile: key.pem
            connectors:
              bind: 127.0.0.1:7844
            """
        )
    )
    return path


def test_limits_default_to_what_an_edge_yaml_without_the_keys_loads(tmp_path: Path) -> None:
    public = load_edge_config(_minimal_edge_yaml(tmp_path)).public
    assert Limits() == Limits.of(public)


def test_a_default_changed_in_the_field_table_changes_limits() -> None:
    """In a fresh interpreter, give the table other defaults before ``limits`` is imported:
    ``Limits()`` must follow (with literal defaults it stayed at 16 / 512 / 60)."""
    script = textwrap.dedent(
        """\
        import json
        from pq_quic_plugin.tunnel.config.edge_fields import PUBLIC_FIELDS

        for attr, value in (
            ("max_requests_per_visitor", 3),
            ("max_requests_per_tunnel", 7),
            ("body_idle_timeout", 2.5),
        ):
            # The frozen field, changed in place as an edit of edge_fields.py would.
            object.__setattr__(PUBLIC_FIELDS.by_attr(attr), "default", value)

        from pq_quic_plugin.tunnel.edge.limits import Limits

        limits = Limits()
        print(json.dumps([limits.per_visitor, limits.per_tunnel, limits.body_idle_timeout]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [3, 7, 2.5]


def test_the_visitor_queue_numbers_are_the_ones_the_docs_state() -> None:
    doc = PUBLIC_FIELDS.by_key("max-requests-per-visitor").doc
    assert f"up to {QUEUE_FACTOR} times this many" in doc
    assert f"for at most {QUEUE_WAIT:g}s" in doc
