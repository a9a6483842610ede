"""``originRequest`` in ``config.yml``: cloudflared's keys, read at the top level and per rule.

What each key does on the wire is in test_tunnel_origin_request_wire.py; here, how the file is
read: durations as cloudflared writes them, a rule's keys over the top level's, our older rule
keys as synonyms, and every mistake located at its key and line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from config_util import error_of, write

from pq_quic_plugin.tunnel.config import ConfigError, load_connector_config, parse_service
from pq_quic_plugin.tunnel.connector.proxy import origin_options


def load(tmp_path: Path, text: str) -> object:
    return load_connector_config(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> ConfigError:
    return error_of(write(tmp_path, text))


def test_rule_keys_win_over_the_top_level_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    config = load(
        tmp_path,
        """\
        originRequest:
          connectTimeout: 1m30s
          tlsTimeout: 2s
          keepAliveConnections: 3
          postQuantum: prefer
          noTLSVerify: true
        ingress:
          - hostname: a.example
            service: https://10.0.0.1:8443
            originRequest:
              tlsTimeout: 500ms
              caPool: ca.pem
              noTLSVerify: false
              httpHostHeader: "inner:8080"
          - hostname: b.example
            service: http://10.0.0.2:8000
          - service: http_status:404
        """,
    )
    a, b, _ = config.ingress  # type: ignore[attr-defined]
    top = config.origin_request  # type: ignore[attr-defined]
    assert top.connect_timeout == 90.0
    opts = origin_options(a, top)
    assert opts["connect_timeout"] == 90.0 and opts["tls_timeout"] == 0.5
    assert opts["keepalive_connections"] == 3 and opts["policy"] == "prefer"
    assert opts["verify"] is True  # the rule's false over the top level's true
    assert opts["ca_file"] == str(tmp_path / "ca.pem")
    assert opts["host_header"] == "inner:8080"
    plain = origin_options(b, top)
    # TLS settings from the top level do not reach a service without TLS.
    assert plain["policy"] is None and plain["verify"] is True and plain["ca_file"] is None
    assert plain["connect_timeout"] == 90.0


def test_older_keys_are_synonyms(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    config = load(
        tmp_path,
        """\
        ingress:
          - hostname: a.example
            service: https://10.0.0.1:8443
            origin-ca-file: ca.pem
            origin-server-name: app.internal
            originRequest:
              caPool: ca.pem
              http2Origin: true
          - service: http_status:404
        """,
    )
    rule = config.ingress[0]  # type: ignore[attr-defined]
    opts = origin_options(rule, config.origin_request)  # type: ignore[attr-defined]
    assert opts["protocol"] == "http2" and opts["server_name"] == "app.internal"


@pytest.mark.parametrize(
    "rule, line, key, words",
    [
        (
            "service: https://10.0.0.1\n    originRequest:\n      connectTimeot: 5s",
            4,
            "ingress[0].originRequest.connectTimeot",
            "did you mean 'connectTimeout'",
        ),
        (
            "service: https://10.0.0.1\n    originRequest:\n      connectTimeout: soon",
            4,
            "ingress[0].originRequest.connectTimeout",
            "is not a duration",
        ),
        (
            "service: http://10.0.0.1\n    originRequest:\n      noTLSVerify: true",
            4,
            "ingress[0].originRequest.noTLSVerify",
            "only applies to services reached over TLS",
        ),
        (
            "service: https://10.0.0.1\n    origin-protocol: http1\n    originRequest:\n"
            "      http2Origin: true",
            5,
            "ingress[0].originRequest.http2Origin",
            "contradicts origin-protocol: http1",
        ),
        (
            "service: https://10.0.0.1\n    origin-server-name: a.test\n    originRequest:\n"
            "      originServerName: b.test",
            5,
            "ingress[0].originRequest.originServerName",
            "give only one of them",
        ),
        (
            "service: hello_world\n    originRequest:\n      connectTimeout: 1s",
            3,
            "ingress[0].originRequest",
            "only applies to services with an origin",
        ),
        (
            "service: http://10.0.0.1\n    originRequest:\n      httpHostHeader: 'a b'",
            4,
            "ingress[0].originRequest.httpHostHeader",
            "not a valid Host header",
        ),
        (
            "service: https://10.0.0.1\n    originRequest:\n      postQuantum: maybe",
            4,
            "ingress[0].originRequest.postQuantum",
            "use one of: off, prefer, require",
        ),
        ("service: unix:run/app.sock", 2, "ingress[0].service", "absolute socket path"),
        (
            "service: unix+tls:/run/app.sock\n    origin-protocol: http3",
            3,
            "ingress[0].origin-protocol",
            "Unix stream socket",
        ),
    ],
)
def test_mistakes_name_the_key_and_line(
    tmp_path: Path, rule: str, line: int, key: str, words: str
) -> None:
    err = error(tmp_path, f"ingress:\n  - {rule}\n  - service: http_status:404\n")
    assert err.line == line and err.key == key, str(err)
    assert words in str(err)


def test_top_level_unknown_key(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        "originRequest:\n  keepAliveTimout: 5s\ningress:\n  - service: http_status:404\n",
    )
    assert err.line == 2 and err.key == "originRequest.keepAliveTimout"
    assert "did you mean 'keepAliveTimeout'" in str(err)


@pytest.mark.parametrize(
    "text, kind, path",
    [
        ("unix:/run/app.sock", "unix", "/run/app.sock"),
        ("unix:///run/app.sock", "unix", "/run/app.sock"),
        ("unix+tls:/run/app.sock", "unix+tls", "/run/app.sock"),
        ("hello_world", "hello_world", ""),
    ],
)
def test_new_service_types(text: str, kind: str, path: str) -> None:
    service = parse_service(text)
    assert service.kind == kind and service.socket_path == path
    assert service.tls == (kind == "unix+tls")
