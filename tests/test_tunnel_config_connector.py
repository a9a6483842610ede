"""The connector's config file: the good file, ingress rules, matching and flag overrides.

Every mistake names the file, the line and the key (config_util.py writes the files and
checks that).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from config_util import GOOD, error_of, located_error, write

from pq_quic_plugin.tunnel.config import (
    ConfigError,
    ConnectorConfig,
    HostPort,
    load_connector_config,
)

# --------------------------------------------------------------------------- the good file


def test_full_connector_config(tmp_path: Path) -> None:
    cfg = load_connector_config(write(tmp_path, GOOD))
    assert cfg.tunnel == "web"
    assert cfg.credentials_file == tmp_path / "creds/web.json"  # relative to the config's dir
    assert cfg.edge == (HostPort("127.0.0.1", 7844), HostPort("::1", 7845))
    assert str(cfg.edge[1]) == "[::1]:7845"
    assert cfg.post_quantum is True and cfg.ha_connections == 2 and cfg.retries == 0
    assert cfg.metrics == HostPort("127.0.0.1", 2000)
    assert cfg.loglevel == "debug" and cfg.grace_period == 90.0
    assert cfg.pq_report_url == "https://edge.example.com/pq-report"
    assert cfg.server_name_for(cfg.edge[0]) == "edge.example.com"
    assert [r.line for r in cfg.ingress] == [15, 18, 21, 23]
    api, h3, wild, last = cfg.ingress
    assert api.service.kind == "http" and api.service.base_path == "/v1"
    assert h3.service.kind == "https" and h3.service.port == 8443
    assert h3.origin_server_name == "localhost"
    assert last.is_catch_all and last.service.status == 404
    cfg.check_runnable()


def test_defaults(tmp_path: Path) -> None:
    cfg = load_connector_config(write(tmp_path, "tunnel: t\n"))
    assert cfg == ConnectorConfig(tunnel="t", source=cfg.source)
    assert cfg.ha_connections == 4 and cfg.post_quantum is False and cfg.retries == 0
    assert cfg.metrics == HostPort("127.0.0.1", 0) and cfg.grace_period == 30.0
    assert cfg.loglevel == "info" and cfg.edge_server_name is None
    assert (
        ConnectorConfig(edge=(HostPort("e.example", 1),)).server_name_for(HostPort("e.example", 1))
        == "e.example"
    )
    with pytest.raises(ConfigError, match="credentials-file.*edge.*ingress"):
        ConnectorConfig().check_runnable()
    with pytest.raises(ConfigError, match="missing: edge.*ingress"):  # `tunnel` finds the creds
        cfg.check_runnable()


def test_edge_as_single_string_and_yaml_1_1_words(tmp_path: Path) -> None:
    cfg = load_connector_config(write(tmp_path, "tunnel: no\nedge: localhost:7844\n"))
    assert cfg.tunnel == "no"  # taken as written, not YAML 1.1's False
    assert cfg.edge == (HostPort("localhost", 7844),)


# --------------------------------------------------------------------------- ingress errors


def test_missing_catch_all(tmp_path: Path) -> None:
    err = located_error(
        tmp_path,
        """\
        tunnel: web
        ingress:
          - hostname: a.example.com
            service: http://127.0.0.1:8000
          - hostname: b.example.com
            path: ^/x
            service: http://127.0.0.1:8001
        """,
        5,
        "ingress[1]",
    )
    assert "last ingress rule must be a catch-all" in str(err)
    assert "http_status:404" in str(err)


def test_catch_all_not_last(tmp_path: Path) -> None:
    err = located_error(
        tmp_path,
        """\
        ingress:
          - hostname: a.example.com
            service: http://127.0.0.1:8000
          - service: http://127.0.0.1:8001
          - hostname: b.example.com
            service: http://127.0.0.1:8002
          - service: http_status:404
        """,
        4,
        "ingress[1]",
    )
    assert "not the last rule" in str(err) and "ingress[2]" in str(err)


def test_bad_service_url(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        tunnel: web
        ingress:
          - hostname: a.example.com
            service: http://127.0.0.1:8000
          - path: ^/
            service: 'htp://x'
          - service: http_status:404
        """,
    )
    err = error_of(path)
    assert str(err) == (
        f"{path}:6: ingress[1].service: 'htp://x' is not a valid service; "
        "use http://HOST:PORT, https://HOST:PORT, unix:/PATH, unix+tls:/PATH, hello_world or "
        "http_status:NNN"
    )


@pytest.mark.parametrize(
    "service, detail",
    [
        ("http_status:700", "100 to 599"),
        ("http_status:abc", "100 to 599"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("ftp://127.0.0.1:21", "use http://HOST:PORT"),
        ("127.0.0.1:8000", "use http://HOST:PORT"),
        ("http://:8000", "no host"),
        ("http://h:1/?q=1", "no query"),
    ],
)
def test_bad_service_values(tmp_path: Path, service: str, detail: str) -> None:
    err = located_error(tmp_path, f"ingress:\n  - service: '{service}'\n", 2, "ingress[0].service")
    assert detail in str(err)


def test_bad_path_regex(tmp_path: Path) -> None:
    err = located_error(
        tmp_path,
        """\
        ingress:
          - hostname: a.example.com
            path: "^/api/(v1"
            service: http://127.0.0.1:8000
          - service: http_status:404
        """,
        3,
        "ingress[0].path",
    )
    assert "not a valid regular expression" in str(err) and "missing )" in str(err)


def test_missing_service(tmp_path: Path) -> None:
    located_error(
        tmp_path, "tunnel: t\ningress:\n  - hostname: a.example.com\n", 3, "ingress[0].service"
    )


def test_bad_hostname(tmp_path: Path) -> None:
    err = located_error(
        tmp_path,
        "ingress:\n  - hostname: a.*.com\n    service: http_status:404\n",
        2,
        "ingress[0].hostname",
    )
    assert "whole leftmost label" in str(err)


def test_origin_options_only_for_https(tmp_path: Path) -> None:
    err = located_error(
        tmp_path,
        "ingress:\n  - service: http://127.0.0.1:1\n    origin-server-name: x.example\n",
        3,
        "ingress[0].origin-server-name",
    )
    assert "only applies to https://" in str(err)


@pytest.mark.parametrize(
    "service, protocol, problem",
    [
        ("http://127.0.0.1:1", "http2", "needs an https:// service"),
        ("http://127.0.0.1:1", "HTTP3", "needs an https:// service"),
        ("http_status:404", "http1", "only applies to http:// and https:// services"),
        ("https://127.0.0.1:1", "quic", "is not allowed; use one of: auto, http1, http2, http3"),
    ],
)
def test_origin_protocol_the_service_cannot_speak(
    tmp_path: Path, service: str, protocol: str, problem: str
) -> None:
    rules = f"ingress:\n  - service: {service}\n    origin-protocol: {protocol}\n"
    err = located_error(
        tmp_path, rules + "  - service: http_status:404\n", 3, "ingress[0].origin-protocol"
    )
    assert problem in str(err)


def test_origin_protocol_defaults_to_auto_and_takes_any_case(tmp_path: Path) -> None:
    rules = "ingress:\n  - path: ^/\n    service: https://127.0.0.1:1\n    origin-protocol: HTTP3\n"
    cfg = load_connector_config(write(tmp_path, rules + "  - service: http://127.0.0.1:2\n"))
    assert [r.origin_protocol for r in cfg.ingress] == ["http3", "auto"]


# --------------------------------------------------------------------------- matching


def test_ingress_match(tmp_path: Path) -> None:
    cfg = load_connector_config(write(tmp_path, GOOD))
    api, h3, wild, last = cfg.ingress
    assert cfg.ingress_match("app.example.com", "/api/users") is api
    assert cfg.ingress_match("APP.Example.COM:443", "/api/x?y=1") is api  # case, port ignored
    assert cfg.ingress_match("app.example.com", "/v2/api/") is h3  # ^ anchors the search
    assert cfg.ingress_match("app.example.com", "/?q=/api/") is h3  # query is not the path
    assert cfg.ingress_match("x.example.com", "/api/") is wild
    assert cfg.ingress_match("a.b.example.com", "/") is wild  # wildcard: one or more labels
    assert cfg.ingress_match("example.com", "/") is last  # ... but not zero labels
    assert cfg.ingress_match("example.org", "/api/") is last
    assert cfg.ingress_match("[::1]:443", "/") is last


def test_path_only_rule_uses_search(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ingress:\n  - path: \\.png$\n    service: http_status:204\n  - service: http_status:404\n",
    )
    cfg = load_connector_config(path)
    assert cfg.ingress_match("any", "/img/a.png").service.status == 204
    assert cfg.ingress_match("any", "/img/a.png/x").service.status == 404


# --------------------------------------------------------------------------- overrides, quick


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg = load_connector_config(write(tmp_path, GOOD))
    out = cfg.with_overrides(
        post_quantum=False,
        ha_connections=8,
        edge="10.0.0.1:7844",
        metrics=None,
        grace_period="500ms",
        loglevel="WARN",
        tunnel=None,
        credentials_file="other.json",
    )
    assert out.post_quantum is False and out.ha_connections == 8
    assert out.edge == (HostPort("10.0.0.1", 7844),)
    assert out.metrics == cfg.metrics and out.tunnel == "web"  # None: not given
    assert out.grace_period == 0.5 and out.loglevel == "warning"
    assert out.credentials_file == Path("other.json")
    assert out.ingress == cfg.ingress
    assert cfg.ha_connections == 2  # the original is untouched
    replaced = cfg.with_overrides(url="http://127.0.0.1:9000")
    assert len(replaced.ingress) == 1 and replaced.ingress[0].is_catch_all
    assert replaced.ingress_match("app.example.com", "/api/").service.port == 9000


def test_bad_flag_names_the_flag() -> None:
    cfg = ConnectorConfig()
    with pytest.raises(ConfigError, match=r"^--ha-connections: expected an integer from 1 to 16"):
        cfg.with_overrides(ha_connections=0)
    with pytest.raises(ConfigError, match=r"^--url: 'ftp://x' is not a valid service"):
        cfg.with_overrides(url="ftp://x")
    with pytest.raises(ConfigError, match=r"^--edge: .* has no port"):
        cfg.with_overrides(edge=["a:1", "b"])
    with pytest.raises(TypeError, match="ha_conections"):
        cfg.with_overrides(ha_conections=1)


def test_quick_tunnel() -> None:
    cfg = ConnectorConfig.quick(
        "http://127.0.0.1:8000",
        ["127.0.0.1:7844", "127.0.0.1:7845"],
        "c.json",
        post_quantum=True,
    )
    cfg.check_runnable()
    assert cfg.post_quantum and len(cfg.edge) == 2
    rule = cfg.ingress_match("whatever.example", "/anything")
    assert rule.is_catch_all and rule.service.address == HostPort("127.0.0.1", 8000)
