"""Real YAML config files in a temporary directory, and how a ConfigError should name them.

pq-tunnel's config files: every mistake names the file, the line and the key. Line numbers are
counted from the text written, so a test breaks if the loader ever reports the wrong line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pq_quic_plugin.tunnel.config import (
    ConfigError,
    load_connector_config,
    load_edge_config,
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


def located_error(
    tmp_path: Path, text: str, line: int, key: str, name: str = "config.yml"
) -> ConfigError:
    """Write ``text`` as a config file, load it, and check that the error it fails with names
    the file, ``line`` and ``key`` (the shape of every config test about a mistake)."""
    path = write(tmp_path, text, name)
    err = error_of(path)
    assert_located(err, path, line, key)
    return err
