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
from ..logs import LOG_FORMATS
from .ingress import ORIGIN_PROTOCOLS
from .kinds import (
    BoolValue,
    ChoiceValue,
    DurationValue,
    GroupsValue,
    HostnameValue,
    HostPortListValue,
    HostPortValue,
    IngressValue,
    IntValue,
    LogLevelValue,
    OriginRequestValue,
    PathValue,
    PolicyValue,
    RegexValue,
    SectionValue,
    ServiceValue,
    TextValue,
    UrlValue,
)
from .origin_fields import ORIGIN_REQUEST_FIELDS
from .origin_request import OriginSettings
from .table import ConfigField, ConfigFlag, FieldTable, ValueKind

__all__ = [
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


def _field(
    key: str, kind: ValueKind, doc: str, *, flag_help: str | None = None, **options: Any
) -> ConfigField:
    """A key whose attribute is the key in snake case and whose flag, if it has one, is
    ``--KEY`` with ``flag_help``, so a row says neither twice. That is every key but
    ``tunnel`` (a positional argument); ``--url`` has no key. ``options`` are
    :class:`ConfigField`'s."""
    flag = None if flag_help is None else ConfigFlag(f"--{key}", flag_help)
    return ConfigField(key, key.replace("-", "_"), kind, doc, flag=flag, **options)


def _metrics(doc: str, flag_help: str | None = None, env: str | None = None) -> ConfigField:
    """Both programs serve their metrics on a free local port unless told where."""
    return _field(
        "metrics",
        HostPortValue(listen=True),
        doc,
        default=HostPort("127.0.0.1", 0),
        flag_help=flag_help,
        env=env,
    )


def _loglevel(program: str, flag_help: str, env: str | None = None) -> ConfigField:
    """Both programs log at the same levels, ``info`` unless told otherwise."""
    return _field(
        "loglevel",
        LogLevelValue(),
        f"how much the {program} logs",
        default="info",
        flag_help=flag_help,
        env=env,
    )


def _logs(program: str, env: bool) -> tuple[ConfigField, ConfigField]:
    """Both programs can log to a file as well, and in JSON (``logs.py``)."""
    return (
        _field(
            "logfile",
            PathValue(must_exist=False),
            f"also append the {program}'s log to this file (created 0600 if new); relative "
            "to this file",
            default_doc="none (standard error only)",
            flag_help="also append the log to this file",
            env="TUNNEL_LOGFILE" if env else None,
        ),
        _field(
            "log-format",
            ChoiceValue(LOG_FORMATS),
            "`text`: cloudflared-like lines (`2026-01-02T10:00:00Z INF message`); `json`: one "
            'JSON object per line (`{"time", "level", "logger", "message"}`), on standard '
            "error and in `logfile` alike",
            default="text",
            flag_help="text, or json (one JSON object per line)",
            env="TUNNEL_LOG_FORMAT" if env else None,
        ),
    )


def _grace_period(flag_help: str | None = None, env: str | None = None) -> ConfigField:
    """Both programs give requests in flight the same time to finish at shutdown."""
    return _field(
        "grace-period",
        DurationValue(),
        "on SIGTERM/SIGINT, how long requests in flight may take to finish",
        default=30.0,
        flag_help=flag_help,
        env=env,
    )


def _listener(
    *, bind: str, certfile: str, keyfile: str, pair_default: str | None
) -> tuple[ConfigField, ...]:
    """The keys both of the edge's listeners start with (``edge.ListenerConfig``): where it
    binds, and the certificate and key it presents, which must exist. ``pair_default`` is what
    the pair defaults to, ``None`` when it is required."""
    pair: dict[str, Any] = (
        {"required": True} if pair_default is None else {"default_doc": pair_default}
    )
    return (
        _field("bind", HostPortValue(listen=True), bind, required=True),
        _field("certfile", PathValue(must_exist=True), certfile, **pair),
        _field("keyfile", PathValue(must_exist=True), keyfile, **pair),
    )


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

PUBLIC_FIELDS = FieldTable(
    "edge-public",
    "edge.yaml: public",
    (
        *_listener(
            bind="where visitors connect: HTTP/3 on UDP and HTTP/1.1 + HTTP/2 on TCP (with "
            "`Alt-Svc`), one port for both",
            certfile="the certificate chain (PEM) visitors see; must exist",
            keyfile="its private key (PEM); must exist",
            pair_default=None,
        ),
        _field(
            "pq",
            PolicyValue([Policy.PREFER, Policy.REQUIRE]),
            "`prefer`: post-quantum key exchange when the visitor offers it, classical "
            "otherwise; `require`: post-quantum or no connection, on QUIC (HTTP/3) and on TCP "
            "(HTTP/1.1, HTTP/2) alike: a classical visitor fails in the TLS handshake",
            default=Policy.PREFER,
        ),
        _field(
            "max-requests-per-visitor",
            IntValue(1, None),
            "requests (and WebSockets) one visitor may have in flight through the tunnels at "
            "once; more wait for one of theirs to finish (up to 4 times this many, for at most "
            "10s, holding no tunnel stream), the rest get `429`. A visitor is one IPv4 address "
            "or one IPv6 /64; raise it when many people share an address (a large NAT)",
            default=64,
        ),
        _field(
            "max-requests-per-tunnel",
            IntValue(1, None),
            "requests (and WebSockets) one tunnel may have in flight at once, all visitors "
            "together; more get `503` at once instead of waiting for a tunnel stream",
            default=512,
        ),
        _field(
            "body-idle-timeout",
            DurationValue(),
            "a request or response body that moves no byte for this long (a visitor that "
            "stops sending or stops reading, an origin that stalls mid-body) is cancelled and "
            "its tunnel stream freed; the wait for the response head is not limited",
            default=60.0,
        ),
    ),
)

CONNECTORS_FIELDS = FieldTable(
    "edge-connectors",
    "edge.yaml: connectors",
    (
        *_listener(
            bind="where connectors' QUIC connections arrive (UDP); must not be the public UDP port",
            certfile="a separate certificate for connectors; give `keyfile` too",
            keyfile="the separate certificate's key; give `certfile` too",
            pair_default="the `public` pair",
        ),
        _field(
            "post-quantum",
            PolicyValue(list(Policy)),
            "which key exchanges the edge accepts from connectors: `require` (post-quantum "
            "only: a classical-only connector is refused), `prefer` (post-quantum first, "
            "classical accepted), `off` (aioquic's classical groups only)",
            default=Policy.PREFER,
        ),
        _field(
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
        _field(
            "public",
            SectionValue(PUBLIC_FIELDS),
            "the visitors' listener, see below",
            required=True,
        ),
        _field(
            "connectors",
            SectionValue(CONNECTORS_FIELDS),
            "the connectors' QUIC listener, see below",
            required=True,
        ),
        _field(
            "store",
            PathValue(must_exist=False),
            "the SQLite tunnel store `pq-tunnel create` writes (created with mode 0600)",
            default=Path("tunnels.db"),
            default_doc="`tunnels.db` next to this file",
        ),
        _metrics("the edge's metrics server"),
        _loglevel("edge", "how much to log (overrides the file)"),
        *_logs("edge", env=False),
        _grace_period(),
        _field(
            "edge-id",
            TextValue(),
            "this edge's name in logs, registrations and the status page; set it when several "
            "edges share a host",
            default_factory=socket.gethostname,
            default_doc="the machine's host name",
        ),
        _field(
            "location",
            TextValue(),
            "free text shown to connectors (`location=...` in their logs)",
            default="local",
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
)
