"""The field tables are the one declaration of every tunnel config key: check that the YAML
reader, the flags, ``--help`` and ``docs/tunnel-config.md`` all agree with them.

The tests walk the tables rather than listing keys, so a key added to a table is tested (and
must be documented) without touching this file; a new kind of value needs a sample below.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pq_quic_plugin.tunnel.cli import build_parser, flag_values
from pq_quic_plugin.tunnel.config import (
    CONNECTOR_FIELDS,
    CONNECTORS_FIELDS,
    EDGE_FIELDS,
    PUBLIC_FIELDS,
    RULE_FIELDS,
    TABLES,
    ConfigError,
    ConfigField,
    ConnectorConfig,
    EdgeConfig,
    FieldTable,
    HostPort,
    kinds,
    load_connector_config,
    load_edge_config,
    parse_service,
)
from pq_quic_plugin.tunnel.config import docs as config_docs
from pq_quic_plugin.tunnel.config.cluster import ClusterConfig, SecretFileValue
from pq_quic_plugin.tunnel.config.edge_fields import CLUSTER_FIELDS
from pq_quic_plugin.tunnel.config.origin_fields import ORIGIN_REQUEST_FIELDS
from pq_quic_plugin.tunnel.config.store_url import StoreValue, parse_redis_url

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "tunnel-config.md"


# --------------------------------------------------------------------------- samples


@dataclass
class Sample:
    """A valid value of a field: as YAML (JSON is YAML) and as flag arguments, with what each
    should become."""

    yaml_value: Any
    from_yaml: Any
    argv: list[str]
    from_flag: Any


def sample(f: ConfigField, tmp_path: Path) -> Sample:
    """A value of ``f`` different from its default, so reaching the config is visible."""
    kind = f.kind
    if isinstance(kind, kinds.BoolValue):
        return Sample(True, True, [], True)
    if isinstance(kind, kinds.IntValue):
        n = kind.low + 1 if kind.low + 1 != f.default else kind.low + 2
        return Sample(n, n, [str(n)], n)
    if isinstance(kind, kinds.DurationValue):
        return Sample("1m30s", 90.0, ["1m30s"], 90.0)
    if isinstance(kind, kinds.LogLevelValue):
        return Sample("debug", "debug", ["debug"], "debug")
    if isinstance(kind, kinds.ChoiceValue):
        word = next(w for w in kind.words if w != f.default)
        return Sample(word.upper(), word, [word], word)
    if isinstance(kind, kinds.PolicyValue):
        other = next(p for p in kind.allowed if p != f.default)
        return Sample(other.value, other, [other.value], other)
    if isinstance(kind, kinds.UrlValue):
        url = "https://report.example.com/pq"
        return Sample(url, url, [url], url)
    if isinstance(kind, kinds.HostnameValue):
        return Sample(
            "Host.Example.COM", "host.example.com", ["host.example.com"], "host.example.com"
        )
    if isinstance(kind, kinds.HostPortValue):
        return Sample(
            "127.0.0.1:4321",
            HostPort("127.0.0.1", 4321),
            ["127.0.0.1:4321"],
            HostPort("127.0.0.1", 4321),
        )
    if isinstance(kind, kinds.HostPortListValue):
        both = (HostPort("127.0.0.1", 1), HostPort("::1", 2))
        return Sample(["127.0.0.1:1", "[::1]:2"], both, ["127.0.0.1:1", "[::1]:2"], both)
    if isinstance(kind, kinds.PathValue):
        path = tmp_path / f"sample-{f.attr}.pem"
        path.write_text("placeholder\n")
        return Sample(path.name, path, [str(path)], path)
    if isinstance(kind, StoreValue):
        url = "redis://:pw@127.0.0.1:6390/1"
        return Sample(url, parse_redis_url(url), [url], parse_redis_url(url))
    if isinstance(kind, SecretFileValue):
        path = _cluster_secret(tmp_path)
        return Sample(path.name, path, [str(path)], path)
    if isinstance(kind, kinds.GroupsValue):
        groups = ("X25519MLKEM768", "x25519")
        return Sample(["x25519mlkem768", "X25519"], groups, ["X25519MLKEM768,x25519"], groups)
    if isinstance(kind, kinds.ServiceValue):
        text = "https://origin.example.com:8443"
        return Sample(text, parse_service(text), [text], parse_service(text))
    if isinstance(kind, kinds.RegexValue):
        return Sample("^/api/", "^/api/", ["^/api/"], "^/api/")
    if isinstance(kind, kinds.TextValue):
        return Sample("NO", "NO", ["NO"], "NO")  # YAML 1.1 would read NO as false
    if isinstance(kind, kinds.HostHeaderValue):
        host = "App.Internal:8080"  # kept as written: it is what the origin sees
        return Sample(host, host, [host], host)
    if isinstance(kind, kinds.IngressValue):
        rules = [
            {"hostname": "a.example.com", "service": "http://127.0.0.1:1"},
            {"service": "http_status:404"},
        ]
        return Sample(rules, 2, [], None)
    raise AssertionError(f"{f.key}: add a sample for {type(kind).__name__} to this test")


def _cluster_secret(tmp_path: Path) -> Path:
    """A valid cluster secret file: 32 bytes, mode 0600."""
    path = tmp_path / "cluster.key"
    path.write_bytes(b"k" * 32)
    path.chmod(0o600)
    return path


def _cluster(tmp_path: Path) -> dict[str, Any]:
    """A Redis store and a valid ``cluster`` section, for the edge.yaml of a cluster."""
    secret = _cluster_secret(tmp_path).name
    return {
        "store": "redis://127.0.0.1:6390/0",
        "cluster": {"relay": "127.0.0.1:7900", "secret-file": secret},
    }


def _all_fields() -> Iterator[tuple[FieldTable, ConfigField]]:
    for table in TABLES:
        for f in table.fields:
            yield table, f


def _ids(items: Any) -> list[str]:
    return [f"{t.name}.{f.key or f.attr}" for t, f in items]


FILE_FIELDS = [(t, f) for t, f in _all_fields() if f.key is not None]
OPTIONAL_FIELDS = [(t, f) for t, f in FILE_FIELDS if not f.required]
FLAG_FIELDS = [(t, f) for t, f in _all_fields() if f.flag is not None]


# --------------------------------------------------------------------------- (a) the reader


def _write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in data.items()))
    return path


def _edge_base(tmp_path: Path, minimal: bool = False) -> dict[str, Any]:
    """A valid edge.yaml; not ``minimal``: with every key a sample may replace."""
    for name in ("cert.pem", "key.pem", "pq-cert.pem", "pq-key.pem"):
        (tmp_path / name).write_text("placeholder\n")
    pair = {"certfile": "cert.pem", "keyfile": "key.pem"}
    pq_pair = {} if minimal else {"pq-certfile": "pq-cert.pem", "pq-keyfile": "pq-key.pem"}
    return {
        "public": {"bind": "127.0.0.1:8443", **pair, **pq_pair},
        "connectors": {"bind": "127.0.0.1:7844", **({} if minimal else pair), **pq_pair},
    }


def _read_back(table: FieldTable, f: ConfigField, value: Any, tmp_path: Path) -> Any:
    """Write a minimal valid file with ``f`` set to ``value``, load it, return the attribute."""
    assert f.key is not None
    if table is CONNECTOR_FIELDS:
        return getattr(
            load_connector_config(_write(tmp_path, "config.yml", {f.key: value})), f.attr
        )
    if table is ORIGIN_REQUEST_FIELDS:
        settings = {"originRequest": {f.key: value}}
        config = load_connector_config(_write(tmp_path, "config.yml", settings))
        return getattr(config.origin_request, f.attr)
    if table is RULE_FIELDS:
        rule = {"hostname": "base.example.com", "service": "https://localhost:8443", f.key: value}
        rules = {"ingress": [rule, {"service": "http_status:404"}]}
        return getattr(
            load_connector_config(_write(tmp_path, "config.yml", rules)).ingress[0], f.attr
        )
    data = _edge_base(tmp_path)
    if table is EDGE_FIELDS:
        if f.key == "cluster":  # a cluster needs a Redis store
            data["store"] = _cluster(tmp_path)["store"]
        data[f.key] = value
        return getattr(load_edge_config(_write(tmp_path, "edge.yaml", data)), f.attr)
    if table is CLUSTER_FIELDS:
        data.update(_cluster(tmp_path))
        if f.key == "server-name":  # only with a CA file (read when dialling, not here)
            data["cluster"]["ca-file"] = data["cluster"]["secret-file"]
        data["cluster"][f.key] = value
        return getattr(load_edge_config(_write(tmp_path, "edge.yaml", data)).cluster, f.attr)
    section = {PUBLIC_FIELDS.name: "public", CONNECTORS_FIELDS.name: "connectors"}[table.name]
    if f.key == "post-quantum":  # an ML-DSA pair needs a post-quantum policy (auth_pairs.py)
        data[section] = {k: v for k, v in data[section].items() if not k.startswith("pq-")}
    data[section][f.key] = value
    return getattr(getattr(load_edge_config(_write(tmp_path, "edge.yaml", data)), section), f.attr)


@pytest.mark.parametrize("table, f", FILE_FIELDS, ids=_ids(FILE_FIELDS))
def test_every_key_is_read_from_yaml(table: FieldTable, f: ConfigField, tmp_path: Path) -> None:
    if f.key == "cluster":  # read through its own table, tested there
        value = _read_back(table, f, _cluster(tmp_path)["cluster"], tmp_path)
        assert isinstance(value, ClusterConfig) and value.relay.port == 7900
        return
    if isinstance(f.kind, kinds.SectionValue):  # read through its own table, tested there
        value = _read_back(table, f, _edge_base(tmp_path)[f.attr], tmp_path)
        assert value.bind.port in (8443, 7844)
        return
    if isinstance(f.kind, kinds.OriginRequestValue):  # read through its own table, as above
        value = _read_back(table, f, {"connectTimeout": "5s"}, tmp_path)
        assert value.connect_timeout == 5.0 and value.given() == ("connect_timeout",)
        return
    s = sample(f, tmp_path)
    value = _read_back(table, f, s.yaml_value, tmp_path)
    if isinstance(f.kind, kinds.IngressValue):
        assert len(value) == s.from_yaml and value[-1].is_catch_all
    else:
        assert value == s.from_yaml


@pytest.mark.parametrize("table, f", OPTIONAL_FIELDS, ids=_ids(OPTIONAL_FIELDS))
def test_every_absent_key_takes_the_table_default(
    table: FieldTable, f: ConfigField, tmp_path: Path
) -> None:
    """A minimal file (the required keys only, or one unrelated key) gives the defaults."""
    expected = f.default_value()
    if isinstance(f.kind, (kinds.PathValue, StoreValue)) and expected is not None:
        expected = tmp_path / expected  # relative to the file, like a written path
    if table is CONNECTOR_FIELDS:
        given = {"edge-server-name": "e.example"} if f.attr == "tunnel" else {"tunnel": "t"}
        config: Any = load_connector_config(_write(tmp_path, "config.yml", given))
    elif table is RULE_FIELDS:
        minimal = {"ingress": [{"service": "http_status:404"}]}
        config = load_connector_config(_write(tmp_path, "config.yml", minimal)).ingress[0]
    elif table is ORIGIN_REQUEST_FIELDS:  # not given at any level: None, the code's default
        given = {"tunnel": "t", "originRequest": {}}
        config = load_connector_config(_write(tmp_path, "config.yml", given)).origin_request
    elif table is CLUSTER_FIELDS:
        data = {**_edge_base(tmp_path, minimal=True), **_cluster(tmp_path)}
        config = load_edge_config(_write(tmp_path, "edge.yaml", data)).cluster
    else:
        edge = load_edge_config(_write(tmp_path, "edge.yaml", _edge_base(tmp_path, minimal=True)))
        config = {
            EDGE_FIELDS.name: edge,
            PUBLIC_FIELDS.name: edge.public,
            CONNECTORS_FIELDS.name: edge.connectors,
        }[table.name]
        if table is CONNECTORS_FIELDS and f.attr in ("certfile", "keyfile"):
            expected = getattr(edge.public, f.attr)  # the default is "the `public` pair"
    assert getattr(config, f.attr) == expected


def test_the_dataclasses_take_their_defaults_from_the_tables() -> None:
    assert ConnectorConfig() == ConnectorConfig(
        **{f.attr: f.default_value() for f in CONNECTOR_FIELDS.file_fields()}
    )
    with pytest.raises(TypeError, match="disagree"):
        CONNECTOR_FIELDS.check_dataclass(EdgeConfig)


# --------------------------------------------------------------------------- (b) the flags


def _flag_argv(f: ConfigField, s: Sample) -> list[str]:
    assert f.flag is not None
    if f.flag.positional:
        return s.argv
    if f.kind.action == "store_true":
        return [f.flag.name]
    if f.kind.action == "append":
        return [a for value in s.argv for a in (f.flag.name, value)]
    return [f.flag.name, *s.argv]


@pytest.mark.parametrize("table, f", FLAG_FIELDS, ids=_ids(FLAG_FIELDS))
def test_every_flag_is_parsed_and_reaches_the_config(
    table: FieldTable, f: ConfigField, tmp_path: Path
) -> None:
    s = sample(f, tmp_path)
    quick_rule = f.attr in ("origin_ca_file", "origin_server_name")  # options of --url's rule
    if table is CONNECTOR_FIELDS:
        url = ["--url", "https://127.0.0.1:8443"] if quick_rule else []
        args = build_parser().parse_args(["run", *url, *_flag_argv(f, s)])
        config: Any = ConnectorConfig().with_overrides(**flag_values(args, table))
        if quick_rule:
            config = config.ingress[0]
    else:
        assert table is EDGE_FIELDS, "a table with flags needs a subcommand in this test"
        edge_yaml = _write(tmp_path, "edge.yaml", _edge_base(tmp_path))
        args = build_parser().parse_args(["edge", "--config", str(edge_yaml), *_flag_argv(f, s)])
        config = load_edge_config(edge_yaml).with_overrides(**flag_values(args, table))
    if f.key is None and not quick_rule:  # --url: one catch-all rule to the service
        assert f.attr == "url"
        assert config.ingress[0].is_catch_all and config.ingress[0].service == s.from_flag
    else:
        assert getattr(config, f.attr) == s.from_flag


def test_flag_errors_name_flags_that_exist() -> None:
    parser_flags = _parser_flags()
    for attr, bad in [
        ("ha_connections", "0"),
        ("retries", "-1"),
        ("groups", "nope"),
        ("edge", ["x"]),
        ("grace_period", "soon"),
        ("url", "ftp://x"),
    ]:
        with pytest.raises(ConfigError) as info:
            ConnectorConfig().with_overrides(**{attr: bad})
        assert info.value.key in parser_flags, info.value
    with pytest.raises(ConfigError) as info:
        ConnectorConfig().with_overrides(groups="x25519", post_quantum=True)
    assert str(info.value).startswith("--groups: ")
    with pytest.raises(ConfigError) as info:
        ConnectorConfig().check_runnable()
    named = set(re.findall(r"--[a-z-]+", str(info.value)))
    assert named and named <= parser_flags, info.value


# --------------------------------------------------------------------------- (c) the docs


def _help(*argv: str) -> str:
    """``pq-tunnel ARGV --help`` as the parser prints it (public argparse API only)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue()


def _subcommands() -> list[str]:
    match = re.search(r"\{([a-z,]+)\}", _help())
    assert match, _help()
    return match.group(1).split(",")


def _parser_flags() -> set[str]:
    """Every option string of every ``pq-tunnel`` subcommand, from their ``--help``."""
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", _help()))
    for command in _subcommands():
        flags.update(re.findall(r"(?<![\w-])--[a-z][a-z-]*", _help(command)))
    return flags


def _section(text: str, name: str) -> str | None:
    begin, end = config_docs.begin_marker(name), config_docs.end_marker(name)
    start, stop = text.find(begin), text.find(end)
    return None if start < 0 or stop < start else text[start + len(begin) : stop]


def _first_column(section: str) -> list[str]:
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]  # type: ignore[union-attr]


def reference_problems(text: str) -> list[str]:
    """How ``text`` (the docs) disagrees with the tables and the parser; empty when it agrees.

    Each table's key reference must list exactly its keys, each flag reference exactly its
    flags, every ``--flag`` anywhere in the page must exist, and the example files must use
    only keys the tables declare.
    """
    problems: list[str] = []
    for table in TABLES:
        documented = _section(text, f"{table.name}-keys")
        if documented is None:
            problems.append(f"no generated key reference for {table.title}")
            continue
        listed = _first_column(documented)
        for key in sorted(set(table.keys) - set(listed)):
            problems.append(f"{table.title}: key {key!r} is accepted but not documented")
        for key in sorted(set(listed) - set(table.keys)):
            problems.append(f"{table.title}: key {key!r} is documented but not accepted")
        if table.flagged():
            flag_doc = _section(text, f"{table.name}-flags") or ""
            listed_flags = {usage.split()[0] for usage in _first_column(flag_doc)}
            declared = {f.flag.name for f in table.flagged() if f.flag}
            for flag in sorted(declared - listed_flags):
                problems.append(f"{table.title}: flag {flag} is accepted but not documented")
            for flag in sorted(listed_flags - declared):
                problems.append(f"{table.title}: flag {flag} is documented but not accepted")
    mine = re.sub(r"hypercorn-pq[^`]*", "", text)  # another program's flags
    for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", mine)) - _parser_flags()):
        problems.append(f"the page names {flag}, which pq-tunnel does not accept")
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        problems += _example_problems(yaml.safe_load(block))
    return problems


def _example_problems(data: dict[str, Any]) -> list[str]:
    table = EDGE_FIELDS if "public" in data else CONNECTOR_FIELDS
    problems = [f"example uses unknown key {k!r}" for k in data if k not in table.keys]
    sections = {"public": PUBLIC_FIELDS, "connectors": CONNECTORS_FIELDS}
    for name, sub in sections.items():
        if table is EDGE_FIELDS:
            problems += [
                f"example uses unknown key {name}.{k}"
                for k in data.get(name, {})
                if k not in sub.keys
            ]
    for rule in data.get("ingress", []) if table is CONNECTOR_FIELDS else []:
        problems += [
            f"example uses unknown rule key {k!r}" for k in rule if k not in RULE_FIELDS.keys
        ]
    return problems


def test_the_docs_reference_agrees_with_the_tables() -> None:
    assert reference_problems(DOC.read_text()) == []


def test_the_generated_reference_is_up_to_date() -> None:
    text = DOC.read_text()
    assert config_docs.update(text) == text, "run python -m pq_quic_plugin.tunnel.config.docs"
    check = subprocess.run(
        [sys.executable, "-m", "pq_quic_plugin.tunnel.config.docs", "--check", str(DOC)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_the_docs_check_catches_drift() -> None:
    """The check can fail: a missing row, an extra row, a stale flag in prose, a bad example."""
    text = DOC.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `retries` |"))
    assert any(
        "'retries' is accepted but not documented" in p
        for p in reference_problems(text.replace(row + "\n", ""))
    )
    extra = text.replace(row, row + "\n| `retry-forever` | x | x | x |")
    assert any(
        "'retry-forever' is documented but not accepted" in p for p in reference_problems(extra)
    )
    flag_row = next(line for line in text.splitlines() if line.startswith("| `--retries N` |"))
    assert any(
        "flag --retries is accepted but not documented" in p
        for p in reference_problems(text.replace(flag_row + "\n", ""))
    )
    assert any("--tries" in p for p in reference_problems(text + "\nUse `--tries 3`.\n"))
    assert any(
        "'retry'" in p for p in reference_problems(text + "\n```yaml\nretry: 3\ningress: []\n```\n")
    )
    with pytest.raises(ValueError, match="connector-keys"):
        config_docs.update(text.replace(config_docs.begin_marker("connector-keys"), ""))


# --------------------------------------------------------------------------- (d) --help


@pytest.mark.parametrize("command, table", [("run", CONNECTOR_FIELDS), ("edge", EDGE_FIELDS)])
def test_help_lists_every_flag(command: str, table: FieldTable) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pq_quic_plugin.tunnel", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for f in table.flagged():
        assert f.flag is not None
        assert re.search(rf"(?<![\w-]){re.escape(f.flag.name)}(?![\w-])", out), f.flag.name
        assert f.flag.help.split()[0] in out


def _arguments_without_help(text: str) -> list[str]:
    """Entries of a ``--help`` text's argument sections that have no help text.

    argparse prints an entry as two spaces and the invocation, then its help after a gap of
    two or more spaces or on the next, deeper-indented line; an entry with neither has none.
    """
    missing: list[str] = []
    lines = text.splitlines()
    in_arguments = False
    for i, line in enumerate(lines):
        if line.endswith(":") and not line.startswith(" "):
            in_arguments = line in ("positional arguments:", "options:", "optional arguments:")
            continue
        if not in_arguments or not re.match(r"  \S", line):
            continue
        has_gap = re.match(r"  \S.*?\S {2,}\S", line)
        continued = i + 1 < len(lines) and re.match(r" {3,}\S", lines[i + 1])
        if not has_gap and not continued:
            missing.append(line.strip())
    return missing


def test_every_argument_has_help() -> None:
    assert _arguments_without_help("options:\n  --bare\n  --fine      ok\n") == ["--bare"]
    for command in ["", *_subcommands()]:
        text = _help(*filter(None, [command]))
        assert _arguments_without_help(text) == [], f"pq-tunnel {command}"
    assert "ID for delete" not in _help("create")
