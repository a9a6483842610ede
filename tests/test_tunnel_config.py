"""pq-tunnel's config files: every mistake names the file, the line and the key.

Real YAML files in a temporary directory; line numbers are counted from the text written, so a
test breaks if the loader ever reports the wrong line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pq_quic_plugin.policy import Policy
from pq_quic_plugin.tunnel.config import (
    ConfigError,
    ConnectorConfig,
    HostPort,
    load_connector_config,
    load_edge_config,
    parse_duration,
    parse_hostport,
    parse_service,
)

GOOD = """\
tunnel: web
credentials-file: creds/web.json
edge:
  - 127.0.0.1:7844
  - "[::1]:7845"
post-quantum: true
ha-connections: 2
metrics: 127.0.0.1:2000
loglevel: debug
grace-period: 1m30s
pq-report-url: https://edge.example.com/pq-report
retries: 0
edge-server-name: edge.example.com
ingress:
  - hostname: app.example.com
    path: ^/api/
    service: http://127.0.0.1:8001/v1
  - hostname: app.example.com
    service: https://localhost:8443
    origin-server-name: localhost
  - hostname: "*.example.com"
    service: http://127.0.0.1:8002
  - service: http_status:404
"""


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        if path.name.startswith("edge"):
            load_edge_config(path)
        else:
            load_connector_config(path)
    return info.value


def assert_located(err: ConfigError, path: Path, line: int, key: str) -> None:
    text = str(err)
    assert text.startswith(f"{path}:{line}: {key}: "), text
    assert err.line == line and err.key == key and err.source == str(path)


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
    assert cfg.ha_connections == 4 and cfg.post_quantum is False and cfg.retries == 5
    assert cfg.metrics == HostPort("127.0.0.1", 0) and cfg.grace_period == 30.0
    assert cfg.loglevel == "info" and cfg.edge_server_name is None
    assert (
        ConnectorConfig(edge=(HostPort("e.example", 1),)).server_name_for(HostPort("e.example", 1))
        == "e.example"
    )
    with pytest.raises(ConfigError, match="credentials-file.*edge.*ingress"):
        cfg.check_runnable()


def test_edge_as_single_string_and_yaml_1_1_words(tmp_path: Path) -> None:
    cfg = load_connector_config(write(tmp_path, "tunnel: no\nedge: localhost:7844\n"))
    assert cfg.tunnel == "no"  # taken as written, not YAML 1.1's False
    assert cfg.edge == (HostPort("localhost", 7844),)


# --------------------------------------------------------------------------- ingress errors


def test_missing_catch_all(tmp_path: Path) -> None:
    path = write(
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
    )
    err = error_of(path)
    assert_located(err, path, 5, "ingress[1]")
    assert "last ingress rule must be a catch-all" in str(err)
    assert "http_status:404" in str(err)


def test_catch_all_not_last(tmp_path: Path) -> None:
    path = write(
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
    )
    err = error_of(path)
    assert_located(err, path, 4, "ingress[1]")
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
        "use http://HOST:PORT, https://HOST:PORT or http_status:NNN"
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
    path = write(tmp_path, f"ingress:\n  - service: '{service}'\n")
    err = error_of(path)
    assert_located(err, path, 2, "ingress[0].service")
    assert detail in str(err)


def test_bad_path_regex(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        ingress:
          - hostname: a.example.com
            path: "^/api/(v1"
            service: http://127.0.0.1:8000
          - service: http_status:404
        """,
    )
    err = error_of(path)
    assert_located(err, path, 3, "ingress[0].path")
    assert "not a valid regular expression" in str(err) and "missing )" in str(err)


def test_missing_service(tmp_path: Path) -> None:
    path = write(tmp_path, "tunnel: t\ningress:\n  - hostname: a.example.com\n")
    assert_located(error_of(path), path, 3, "ingress[0].service")


def test_bad_hostname(tmp_path: Path) -> None:
    path = write(tmp_path, "ingress:\n  - hostname: a.*.com\n    service: http_status:404\n")
    err = error_of(path)
    assert_located(err, path, 2, "ingress[0].hostname")
    assert "whole leftmost label" in str(err)


def test_origin_options_only_for_https(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ingress:\n  - service: http://127.0.0.1:1\n    origin-server-name: x.example\n",
    )
    err = error_of(path)
    assert_located(err, path, 3, "ingress[0].origin-server-name")
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
    path = write(tmp_path, rules + "  - service: http_status:404\n")
    err = error_of(path)
    assert_located(err, path, 3, "ingress[0].origin-protocol")
    assert problem in str(err)


def test_origin_protocol_defaults_to_auto_and_takes_any_case(tmp_path: Path) -> None:
    rules = "ingress:\n  - path: ^/\n    service: https://127.0.0.1:1\n    origin-protocol: HTTP3\n"
    cfg = load_connector_config(write(tmp_path, rules + "  - service: http://127.0.0.1:2\n"))
    assert [r.origin_protocol for r in cfg.ingress] == ["http3", "auto"]


# --------------------------------------------------------------------------- keys and types


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "tunnel: web\nedge: 127.0.0.1:7844\nha-conections: 4\n")
    err = error_of(path)
    assert_located(err, path, 3, "ha-conections")
    assert "did you mean 'ha-connections'?" in str(err)
    assert "valid keys: tunnel, credentials-file, edge," in str(err)


def test_unknown_rule_key_suggests(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        tunnel: web
        ingress:
          - hostname: a.example.com
            servce: http://127.0.0.1:8000
          - service: http_status:404
        """,
    )
    err = error_of(path)
    assert_located(err, path, 4, "ingress[0].servce")
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
    path = write(tmp_path, "post-quantum: true\ngroups:\n  - x25519\n  - secp256r1\n")
    err = error_of(path)
    assert_located(err, path, 3, "groups")
    assert "needs at least one post-quantum group" in str(err)
    cfg = load_connector_config(write(tmp_path, "groups: [x25519, X25519MLKEM768]\n"))
    assert cfg.groups == ("x25519", "X25519MLKEM768")
    with pytest.raises(ConfigError, match="^--groups: .*post-quantum group"):
        cfg.with_overrides(groups=["x25519"], post_quantum=True)
    assert cfg.with_overrides(post_quantum=True).post_quantum


def test_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "tunnel: a\nretries: 1\ntunnel: b\n")
    err = error_of(path)
    assert_located(err, path, 3, "tunnel")
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
    path = write(tmp_path, f"# edge\npublic:\n{public}connectors:\n{connectors}", "edge.yaml")
    err = error_of(path)
    assert_located(err, path, line, key)
    assert expect in str(err)


def test_edge_missing_section(tmp_path: Path) -> None:
    path = write(tmp_path, "store: x.db\n", "edge.yaml")
    assert_located(error_of(path), path, 1, "public")
