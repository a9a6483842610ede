"""The edge's config file (edge.yaml).

Every mistake names the file, the line and the key (config_util.py writes the files and
checks that).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from config_util import located_error, write

from pq_quic_plugin.policy import Policy
from pq_quic_plugin.tunnel.config import (
    HostPort,
    load_edge_config,
)

# --------------------------------------------------------------------------- edge.yaml


def edge_files(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "conn-cert.pem", "conn-key.pem"):
        (tmp_path / name).write_text("placeholder\n")


def test_edge_config(tmp_path: Path) -> None:
    edge_files(tmp_path)
    path = write(
        tmp_path,
        """\
        public:
          bind: 127.0.0.1:8443
          certfile: cert.pem
          keyfile: key.pem
          pq: require
        connectors:
          bind: "[::1]:7844"
          post-quantum: require
          groups: [x25519mlkem768, SecP256r1MLKEM768]
        store: data/tunnels.db
        metrics: 127.0.0.1:9100
        loglevel: warning
        grace-period: 10
        edge-id: edge-1
        location: lab
        """,
        "edge.yaml",
    )
    cfg = load_edge_config(path)
    assert cfg.public.bind == HostPort("127.0.0.1", 8443) and cfg.public.pq is Policy.REQUIRE
    assert cfg.public.certfile == tmp_path / "cert.pem"
    assert cfg.connectors.certfile == cfg.public.certfile  # defaults to the public pair
    assert cfg.connectors.keyfile == cfg.public.keyfile
    assert cfg.connectors.post_quantum is Policy.REQUIRE
    assert cfg.connectors.groups == ("X25519MLKEM768", "SecP256r1MLKEM768")
    assert cfg.connectors.group_policy().names == ["X25519MLKEM768", "SecP256r1MLKEM768"]
    assert cfg.store == tmp_path / "data/tunnels.db"
    assert cfg.metrics.port == 9100 and cfg.loglevel == "warning" and cfg.grace_period == 10
    assert cfg.edge_id == "edge-1" and cfg.location == "lab"


def test_edge_defaults(tmp_path: Path) -> None:
    edge_files(tmp_path)
    path = write(
        tmp_path,
        """\
        public: {bind: "0.0.0.0:0", certfile: cert.pem, keyfile: key.pem}
        connectors:
          bind: 127.0.0.1:0
          certfile: conn-cert.pem
          keyfile: conn-key.pem
          post-quantum: off
        """,
        "edge.yaml",
    )
    cfg = load_edge_config(path)
    assert cfg.store == tmp_path / "tunnels.db" and cfg.location == "local"
    assert cfg.public.pq is Policy.PREFER and cfg.connectors.post_quantum is Policy.OFF
    assert cfg.connectors.certfile == tmp_path / "conn-cert.pem"
    assert cfg.metrics == HostPort("127.0.0.1", 0) and cfg.grace_period == 30.0
    assert cfg.edge_id


@pytest.mark.parametrize(
    "public, connectors, line, key, expect",
    [
        (
            "  bind: 127.0.0.1:1\n  certfile: cert.pem\n  keyfile: key.pem\n  pq: off\n",
            "  bind: 127.0.0.1:2\n",
            6,
            "public.pq",
            "use one of: prefer, require",
        ),
        (
            "  bind: 127.0.0.1:1\n  certfile: missing.pem\n  keyfile: key.pem\n",
            "  bind: 127.0.0.1:2\n",
            4,
            "public.certfile",
            "does not exist",
        ),
        (
            "  bind: 127.0.0.1:1\n  certfile: cert.pem\n",
            "  bind: 127.0.0.1:2\n",
            2,
            "public.keyfile",
            "is required",
        ),
        (
            "  bind: 127.0.0.1:1\n  certfile: cert.pem\n  keyfile: key.pem\n",
            "  bind: 127.0.0.1:2\n  groups: [x25519, kyber]\n",
            8,
            "connectors.groups[1]",
            "unknown key-exchange group 'kyber'; valid names: X25519MLKEM768",
        ),
        (
            "  bind: 127.0.0.1:1\n  certfile: cert.pem\n  keyfile: key.pem\n",
            "  bind: 127.0.0.1:2\n  post-quantum: require\n  groups: [x25519]\n",
            9,
            "connectors.groups",
            "needs at least one post-quantum group",
        ),
        (
            "  bind: 127.0.0.1:1\n  certfile: cert.pem\n  keyfile: key.pem\n",
            "  bind: 127.0.0.1:2\n  keyfile: key.pem\n",
            8,
            "connectors.keyfile",
            "give connectors.certfile too",
        ),
        (
            "  bind: 127.0.0.1:1\n  certfile: cert.pem\n  keyfile: key.pem\n",
            "  bind: 127.0.0.1:1\n",
            7,
            "connectors.bind",
            "clashes with public.bind",
        ),
        (
            "  bind: 127.0.0.1:1\n  certfile: cert.pem\n  keyfile: key.pem\n",
            "  bind: 127.0.0.1:2\n  post-quantun: off\n",
            8,
            "connectors.post-quantun",
            "did you mean 'post-quantum'?",
        ),
    ],
)
def test_edge_errors(
    tmp_path: Path, public: str, connectors: str, line: int, key: str, expect: str
) -> None:
    edge_files(tmp_path)
    err = located_error(
        tmp_path, f"# edge\npublic:\n{public}connectors:\n{connectors}", line, key, "edge.yaml"
    )
    assert expect in str(err)


def test_edge_missing_section(tmp_path: Path) -> None:
    located_error(tmp_path, "store: x.db\n", 1, "public", "edge.yaml")
