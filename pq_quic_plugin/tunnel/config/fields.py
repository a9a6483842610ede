"""The field tables: every key of ``config.yml`` and ``edge.yaml``, declared here and only here.

Adding a key means adding a row: the YAML reader accepts it, ``with_overrides`` and argparse
take its flag, and ``python -m pq_quic_plugin.tunnel.config.docs`` documents it. The dataclass
that holds the values (``connector.py``, ``edge.py``) gets its defaults from these rows and is
checked against them at import.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...policy import Policy
from ..hostnames import HostPort
from .kinds import (
    BoolValue,
    DurationValue,
    GroupsValue,
    HostnameValue,
    HostPortListValue,
    HostPortValue,
    IngressValue,
    IntValue,
    LogLevelValue,
    PathValue,
    PolicyValue,
    RegexValue,
    SectionValue,
    ServiceValue,
    TextValue,
    UrlValue,
)
from .table import ConfigField, ConfigFlag, FieldTable

__all__ = [
    "CONNECTORS_FIELDS",
    "CONNECTOR_FIELDS",
    "EDGE_FIELDS",
    "PUBLIC_FIELDS",
    "RULE_FIELDS",
    "TABLES",
]


def _https_only(values: Mapping[str, Any]) -> str | None:
    """Origin TLS options mean nothing for an HTTP/1.1 or a status-only service."""
    service = values["service"]
    if service.kind == "https":
        return None
    return f"only applies to https:// services, not {service.text!r}"


RULE_FIELDS = FieldTable(
    "ingress-rule",
    "ingress rules",
    (
        ConfigField(
            "hostname",
            "hostname",
            HostnameValue(wildcard=True),
            "the request's `Host` (`:port` and case ignored); may be a wildcard `*.example.com`",
            default_doc="any host",
        ),
        ConfigField(
            "path",
            "path",
            RegexValue(),
            "a Python regular expression, searched (`re.search`) in the path without the query "
            "string; anchor it with `^` to match a prefix. Must compile",
            default_doc="any path",
        ),
        ConfigField(
            "service",
            "service",
            ServiceValue(),
            "`http://HOST[:PORT][/base]` — HTTP/1.1 to the origin (port 80 if omitted; `/base` "
            "is prefixed to the request path); `https://HOST[:PORT]` — **HTTP/3 over QUIC** to "
            "an origin that speaks it (e.g. `hypercorn-pq --pq`), post-quantum (port 443 if "
            "omitted); `http_status:NNN` — answer with status NNN (100-599) without an origin",
            required=True,
        ),
        ConfigField(
            "origin-ca-file",
            "origin_ca_file",
            PathValue(must_exist=True),
            "for `https://` services only: a CA (PEM) to trust for the origin's certificate; "
            "relative to this file; must exist",
            default_doc="the system's trust store",
            requires=_https_only,
        ),
        ConfigField(
            "origin-server-name",
            "origin_server_name",
            HostnameValue(wildcard=False),
            "for `https://` services only: the TLS server name to use for the origin",
            default_doc="the service's host",
            requires=_https_only,
        ),
    ),
)

CONNECTOR_FIELDS = FieldTable(
    "connector",
    "config.yml",
    (
        ConfigField(
            "tunnel",
            "tunnel",
            TextValue("a tunnel name or UUID", metavar="NAME"),
            "the tunnel's name or UUID",
            default_doc="from the credentials file",
            flag=ConfigFlag("NAME", "tunnel name or ID (optional with credentials)"),
        ),
        ConfigField(
            "credentials-file",
            "credentials_file",
            PathValue(must_exist=False),
            "the JSON file `pq-tunnel create` wrote; relative to this file",
            default_doc="none (required to run)",
            flag=ConfigFlag("--credentials-file", "the credentials file pq-tunnel create wrote"),
        ),
        ConfigField(
            "edge",
            "edge",
            HostPortListValue("edge address"),
            "the edge's connector listener(s); `ha-connections` are spread over them",
            default=(),
            default_doc="none (required to run)",
            flag=ConfigFlag("--edge", "the edge's connector listener (repeatable)"),
        ),
        ConfigField(
            "post-quantum",
            "post_quantum",
            BoolValue(),
            "`true`: offer post-quantum groups only and never fall back (a failed handshake "
            "prints a banner and, with `pq-report-url`, sends a report). `false`: prefer "
            "post-quantum, accept classical, and say so in the log",
            default=False,
            flag=ConfigFlag(
                "--post-quantum", "post-quantum key exchange only, never a classical fallback"
            ),
        ),
        ConfigField(
            "groups",
            "groups",
            GroupsValue(),
            "the key-exchange groups to offer; with `post-quantum: true` at least one must be "
            "post-quantum (the classical ones are then dropped). Names as in `docs/groups.md`, "
            "case-insensitive; the flag takes them comma-separated",
            default_doc="the connector's default list",
            flag=ConfigFlag("--groups", "key-exchange groups to offer, comma-separated"),
        ),
        ConfigField(
            "ha-connections",
            "ha_connections",
            IntValue(1, 16),
            "how many connections to keep open to the edge",
            default=4,
            flag=ConfigFlag("--ha-connections", "connections to keep open to the edge (1-16)"),
        ),
        ConfigField(
            "metrics",
            "metrics",
            HostPortValue(listen=True),
            "the metrics server (`/metrics`, `/ready`, `/healthcheck`); port 0 picks a free "
            "port, printed at start",
            default=HostPort("127.0.0.1", 0),
            flag=ConfigFlag("--metrics", "where to serve /metrics, /ready, /healthcheck"),
        ),
        ConfigField(
            "loglevel",
            "loglevel",
            LogLevelValue(),
            "how much the connector logs",
            default="info",
            flag=ConfigFlag("--loglevel", "how much to log"),
        ),
        ConfigField(
            "grace-period",
            "grace_period",
            DurationValue(),
            "on SIGTERM/SIGINT, how long requests in flight may take to finish",
            default=30.0,
            flag=ConfigFlag("--grace-period", "time for requests in flight at shutdown, e.g. 30s"),
        ),
        ConfigField(
            "pq-report-url",
            "pq_report_url",
            UrlValue(),
            "where to POST a JSON report when a post-quantum handshake fails (the edge serves "
            "one at `/pq-report`)",
            flag=ConfigFlag("--pq-report-url", "where to POST post-quantum failure reports"),
        ),
        ConfigField(
            "retries",
            "retries",
            IntValue(0, None),
            "consecutive failed attempts per connection (with exponential backoff and jitter) "
            "before the connector gives up on it and exits with an error; `0` retries forever. "
            "A successful registration resets the count",
            default=5,
            flag=ConfigFlag(
                "--retries", "failed attempts per connection before giving up (0: forever)"
            ),
        ),
        ConfigField(
            "ca-file",
            "ca_file",
            PathValue(must_exist=True),
            "a CA certificate (PEM) to trust for the edge's certificate; relative to this "
            "file; must exist",
            default_doc="the system's trust store",
            flag=ConfigFlag("--ca-file", "CA that issued the edge's certificate"),
        ),
        ConfigField(
            "edge-server-name",
            "edge_server_name",
            HostnameValue(wildcard=False),
            "the TLS server name (SNI) the connector sends and checks the edge's certificate "
            "against",
            default_doc="the host part of each `edge` address",
        ),
        ConfigField(
            "ingress",
            "ingress",
            IngressValue(RULE_FIELDS),
            "see below",
            default=(),
            default_doc="none (required to run, or `--url`)",
        ),
        ConfigField(
            None,
            "url",
            ServiceValue(),
            "quick tunnel: replaces every ingress rule with one catch-all to this service",
            flag=ConfigFlag("--url", "quick tunnel: send every request to this origin URL"),
        ),
    ),
)

PUBLIC_FIELDS = FieldTable(
    "edge-public",
    "edge.yaml: public",
    (
        ConfigField(
            "bind",
            "bind",
            HostPortValue(listen=True),
            "where visitors connect: HTTP/3 on UDP and HTTP/1.1 + HTTP/2 on TCP (with `Alt-Svc`), "
            "one port for both",
            required=True,
        ),
        ConfigField(
            "certfile",
            "certfile",
            PathValue(must_exist=True),
            "the certificate chain (PEM) visitors see; must exist",
            required=True,
        ),
        ConfigField(
            "keyfile",
            "keyfile",
            PathValue(must_exist=True),
            "its private key (PEM); must exist",
            required=True,
        ),
        ConfigField(
            "pq",
            "pq",
            PolicyValue([Policy.PREFER, Policy.REQUIRE]),
            "`prefer`: post-quantum key exchange when the visitor offers it, classical "
            "otherwise; `require`: post-quantum or no HTTP/3 connection",
            default=Policy.PREFER,
        ),
    ),
)

CONNECTORS_FIELDS = FieldTable(
    "edge-connectors",
    "edge.yaml: connectors",
    (
        ConfigField(
            "bind",
            "bind",
            HostPortValue(listen=True),
            "where connectors' QUIC connections arrive (UDP); must not be the public UDP port",
            required=True,
        ),
        ConfigField(
            "certfile",
            "certfile",
            PathValue(must_exist=True),
            "a separate certificate for connectors; give `keyfile` too",
            default_doc="the `public` pair",
        ),
        ConfigField(
            "keyfile",
            "keyfile",
            PathValue(must_exist=True),
            "the separate certificate's key; give `certfile` too",
            default_doc="the `public` pair",
        ),
        ConfigField(
            "post-quantum",
            "post_quantum",
            PolicyValue(list(Policy)),
            "which key exchanges the edge accepts from connectors: `require` (post-quantum "
            "only: a classical-only connector is refused), `prefer` (post-quantum first, "
            "classical accepted), `off` (aioquic's classical groups only)",
            default=Policy.PREFER,
        ),
        ConfigField(
            "groups",
            "groups",
            GroupsValue(),
            "the groups accepted, in the edge's preference order; unknown names are an error "
            "listing the valid ones; with `require` at least one must be post-quantum",
            default_doc="every registered group, post-quantum first",
        ),
    ),
)

EDGE_FIELDS = FieldTable(
    "edge",
    "edge.yaml",
    (
        ConfigField(
            "public",
            "public",
            SectionValue(PUBLIC_FIELDS),
            "the visitors' listener, see below",
            required=True,
        ),
        ConfigField(
            "connectors",
            "connectors",
            SectionValue(CONNECTORS_FIELDS),
            "the connectors' QUIC listener, see below",
            required=True,
        ),
        ConfigField(
            "store",
            "store",
            PathValue(must_exist=False),
            "the SQLite tunnel store `pq-tunnel create` writes (created with mode 0600)",
            default=Path("tunnels.db"),
            default_doc="`tunnels.db` next to this file",
        ),
        ConfigField(
            "metrics",
            "metrics",
            HostPortValue(listen=True),
            "the edge's metrics server",
            default=HostPort("127.0.0.1", 0),
        ),
        ConfigField(
            "loglevel",
            "loglevel",
            LogLevelValue(),
            "how much the edge logs",
            default="info",
            flag=ConfigFlag("--loglevel", "how much to log (overrides the file)"),
        ),
        ConfigField(
            "grace-period",
            "grace_period",
            DurationValue(),
            "on SIGTERM/SIGINT, how long requests in flight may take to finish",
            default=30.0,
        ),
        ConfigField(
            "edge-id",
            "edge_id",
            TextValue(),
            "this edge's name in logs, registrations and the status page; set it when several "
            "edges share a host",
            default_factory=socket.gethostname,
            default_doc="the machine's host name",
        ),
        ConfigField(
            "location",
            "location",
            TextValue(),
            "free text shown to connectors (`location=...` in their logs)",
            default="local",
        ),
    ),
)

#: Every table, in the order the docs present them.
TABLES = (CONNECTOR_FIELDS, RULE_FIELDS, EDGE_FIELDS, PUBLIC_FIELDS, CONNECTORS_FIELDS)
