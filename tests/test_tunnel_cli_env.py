"""``TUNNEL_*`` environment variables, their precedence, and the logs' file and JSON form.

cloudflared users configure connectors through the environment (cloudflared#773 was about
``TUNNEL_POST_QUANTUM``), and containers have nothing else. Every connector setting a flag
can give now has a variable, declared with its field (``ConfigField.env``): a flag beats a
variable, which beats the file, and a bad value names the variable. The tests walk the field
table, so a flag added later is covered (and must declare its variable or say why not).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_config_table import sample
from tunnel_chain import running_chain, start

from pq_quic_plugin.tunnel.cli import build_connector_config, build_parser
from pq_quic_plugin.tunnel.config import (
    CONNECTOR_FIELDS,
    EDGE_FIELDS,
    ConfigError,
    ConfigField,
    ConnectorConfig,
)
from pq_quic_plugin.tunnel.config import docs as config_docs
from tools.loopback import TUNNEL

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "tunnel-config.md"
FROM_ENV = CONNECTOR_FIELDS.from_environment()
#: cloudflared's variable names for the settings it has, which ours must keep.
CLOUDFLARED_NAMES = {
    "post_quantum": "TUNNEL_POST_QUANTUM",
    "metrics": "TUNNEL_METRICS",
    "loglevel": "TUNNEL_LOGLEVEL",
    "logfile": "TUNNEL_LOGFILE",
    "url": "TUNNEL_URL",
    "credentials_file": "TUNNEL_CRED_FILE",
    "edge": "TUNNEL_EDGE",
    "grace_period": "TUNNEL_GRACE_PERIOD",
    "retries": "TUNNEL_RETRIES",
    "protocol": "TUNNEL_PROTOCOL",
    "ca_file": "TUNNEL_CACERT",
    "origin_ca_file": "TUNNEL_ORIGIN_CA_POOL",
}


def test_every_connector_flag_has_a_variable_with_cloudflareds_name() -> None:
    flagged = {f.attr for f in CONNECTOR_FIELDS.flagged()}
    assert flagged == {f.attr for f in FROM_ENV}
    assert all(f.env and re.fullmatch(r"TUNNEL_[A-Z_]+", f.env) for f in FROM_ENV)
    assert {a: CONNECTOR_FIELDS.by_attr(a).env for a in CLOUDFLARED_NAMES} == CLOUDFLARED_NAMES


def _as_variable(f: ConfigField, argv: list[str]) -> str:
    if f.kind.action == "store_true":
        return "true"
    return ",".join(argv)


@pytest.mark.parametrize("f", FROM_ENV, ids=[f.env or "" for f in FROM_ENV])
def test_every_variable_reaches_the_config(f: ConfigField, tmp_path: Path) -> None:
    s = sample(f, tmp_path)
    environ = {f.env: _as_variable(f, s.argv)}
    if f.attr in ("origin_ca_file", "origin_server_name"):  # options of the --url rule
        environ["TUNNEL_URL"] = "https://127.0.0.1:8443"
        rule = ConnectorConfig().with_overrides(environ=environ).ingress[0]
        assert getattr(rule, f.attr) == s.from_flag
        return
    config = ConnectorConfig().with_overrides(environ=environ)
    if f.attr == "url":
        assert config.ingress[0].is_catch_all and config.ingress[0].service == s.from_flag
    else:
        assert getattr(config, f.attr) == s.from_flag


def _config(tmp_path: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    conf = tmp_path / "config.yml"
    conf.write_text(
        "tunnel: demo\nedge: 127.0.0.1:7844\nha-connections: 2\nloglevel: error\n"
        "ingress:\n  - service: http://127.0.0.1:8000\n"
    )
    for name in [f.env for f in FROM_ENV]:
        monkeypatch.delenv(str(name), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_connector_config(build_parser().parse_args(["run", "--config", str(conf), *argv]))


def test_precedence_is_flag_then_variable_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _config(tmp_path, [], monkeypatch).ha_connections == 2
    assert _config(tmp_path, [], monkeypatch, TUNNEL_HA_CONNECTIONS="3").ha_connections == 3
    flagged = _config(tmp_path, ["--ha-connections", "5"], monkeypatch, TUNNEL_HA_CONNECTIONS="3")
    assert flagged.ha_connections == 5
    # An empty variable is not given; a switch from the variable turns on what the file left off.
    both = _config(tmp_path, [], monkeypatch, TUNNEL_LOGLEVEL="", TUNNEL_POST_QUANTUM="yes")
    assert both.loglevel == "error" and both.post_quantum is True
    # The quick tunnel: the variable's URL, the flag's origin CA, both for one rule.
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder\n")
    quick = _config(
        tmp_path, ["--origin-ca-file", str(ca)], monkeypatch, TUNNEL_URL="https://127.0.0.1:9"
    )
    assert [(r.service.text, r.origin_ca_file) for r in quick.ingress] == [
        ("https://127.0.0.1:9", ca)
    ]


@pytest.mark.parametrize(
    "variable, value, words",
    [
        ("TUNNEL_HA_CONNECTIONS", "20", "expected an integer from 1 to 16, got 20"),
        ("TUNNEL_POST_QUANTUM", "maybe", "expected true or false"),
        ("TUNNEL_PROTOCOL", "carrier-pigeon", "use one of"),
        ("TUNNEL_EDGE", "nohost", "nohost"),
        ("TUNNEL_GRACE_PERIOD", "soon", "soon"),
        ("TUNNEL_ORIGIN_CA_POOL", "/etc/hostname", "only with --url"),
    ],
)
def test_a_bad_variable_is_named(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ConnectorConfig().with_overrides(environ={variable: value})
    assert str(info.value).startswith(f"{variable}: ") and words in str(info.value)


def _section(name: str) -> list[list[str]]:
    text = DOC.read_text()
    begin, end = config_docs.begin_marker(name), config_docs.end_marker(name)
    body = text[text.index(begin) + len(begin) : text.index(end)]
    rows = body.strip().splitlines()[2:]
    return [[c.strip().strip("`") for c in row.strip("|").split("|")] for row in rows]


def test_the_docs_list_every_key_with_its_flag_and_variable() -> None:
    """docs/tunnel-config.md's generated tables of sources match the field tables."""
    for table in (CONNECTOR_FIELDS, EDGE_FIELDS):
        listed = _section(f"{table.name}-sources")
        expected = [
            [
                f.key or "(no key)",
                f.flag_usage() if f.flag else "-",
                f.env or "-",
            ]
            for f in table.fields
            if f.key or f.flag or f.env
        ]
        assert listed == expected, table.name
    assert [row for row in _section("connector-sources") if row[2] == "TUNNEL_POST_QUANTUM"] == [
        ["post-quantum", "--post-quantum", "TUNNEL_POST_QUANTUM"]
    ]


@pytest.mark.slow
@pytest.mark.e2e
def test_tunnel_post_quantum_true_runs_strict_with_json_logs(tmp_path: Path) -> None:
    """``TUNNEL_POST_QUANTUM=true`` turns on strict mode over a file that says false, and
    ``TUNNEL_LOG_FORMAT=json`` + ``TUNNEL_LOGFILE`` log one JSON object per line, on standard
    error and in the file, without the tunnel secret."""
    with running_chain(tmp_path, connector=False) as chain:
        config = chain.connector_config(post_quantum=False)
        logfile = tmp_path / "connector.jsonl"
        env = {
            "TUNNEL_POST_QUANTUM": "true",
            "TUNNEL_LOG_FORMAT": "json",
            "TUNNEL_LOGFILE": str(logfile),
        }
        proc = start(
            [*TUNNEL, "run", "--config", str(config)],
            tmp_path / "connector-env.log",
            cwd=tmp_path,
            env=env,
        )
        chain.extra.append(proc)
        chain.wait_connector(proc, config)
        secret = json.loads((tmp_path / "creds.json").read_text())["TunnelSecret"]
        for text in (proc.log(), logfile.read_text()):
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            assert records and all(
                set(r) >= {"time", "level", "logger", "message"} for r in records
            )
            messages = [r["message"] for r in records]
            assert any(m.startswith("Settings: post-quantum:true") for m in messages), messages
            assert "Key exchange policy: require (post-quantum only, no fallback)" in messages
            assert any(
                m.startswith("Using post-quantum key agreement X25519MLKEM768") for m in messages
            )
            assert not any("post-quantum not required" in m for m in messages)
            assert secret not in text
        assert oct(logfile.stat().st_mode & 0o777) == "0o600"
