"""``originRequest``: how the connector reaches an origin, as cloudflared spells it.

cloudflared users write ``originRequest`` at the top of ``config.yml`` (every rule) and inside a
rule (that rule only, key by key over the top level). The keys are declared in
``fields.ORIGIN_REQUEST_FIELDS``; this module holds what they mean together: a key left out is
``None`` here (so a rule's settings can be laid over the top level's with :meth:`over`), and
:meth:`OriginSettings.effective` applies the defaults once everything is merged.

Kept apart from the field table and the origin client so that both can import it: the table
reads it, the proxy resolves it per rule, the origin client never sees YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_KEEPALIVE_CONNECTIONS",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_TLS_TIMEOUT",
    "TLS_ONLY_KEYS",
    "OriginSettings",
]

#: Defaults, as the origin client had them before ``originRequest`` existed (cloudflared's
#: differ: 30s, 10s, 1m30s and 100; see docs/tunnel.md for why ours are shorter).
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_TLS_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 4.0
DEFAULT_KEEPALIVE_CONNECTIONS = 16

#: Settings (attributes) that mean something only for a service reached over TLS
#: (``https://``, ``unix+tls:``).
TLS_ONLY_KEYS = (
    "tls_timeout",
    "no_tls_verify",
    "ca_pool",
    "origin_server_name",
    "http2_origin",
    "post_quantum",
)


@dataclass(frozen=True)
class OriginSettings:
    """One ``originRequest`` mapping; ``None`` means "not given here".

    ``post_quantum`` is a policy name (``off``, ``prefer``, ``require``) for the origin hop;
    when no level gives one, the connector's ``post-quantum`` decides (require when it is on).
    """

    connect_timeout: float | None = None
    tls_timeout: float | None = None
    keep_alive_timeout: float | None = None
    keep_alive_connections: int | None = None
    no_tls_verify: bool | None = None
    ca_pool: Path | None = None
    origin_server_name: str | None = None
    http_host_header: str | None = None
    disable_chunked_encoding: bool | None = None
    http2_origin: bool | None = None
    post_quantum: str | None = None

    def over(self, base: OriginSettings) -> OriginSettings:
        """These settings where given, ``base``'s elsewhere (a rule's over the top level's)."""
        changes = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }
        return dataclasses.replace(base, **changes)

    def given(self) -> tuple[str, ...]:
        """The attributes set at this level, for checks against the rule's service."""
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    @property
    def connect_limit(self) -> float:
        return DEFAULT_CONNECT_TIMEOUT if self.connect_timeout is None else self.connect_timeout

    @property
    def tls_limit(self) -> float:
        return DEFAULT_TLS_TIMEOUT if self.tls_timeout is None else self.tls_timeout

    @property
    def keepalive_limit(self) -> float:
        if self.keep_alive_timeout is None:
            return DEFAULT_KEEPALIVE_TIMEOUT
        return self.keep_alive_timeout

    @property
    def keepalive_count(self) -> int:
        if self.keep_alive_connections is None:
            return DEFAULT_KEEPALIVE_CONNECTIONS
        return self.keep_alive_connections
