"""``store:`` in ``edge.yaml``: a SQLite file, or ``redis://`` / ``rediss://`` for a cluster.

A Redis URL may carry the server's password (``redis://:PASSWORD@HOST:PORT/DB``), so the URL
is kept in a :class:`RedisURL` whose ``str`` and ``repr`` show it masked: a log line, an error
or a status page that prints the store cannot leak the password. Only :attr:`RedisURL.url`
(given to the Redis client) holds it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml

from .table import ValueKind
from .values import describe
from .yaml_reader import YamlReader

__all__ = ["REDIS_SCHEMES", "RedisURL", "StoreValue", "is_redis_url", "parse_redis_url"]

REDIS_SCHEMES = ("redis", "rediss")
#: Query parameters the Redis client understands and we let through (TLS and timeouts).
_QUERY = frozenset(
    {
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "socket_timeout",
        "socket_connect_timeout",
    }
)


@dataclass(frozen=True)
class RedisURL:
    """A validated Redis URL; prints as :attr:`masked`, never with its password."""

    url: str = field(repr=False)
    host: str
    port: int
    db: int
    tls: bool
    has_password: bool

    @property
    def masked(self) -> str:
        """The URL with the user's password replaced by ``***`` (what logs and errors show)."""
        parts = urlsplit(self.url)
        if not self.has_password:
            return self.url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"RedisURL({self.masked!r})"


def is_redis_url(text: object) -> bool:
    return isinstance(text, str) and text.strip().lower().startswith(
        tuple(f"{s}://" for s in REDIS_SCHEMES)
    )


def parse_redis_url(text: str) -> RedisURL:
    """Check ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?ssl_ca_certs=...]``; the errors
    quote the URL masked."""
    text = text.strip()
    parts = urlsplit(text)
    shown = _mask_raw(text)
    if parts.scheme.lower() not in REDIS_SCHEMES:
        raise ValueError(f"{shown}: a Redis store URL starts with redis:// or rediss://")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{shown}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{shown}: name the Redis host (redis://HOST:PORT/DB)")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{shown}: the database is a number (redis://HOST:PORT/0), not {path!r}")
    unknown = sorted({k for k, _ in parse_qsl(parts.query)} - _QUERY)
    if unknown:
        raise ValueError(
            f"{shown}: unknown parameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_QUERY))}"
        )
    return RedisURL(
        url=text,
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        tls=parts.scheme.lower() == "rediss",
        has_password=parts.password is not None,
    )


def _mask_raw(text: str) -> str:
    """``text`` with anything between ``:`` and ``@`` in its authority masked (for errors
    about a URL we could not parse)."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return text
    auth, _, tail = rest.partition("@")
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}" if ":" in auth else text


class StoreValue(ValueKind):
    """A SQLite file (relative to the file) or a Redis URL (:class:`RedisURL`)."""

    doc = "path, or `redis://` / `rediss://` URL"
    metavar = "FILE|URL"

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> Path | RedisURL:
        text = r.text(node, key, "a file path or a redis:// URL")
        if is_redis_url(text):
            return r.convert(node, key, parse_redis_url)
        return r.resolve(Path(text))

    def convert(self, value: Any) -> Path | RedisURL:
        if isinstance(value, (Path, RedisURL)):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a file path or a redis:// URL, got {describe(value)}")
        return parse_redis_url(value) if is_redis_url(value) else Path(value)

    def resolve_default(self, r: YamlReader, value: Any) -> Any:
        return None if value is None else r.resolve(Path(value))
