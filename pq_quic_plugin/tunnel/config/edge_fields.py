"""The edge's field tables: ``edge.yaml`` and its ``public`` and ``connectors`` sections.

Kept apart from the connector's tables (``fields.py``, which re-exports these so every table
is still reached from one place) to keep each module small.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...policy import Policy
from .cluster import DEFAULT_REGISTRY_TTL, SecretFileValue
from .common_fields import field_row as _field
from .common_fields import grace_period_field as _grace_period
from .common_fields import log_fields as _logs
from .common_fields import loglevel_field as _loglevel
from .common_fields import metrics_field as _metrics
from .kinds import (
    ChoiceValue,
    DurationValue,
    GroupsValue,
    HostnameValue,
    HostPortValue,
    IntValue,
    PathValue,
    PolicyValue,
    SectionValue,
    TextValue,
)
from .store_url import StoreValue, is_redis_url
from .table import ConfigField, FieldTable

__all__ = [
    "CLUSTER_FIELDS",
    "CONNECTORS_FIELDS",
    "EDGE_FIELDS",
    "PUBLIC_FIELDS",
    "VISITOR_QUEUE_FACTOR",
    "VISITOR_QUEUE_WAIT",
]

#: How long a visitor over its ``max-requests-per-visitor`` share waits for one of its
#: requests to finish before ``429``, and how many times its share may wait at once: part of
#: what that key means, so declared with it (``edge/limits.py`` applies them).
VISITOR_QUEUE_WAIT = 10.0
VISITOR_QUEUE_FACTOR = 16


def _listener(
    *, bind: str, certfile: str, keyfile: str, pair_default: str | None, pq_default: str = "none"
) -> tuple[ConfigField, ...]:
    """The keys both of the edge's listeners start with (``edge.ListenerConfig``): where it
    binds, and the certificate and key it presents, which must exist. ``pair_default`` is what
    the pair defaults to, ``None`` when it is required. ``pq-certfile``/``pq-keyfile`` are an
    ML-DSA pair held next to it (``config/auth_pairs.py`` has their rules)."""
    pair: dict[str, Any] = (
        {"required": True} if pair_default is None else {"default_doc": pair_default}
    )
    return (
        _field("bind", HostPortValue(listen=True), bind, required=True),
        _field("certfile", PathValue(must_exist=True), certfile, **pair),
        _field("keyfile", PathValue(must_exist=True), keyfile, **pair),
        _field(
            "pq-certfile",
            PathValue(must_exist=True),
            "an ML-DSA certificate chain (PEM) held next to `certfile`: a peer that offers "
            "ML-DSA gets it (post-quantum authentication, docs/auth.md), any other peer gets "
            "`certfile`; on QUIC and TCP alike. `pq_quic_plugin.devcert` makes a test one "
            "(its ML-DSA-65 set, docs/auth.md); give `pq-keyfile` too; must exist",
            default_doc=pq_default,
        ),
        _field(
            "pq-keyfile",
            PathValue(must_exist=True),
            "the ML-DSA certificate's private key (PEM); give `pq-certfile` too; must exist",
            default_doc=pq_default,
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
            f"once; more wait for one of theirs to finish (up to {VISITOR_QUEUE_FACTOR} times "
            f"this many, for at most {VISITOR_QUEUE_WAIT:g}s, holding no tunnel stream), the "
            "rest get `429`. A visitor is one IPv4 address "
            "or one IPv6 /64; raise it when many people share an address (a large NAT)",
            default=16,
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
            pq_default="the `public` ML-DSA pair, when this section gives no certificate",
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


def _with_ca_file(values: Mapping[str, Any]) -> str | None:
    """A name to check means nothing when certificates are not checked against a CA."""
    return None if values.get("ca_file") is not None else "only applies with `ca-file`"


CLUSTER_FIELDS = FieldTable(
    "edge-cluster",
    "edge.yaml: cluster",
    (
        _field(
            "relay",
            HostPortValue(listen=False),
            "where this edge takes requests relayed by the cluster's other edges (QUIC on UDP "
            "and HTTP/2 on TCP, post-quantum only, authenticated with the cluster secret): it "
            "listens there and publishes it in the registry, so it must be an address the "
            "other edges reach (docs/cluster.md)",
            required=True,
        ),
        _field(
            "secret-file",
            SecretFileValue(),
            "a file of at least 32 random bytes that every edge of the cluster shares (`head "
            "-c 32 /dev/urandom`), readable by its owner only (mode 0600): checked at start; "
            "relative to this file",
            required=True,
        ),
        _field(
            "registry-ttl",
            DurationValue(),
            "how long this edge's entries in the live registry (its connections, its relay "
            "address) outlive its last heartbeat (sent every third of it): an edge that dies "
            "drops out of `pq-tunnel list` within this time",
            default=DEFAULT_REGISTRY_TTL,
        ),
        _field(
            "protocol",
            ChoiceValue(("auto", "quic", "http2")),
            "the transport this edge relays to its peers over: `quic`, `http2` (HTTP/2 over "
            "TLS 1.3 over TCP) or `auto`: QUIC, and HTTP/2 when QUIC cannot connect. Both are "
            "post-quantum only; the relay listener takes both",
            default="auto",
        ),
        _field(
            "ca-file",
            PathValue(must_exist=True),
            "a cluster CA (PEM): the other edges' relay certificates (their `connectors` "
            "certificates) must be issued by it for the host of their `relay` address (or "
            "`server-name`). Without it they are not checked against any CA, and the cluster "
            "proofs are bound to the certificate each edge presents, which is what stops a "
            "TLS-terminating middlebox (docs/cluster.md); relative to this file; must exist",
            default_doc="none: fingerprint binding only",
        ),
        _field(
            "server-name",
            HostnameValue(wildcard=False),
            "with `ca-file`: the name every edge's relay certificate must carry, instead of "
            "the host of its `relay` address",
            default_doc="the host of each peer's `relay` address",
            requires=_with_ca_file,
        ),
    ),
)


def _redis_store_only(values: Mapping[str, Any]) -> str | None:
    """A cluster shares its tunnels and registry through Redis; a SQLite file is one edge's."""
    if is_redis_url(str(values.get("store", ""))):
        return None
    return "a cluster needs a shared store: set `store: redis://HOST:PORT/DB` (docs/cluster.md)"


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
            StoreValue(),
            "where the tunnels are kept, which `pq-tunnel create` writes: a SQLite file for one "
            "edge (created with mode 0600), or `redis://[:PASSWORD@]HOST:PORT/DB` (`rediss://` "
            "for TLS) shared by several edges, which then also keeps the live registry and the "
            "post-quantum failure reports (docs/cluster.md); logs show the URL's password as "
            "`***`",
            default=Path("tunnels.db"),
            default_doc="`tunnels.db` next to this file",
        ),
        _field(
            "cluster",
            SectionValue(CLUSTER_FIELDS),
            "this edge as one of several sharing a `redis://` store, see below",
            default_doc="none (a single edge)",
            requires=_redis_store_only,
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
