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
    PathValue,
    PolicyValue,
    RegexValue,
    SectionValue,
    ServiceValue,
    TextValue,
    UrlValue,
)
from .table import ConfigField, ConfigFlag, FieldTable, ValueKind

__all__ = [
    "CONNECTORS_FIELDS",
    "CONNECTOR_FIELDS",
    "EDGE_FIELDS",
    "PUBLIC_FIELDS",
    "RULE_FIELDS",
    "TABLES",
]


def _field(
    key: str, kind: ValueKind, doc: str, *, flag_help: str | None = None, **options: Any
) -> ConfigField:
    """A key whose attribute is the key in snake case and whose flag, if it has one, is
    ``--KEY`` with ``flag_help``, so a row says neither twice. That is every key but
    ``tunnel`` (a positional argument); ``--url`` has no key. ``options`` are
    :class:`ConfigField`'s."""
    flag = None if flag_help is None else ConfigFlag(f"--{key}", flag_help)
    return ConfigField(key, key.replace("-", "_"), kind, doc, flag=flag, **options)


def _metrics(doc: str, flag_help: str | None = None) -> ConfigField:
    """Both programs serve their metrics on a free local port unless told where."""
    return _field(
        "metrics",
        HostPortValue(listen=True),
        doc,
        default=HostPort("127.0.0.1", 0),
        flag_help=flag_help,
    )


def _loglevel(program: str, flag_help: str) -> ConfigField:
    """Both programs log at the same levels, ``info`` unless told otherwise."""
    return _field(
        "loglevel",
        LogLevelValue(),
        f"how much the {program} logs",
        default="info",
        flag_help=flag_help,
    )


def _grace_period(flag_help: str | None = None) -> ConfigField:
    """Both programs give requests in flight the same time to finish at shutdown."""
    return _field(
        "grace-period",
        DurationValue(),
        "on SIGTERM/SIGINT, how long requests in flight may take to finish",
        default=30.0,
        flag_help=flag_help,
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
    if service.kind == "https":
        return None
    return f"only applies to https:// services, not {service.text!r}"


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
            "http3` (port 443 if omitted); `http_status:NNN` — answer with status NNN (100-599) "
            "without an origin",
            required=True,
        ),
        _field(
            "origin-ca-file",
            PathValue(must_exist=True),
            "for `https://` services only: a CA (PEM) to trust for the origin's certificate; "
            "relative to this file; must exist",
            default_doc="the system's trust store",
            requires=_https_only,
        ),
        _field(
            "origin-server-name",
            HostnameValue(wildcard=False),
            "for `https://` services only: the TLS server name to use for the origin",
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
            "(over TLS for `https://`). Any case",
            default="auto",
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
        _field(
            "credentials-file",
            PathValue(must_exist=False),
            "the JSON file `pq-tunnel create` wrote; relative to this file",
            default_doc="none (required to run)",
            flag_help="the credentials file pq-tunnel create wrote",
        ),
        _field(
            "edge",
            HostPortListValue("edge address"),
            "the edge's connector listener(s); `ha-connections` are spread over them",
            default=(),
            default_doc="none (required to run)",
            flag_help="the edge's connector listener (repeatable)",
        ),
        _field(
            "post-quantum",
            BoolValue(),
            "`true`: offer post-quantum groups only and never fall back (a failed handshake "
            "prints a banner and, with `pq-report-url`, sends a report). `false`: prefer "
            "post-quantum, accept classical, and say so in the log",
            default=False,
            flag_help="post-quantum key exchange only, never a classical fallback",
        ),
        _field(
            "groups",
            GroupsValue(),
            "the key-exchange groups to offer; with `post-quantum: true` at least one must be "
            "post-quantum (the classical ones are then dropped). Names as in `docs/groups.md`, "
            "case-insensitive; the flag takes them comma-separated",
            default_doc="the connector's default list",
            flag_help="key-exchange groups to offer, comma-separated",
        ),
        _field(
            "ha-connections",
            IntValue(1, 16),
            "how many connections to keep open to the edge",
            default=4,
            flag_help="connections to keep open to the edge (1-16)",
        ),
        _metrics(
            "the metrics server (`/metrics`, `/ready`, `/healthcheck`); port 0 picks a free "
            "port, printed at start",
            "where to serve /metrics, /ready, /healthcheck",
        ),
        _loglevel("connector", "how much to log"),
        _grace_period("time for requests in flight at shutdown, e.g. 30s"),
        _field(
            "pq-report-url",
            UrlValue(),
            "where to POST a JSON report when a post-quantum handshake fails (the edge serves "
            "one at `/pq-report`)",
            flag_help="where to POST post-quantum failure reports",
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
        ),
        _field(
            "max-backoff",
            DurationValue(),
            "the longest wait between two attempts of one connection: the wait doubles from "
            "0.5s after each failure up to this cap, each one jittered (a random 50-100%) so "
            "many connectors do not stampede a recovering edge",
            default=30.0,
            flag_help="longest wait between reconnect attempts, e.g. 30s",
        ),
        _field(
            "ca-file",
            PathValue(must_exist=True),
            "a CA certificate (PEM) to trust for the edge's certificate; relative to this "
            "file; must exist",
            default_doc="the system's trust store",
            flag_help="CA that issued the edge's certificate",
        ),
        _field(
            "edge-server-name",
            HostnameValue(wildcard=False),
            "the TLS server name (SNI) the connector sends and checks the edge's certificate "
            "against",
            default_doc="the host part of each `edge` address",
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
TABLES = (CONNECTOR_FIELDS, RULE_FIELDS, EDGE_FIELDS, PUBLIC_FIELDS, CONNECTORS_FIELDS)
