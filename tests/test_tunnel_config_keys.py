"""pq-tunnel's config files: unknown keys, wrong types, YAML trouble, and the value parsers.

Every mistake names the file, the line and the key (config_util.py writes the files and
checks that).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from config_util import assert_located, error_of, located_error, write

from pq_quic_plugin.tunnel.config import (
    ConfigError,
    load_connector_config,
    parse_duration,
    parse_hostport,
    parse_service,
)

# --------------------------------------------------------------------------- keys and types


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    err = located_error(
        tmp_path, "tunnel: web\nedge: 127.0.0.1:7844\nha-conections: 4\n", 3, "ha-conections"
    )
    assert "did you mean 'ha-connections'?" in str(err)
    assert "valid keys: tunnel, credentials-file, edge," in str(err)


def test_unknown_rule_key_suggests(tmp_path: Path) -> None:
    err = located_error(
        tmp_path,
        """\
        tunnel: web
        ingress:
          - hostname: a.example.com
            servce: http://127.0.0.1:8000
          - service: http_status:404
        """,
        4,
        "ingress[0].servce",
    )
    assert "did you mean 'service'?" in str(err)
    assert "hostname, path, service, origin-ca-file, origin-server-name" in str(err)


@pytest.mark.parametrize(
    "line, key, expect",
    [
        ("ha-connections: four", "ha-connections", "expected an integer from 1 to 16, got 'four'"),
        ("ha-connections: 17", "ha-connections", "got 17"),
        ("ha-connections: true", "ha-connections", "(a boolean)"),
        ("post-quantum: require", "post-quantum", "expected true or false, got 'require'"),
        ("retries: -1", "retries", "an integer >= 0"),
        ("grace-period: soon", "grace-period", "is not a duration"),
        ("loglevel: loud", "loglevel", "use one of: debug, info, warning, error"),
        ("metrics: 127.0.0.1", "metrics", "has no port"),
        ("edge: [::1]:7844", None, 'put IPv6 addresses in quotes, e.g. "[::1]:7844"'),
        ("edge: ['::1:7844']", "edge[0]", "in brackets"),
        ("edge: http://e:1", "edge", "looks like a URL"),
        ("pq-report-url: ftp://x/", "pq-report-url", "not an http:// or https:// URL"),
        ("groups: [X25519MLKEM768, nope]", "groups[1]", "valid names: X25519MLKEM768"),
        ("tunnel: {a: 1}", "tunnel", "expected a tunnel name or UUID, got a mapping"),
        ("ingress: http_status:404", "ingress", "expected a list"),
    ],
)
def test_wrong_types(tmp_path: Path, line: str, key: str | None, expect: str) -> None:
    path = write(tmp_path, f"# pq-tunnel connector\n\n{line}\n")
    err = error_of(path)
    if key is None:  # a YAML syntax error: no key to name, but the line and a hint
        assert str(err).startswith(f"{path}:3: not valid YAML")
    else:
        assert_located(err, path, 3, key)
    assert expect in str(err)


def test_post_quantum_needs_a_post_quantum_group(tmp_path: Path) -> None:
    err = located_error(
        tmp_path, "post-quantum: true\ngroups:\n  - x25519\n  - secp256r1\n", 3, "groups"
    )
    assert "needs at least one post-quantum group" in str(err)
    cfg = load_connector_config(write(tmp_path, "groups: [x25519, X25519MLKEM768]\n"))
    assert cfg.groups == ("x25519", "X25519MLKEM768")
    with pytest.raises(ConfigError, match="^--groups: .*post-quantum group"):
        cfg.with_overrides(groups=["x25519"], post_quantum=True)
    assert cfg.with_overrides(post_quantum=True).post_quantum


def test_duplicate_key(tmp_path: Path) -> None:
    err = located_error(tmp_path, "tunnel: a\nretries: 1\ntunnel: b\n", 3, "tunnel")
    assert "given twice (first on line 1)" in str(err)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "tunnel: web\ningress:\n  - service: [unclosed\n")
    err = error_of(path)
    assert str(err).startswith(f"{path}:") and "not valid YAML" in str(err)
    assert err.line is not None and err.line >= 3


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert "empty" in str(error_of(write(tmp_path, "# nothing\n")))
    assert "no such file" in str(error_of(tmp_path / "absent.yml"))
    path = write(tmp_path, "- a\n- b\n")
    assert str(error_of(path)).startswith(f"{path}:1: the file must be a mapping")


def test_merge_keys_are_understood(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        tunnel: web
        ingress:
          - &origin
            service: https://localhost:8443
            origin-server-name: localhost
          - <<: *origin
        """,
    )
    err = error_of(path)  # the merged rule is a catch-all too, so the first one is not last
    assert_located(err, path, 3, "ingress[0]")


# --------------------------------------------------------------------------- helpers


def test_parse_hostport() -> None:
    assert parse_hostport("[::1]:443") == ("::1", 443)
    assert parse_hostport("example.com:80") == ("example.com", 80)
    assert parse_hostport("127.0.0.1:0", allow_port_zero=True).port == 0
    for bad, why in [
        ("example.com", "has no port"),
        ("[::1]", "has no port"),
        ("::1:443", "in brackets"),
        (":443", "has no host"),
        ("h:0", "from 1 to 65535"),
        ("h:http", "not a number"),
        ("[zz]:1", "not an IPv6 address"),
        ("bad host:1", "not a valid host"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_hostport(bad)


def test_parse_duration() -> None:
    assert parse_duration("30s") == 30 and parse_duration("1m") == 60
    assert parse_duration("500ms") == 0.5 and parse_duration("1h1m1s") == 3661
    assert parse_duration(5) == 5.0 and parse_duration("2.5") == 2.5
    for bad in ("", "5x", "s", "-1s", -1, True, "1s2", float("nan")):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_parse_service() -> None:
    assert parse_service("http://localhost").port == 80
    assert parse_service("https://[::1]:8443").host == "::1"
    assert parse_service("http_status:503").status == 503
