"""The field tables: every key of ``config.yml`` and ``edge.yaml``, declared once.

The connector's tables are here; the edge's are in ``edge_fields.py``, ``originRequest``'s in
``origin_fields.py`` and the rows both programs share in ``common_fields.py``; all are
reached from here (``TABLES``).

Adding a key means adding a row: the YAML reader accepts it, ``with_overrides`` and argparse
take its flag, and ``python -m pq_quic_plugin.tunnel.config.docs`` documents it. The dataclass
that holds the values (``connector.py``, ``edge.py``) gets its defaults from these rows and is
checked against them at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .common_fields import field_row as _field
from .common_fields import grace_period_field as _grace_period
from .common_fields import log_fields as _logs
from .common_fields import loglevel_field as _loglevel
from .common_fields import metrics_field as _metrics
from .edge_fields import CLUSTER_FIELDS, CONNECTORS_FIELDS, EDGE_FIELDS, PUBLIC_FIELDS
from .ingress import ORIGIN_PROTOCOLS
from .kinds import (
    BoolValue,
    ChoiceValue,
    DurationValue,
    GroupsValue,
    HostnameValue,
    HostPortListValue,
    IngressValue,
    IntValue,
    OriginRequestValue,
    PathValue,
    RegexValue,
    ServiceValue,
    TextValue,
    UrlValue,
)
from .origin_fields import ORIGIN_REQUEST_FIELDS
from .origin_request import OriginSettings
from .table import ConfigField, ConfigFlag, FieldTable

__all__ = [
    "CLUSTER_FIELDS",
    "CONNECTORS_FIELDS",
    "CONNECTOR_FIELDS",
    "EDGE_FIELDS",
    "ORIGIN_REQUEST_FIELDS",
    "PUBLIC_FIELDS",
    "RULE_FIELDS",
    "TABLES",
    "TUNNEL_PROTOCOLS",
]

#: The transports to the edge (``protocol``): ``auto`` tries QUIC and falls back to HTTP/2.
TUNNEL_PROTOCOLS = ("auto", "quic", "http2")


def _https_only(values: Mapping[str, Any]) -> str | None:
    """Origin TLS options mean nothing for an HTTP/1.1 or a status-only service."""
    service = values["service"]
    if service.tls:
        return None
    return f"only applies to https:// and unix+tls: services, not {service.text!r}"


def _origin_only(values: Mapping[str, Any]) -> str | None:
    """``originRequest`` means nothing for a rule the connector answers itself."""
    service = values["service"]
    if service.is_origin:
        return None
    return f"only applies to services with an origin, not {service.text!r}"


RULE_FIELDS = FieldTable(
    "ingress-rule",
    "ingress rules",
    (
        _field(
            "hostname",
            HostnameValue(wildcard=True),
            "the request's `Host` (`:port` and case ignored); may be a wildcard `*.example.com`",
            default_doc="any host",
        ),
        _field(
            "path",
            RegexValue(),
            "a Python regular expression, searched (`re.search`) in the path without the query "
            "string; anchor it with `^` to match a prefix. Must compile",
            default_doc="any path",
        ),
        _field(
            "service",
            ServiceValue(),
            "`http://HOST[:PORT][/base]` — HTTP/1.1 to the origin (port 80 if omitted; `/base` "
            "is prefixed to the request path); `https://HOST[:PORT][/base]` — TLS to the "
            "origin with the connector's post-quantum policy: over TCP, HTTP/2 when the origin "
            "offers it and HTTP/1.1 otherwise, or HTTP/3 over QUIC with `origin-protocol: "
            "http3` (port 443 if omitted); `unix:/PATH` — HTTP/1.1 over the Unix socket at "
            "PATH; `unix+tls:/PATH` — TLS over the Unix socket (post-quantum as for `https://`, "
            "the certificate checked for `localhost` unless `originServerName` says otherwise); "
            "`hello_world` — the connector's own test page, showing every hop's key exchange "
            "(HTML, or JSON when the request accepts `application/json`); `http_status:NNN` — "
            "answer with status NNN (100-599) without an origin",
            required=True,
        ),
        _field(
            "origin-ca-file",
            PathValue(must_exist=True),
            "for `https://` and `unix+tls:` services only: a CA (PEM) to trust for the "
            "origin's certificate (as `originRequest: caPool`); relative to this file; must "
            "exist",
            default_doc="the system's trust store",
            requires=_https_only,
        ),
        _field(
            "origin-server-name",
            HostnameValue(wildcard=False),
            "for `https://` and `unix+tls:` services only: the TLS server name to use for the "
            "origin (as `originRequest: originServerName`)",
            default_doc="the service's host",
            requires=_https_only,
        ),
        _field(
            "origin-protocol",
            ChoiceValue(ORIGIN_PROTOCOLS),
            "how to speak to the origin. `auto`: for `https://`, TLS over TCP offering HTTP/2 "
            "and HTTP/1.1 by ALPN (the origin picks); for `http://`, HTTP/1.1. `http1`: "
            "HTTP/1.1 only. `http2`: HTTP/2 over TLS, `https://` only (no cleartext h2c; an "
            "origin that does not offer `h2` is a 502). `http3`: HTTP/3 over QUIC, `https://` "
            "only (what `https://` meant before TCP origins). WebSockets always use HTTP/1.1 "
            "(over TLS for `https://`). Any case. `http2` is what `originRequest: "
            "http2Origin: true` says",
            default="auto",
        ),
        ConfigField(
            "originRequest",
            "origin_request",
            OriginRequestValue(ORIGIN_REQUEST_FIELDS),
            "how to reach this rule's origin, cloudflared's keys (see below); each key given "
            "here wins over the same key in the top-level `originRequest`",
            default=OriginSettings(),
            default_doc="the top-level `originRequest`",
            requires=_origin_only,
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
            flag=ConfigFlag(
                "NAME",
                "the tunnel's name or ID; its credentials are looked up in ~/.pq-tunnel "
                "unless --credentials-file says where",
            ),
            env="TUNNEL_NAME",
        ),
        _field(
            "credentials-file",
            PathValue(must_exist=False),
            "the JSON file `pq-tunnel create` wrote; relative to this file",
            default_doc="the file in `~/.pq-tunnel/` whose tunnel is `tunnel`",
            flag_help="the credentials file pq-tunnel create wrote",
            env="TUNNEL_CRED_FILE",
        ),
        _field(
            "edge",
            HostPortListValue("edge address"),
            "the edge's connector listener(s); `ha-connections` are spread over them",
            default=(),
            default_doc="none (required to run)",
            flag_help="the edge's connector listener (repeatable; the variable takes them "
            "comma-separated)",
            env="TUNNEL_EDGE",
        ),
        _field(
            "post-quantum",
            BoolValue(),
            "`true`: offer post-quantum groups only and never fall back (a failed handshake "
            "prints a banner and, with `pq-report-url`, sends a report). `false`: prefer "
            "post-quantum, accept classical, and say so in the log",
            default=False,
            flag_help="post-quantum key exchange only, never a classical fallback",
            env="TUNNEL_POST_QUANTUM",
        ),
        _field(
            "post-quantum-auth",
            BoolValue(),
            "`true`: demand post-quantum (ML-DSA) authentication of the edge, on QUIC and "
            "http2 alike: an edge that presents a classical certificate (or an ML-DSA leaf "
            "under a classical CA) is refused in the handshake, with the post-quantum banner "
            "and report (once per connection), and retried every `max-backoff`. `false`: offer "
            "ML-DSA and accept a classical certificate (the hop list says which). Independent "
            "of `post-quantum` (key exchange); `ca-file` must hold the CA of the edge's ML-DSA "
            "certificate (devcert's `cas.pem` holds both of its CAs, docs/auth.md)",
            default=False,
            flag_help="demand ML-DSA (post-quantum) authentication of the edge",
            env="TUNNEL_POST_QUANTUM_AUTH",
        ),
        _field(
            "groups",
            GroupsValue(),
            "the key-exchange groups to offer; with `post-quantum: true` at least one must be "
            "post-quantum (the classical ones are then dropped). Names as in `docs/groups.md`, "
            "case-insensitive; the flag takes them comma-separated",
            default_doc="the connector's default list",
            flag_help="key-exchange groups to offer, comma-separated",
            env="TUNNEL_GROUPS",
        ),
        _field(
            "ha-connections",
            IntValue(1, 16),
            "how many connections to keep open to the edge",
            default=4,
            flag_help="connections to keep open to the edge (1-16)",
            env="TUNNEL_HA_CONNECTIONS",
        ),
        _metrics(
            "the metrics server (`/metrics`, `/ready`, `/healthcheck`); port 0 picks a free "
            "port, printed at start",
            "where to serve /metrics, /ready, /healthcheck",
            env="TUNNEL_METRICS",
        ),
        _loglevel("connector", "how much to log", env="TUNNEL_LOGLEVEL"),
        *_logs("connector", env=True),
        _grace_period("time for requests in flight at shutdown, e.g. 30s", "TUNNEL_GRACE_PERIOD"),
        _field(
            "pq-report-url",
            UrlValue(),
            "where to POST a JSON report when a post-quantum handshake fails (the edge serves "
            "one at `/pq-report`)",
            flag_help="where to POST post-quantum failure reports",
            env="TUNNEL_PQ_REPORT_URL",
        ),
        _field(
            "retries",
            IntValue(0, None),
            "consecutive failed attempts per connection (with capped exponential backoff and "
            "jitter) before the connector gives up on it, and exits with an error once every "
            "connection gave up; `0` retries forever, as cloudflared does. A successful "
            "registration resets the count. An authentication refusal (wrong secret, deleted "
            "tunnel) is never retried",
            default=0,
            flag_help="failed attempts per connection before giving up (0: forever)",
            env="TUNNEL_RETRIES",
        ),
        _field(
            "max-backoff",
            DurationValue(),
            "the longest wait between two attempts of one connection: the wait doubles from "
            "0.5s after each failure up to this cap, each one jittered (a random 50-100%) so "
            "many connectors do not stampede a recovering edge",
            default=30.0,
            flag_help="longest wait between reconnect attempts, e.g. 30s",
            env="TUNNEL_MAX_BACKOFF",
        ),
        _field(
            "ca-file",
            PathValue(must_exist=True),
            "a CA certificate (PEM) to trust for the edge's certificate; relative to this "
            "file; must exist",
            default_doc="the system's trust store",
            flag_help="CA that issued the edge's certificate",
            env="TUNNEL_CACERT",
        ),
        _field(
            "edge-server-name",
            HostnameValue(wildcard=False),
            "the TLS server name (SNI) the connector sends and checks the edge's certificate "
            "against",
            default_doc="the host part of each `edge` address",
            flag_help="the name the edge's certificate must carry",
            env="TUNNEL_EDGE_SERVER_NAME",
        ),
        _field(
            "protocol",
            ChoiceValue(TUNNEL_PROTOCOLS),
            "the transport to the edge: `quic` (QUIC over UDP, ALPN `pq-tunnel/1`), `http2` "
            "(HTTP/2 over TLS 1.3 over TCP, ALPN `pq-tunnel-h2/1`, for networks that drop UDP) "
            "or `auto`: QUIC first, and HTTP/2 when QUIC cannot connect (no answer, UDP "
            "unreachable), logged as `Switching to fallback protocol http2`. The key exchange "
            "is the same on both: under `post-quantum: true` a key-exchange refusal is never a "
            "reason to switch",
            default="auto",
            flag_help="the transport to the edge: auto (quic, then http2), quic, http2",
            env="TUNNEL_PROTOCOL",
        ),
        ConfigField(
            "originRequest",
            "origin_request",
            OriginRequestValue(ORIGIN_REQUEST_FIELDS),
            "how to reach the origins, cloudflared's keys (see below), for every rule; a rule's "
            "own `originRequest` key wins. Settings for TLS origins apply to `https://` and "
            "`unix+tls:` rules only",
            default=OriginSettings(),
            default_doc="none",
        ),
        _field(
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
            env="TUNNEL_URL",
        ),
        ConfigField(
            None,
            "origin_ca_file",
            PathValue(must_exist=True),
            "with `--url https://...`: the rule's `origin-ca-file`",
            flag=ConfigFlag("--origin-ca-file", "with --url https://...: CA of the origin"),
            env="TUNNEL_ORIGIN_CA_POOL",
        ),
        ConfigField(
            None,
            "origin_server_name",
            HostnameValue(wildcard=False),
            "with `--url https://...`: the rule's `origin-server-name`",
            flag=ConfigFlag(
                "--origin-server-name",
                "with --url https://...: the name the origin's certificate must carry",
            ),
            env="TUNNEL_ORIGIN_SERVER_NAME",
        ),
    ),
)

#: Every table, in the order the docs present them.
TABLES = (
    CONNECTOR_FIELDS,
    RULE_FIELDS,
    ORIGIN_REQUEST_FIELDS,
    EDGE_FIELDS,
    PUBLIC_FIELDS,
    CONNECTORS_FIELDS,
    CLUSTER_FIELDS,
)
