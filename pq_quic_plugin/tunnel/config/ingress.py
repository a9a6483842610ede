"""Ingress: which service answers a request, by ``Host`` and path.

A rule is plain data plus its matching; reading rules from YAML is the field table's job
(``fields.RULE_FIELDS``), so this module knows nothing about files and is what the connector
consults on every request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ..hostnames import HostPort, format_hostport, hostname_matches
from .origin_request import OriginSettings

__all__ = [
    "ORIGIN_PROTOCOLS",
    "SERVICE_HINT",
    "IngressRule",
    "Service",
    "ServiceKind",
    "check_ingress",
    "check_origin_protocol",
    "compile_path",
    "parse_service",
]

SERVICE_HINT = (
    "use http://HOST:PORT, https://HOST:PORT, unix:/PATH, unix+tls:/PATH, hello_world or "
    "http_status:NNN"
)

ServiceKind = Literal["http", "https", "unix", "unix+tls", "http_status", "hello_world"]

#: How the connector speaks to an origin (``origin-protocol``); ``auto`` first, the default.
ORIGIN_PROTOCOLS = ("auto", "http1", "http2", "http3")


@dataclass(frozen=True)
class Service:
    """Where an ingress rule sends requests.

    ``kind`` is ``"http"`` (HTTP/1.1 to the origin), ``"https"`` (TLS to the origin,
    post-quantum: over TCP with HTTP/2 or HTTP/1.1, or HTTP/3 over QUIC, as the rule's
    ``origin-protocol`` says), ``"unix"`` / ``"unix+tls"`` (the same two over a Unix socket at
    ``socket_path``, as cloudflared's ``unix:`` and ``unix+tls:``), ``"http_status"`` (answer
    with ``status`` and no origin) or ``"hello_world"`` (the connector's own test page).
    ``base_path`` is prefixed to the request path (``""`` or ``"/base"``, no trailing slash).
    """

    kind: ServiceKind
    text: str
    host: str = ""
    port: int = 0
    base_path: str = ""
    status: int = 0
    socket_path: str = ""

    @property
    def address(self) -> HostPort:
        return HostPort(self.host, self.port)

    @property
    def tls(self) -> bool:
        """True for the services reached over TLS (``https://``, ``unix+tls:``)."""
        return self.kind in ("https", "unix+tls")

    @property
    def is_origin(self) -> bool:
        """True when requests go to an origin server (not answered by the connector)."""
        return self.kind in ("http", "https", "unix", "unix+tls")

    @property
    def is_unix(self) -> bool:
        return self.kind in ("unix", "unix+tls")

    @property
    def where(self) -> str:
        """Where the origin listens, for messages: ``127.0.0.1:8000`` or ``unix:/run/x.sock``."""
        if self.is_unix:
            return f"unix:{self.socket_path}"
        return format_hostport(self.host, self.port)

    def __str__(self) -> str:
        return self.text


def parse_service(text: str) -> Service:
    """Parse an ingress ``service`` value; ``ValueError`` says what is wrong and what to write."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a valid service; {SERVICE_HINT}")
    s = text.strip()

    def bad(detail: str = "") -> ValueError:
        extra = f" ({detail})" if detail else ""
        return ValueError(f"{text!r} is not a valid service{extra}; {SERVICE_HINT}")

    if s.lower().startswith("http_status:"):
        code = s.partition(":")[2].strip()
        if not code.isdigit() or not 100 <= int(code) <= 599:
            raise bad("the status must be a number from 100 to 599")
        return Service("http_status", s, status=int(code))
    if s.lower() == "hello_world":
        return Service("hello_world", s)
    scheme_text, colon, rest = s.partition(":")
    if colon and scheme_text.lower() in ("unix", "unix+tls"):
        return _unix_service(scheme_text.lower(), s, rest, bad)
    try:
        parts = urlsplit(s)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not s.lower().startswith(scheme + "://"):
        raise bad()
    if not parts.hostname:
        raise bad("no host")
    if parts.username or parts.password:
        raise bad("credentials in the URL are not supported")
    if parts.query or parts.fragment:
        raise bad("no query or fragment allowed")
    if port is None:
        port = 80 if scheme == "http" else 443
    if port == 0:
        raise bad("port 0")
    kind: Literal["http", "https"] = "http" if scheme == "http" else "https"
    return Service(kind, s, host=parts.hostname, port=port, base_path=parts.path.rstrip("/"))


def _unix_service(scheme: str, text: str, rest: str, bad: Callable[[str], ValueError]) -> Service:
    """``unix:/path`` or ``unix+tls:/path`` (``unix:///path`` too): an absolute socket path."""
    path = rest[2:] if rest.startswith("//") else rest
    if not path.startswith("/"):
        raise bad(f"{scheme}: needs an absolute socket path, e.g. {scheme}:/run/app.sock")
    if "\x00" in path:
        raise bad("NUL in the socket path")
    kind: Literal["unix", "unix+tls"] = "unix" if scheme == "unix" else "unix+tls"
    return Service(kind, text, host="localhost", socket_path=path)


def check_origin_protocol(protocol: str, service: Service) -> None:
    """``ValueError`` unless ``protocol`` (an ``origin-protocol``) can reach ``service``.

    Cleartext HTTP/2 (h2c) and HTTP/3 without TLS do not exist for the connector: as with
    cloudflared's ``http2Origin``, HTTP/2 needs an ``https://`` origin.
    """
    if protocol not in ORIGIN_PROTOCOLS:
        raise ValueError(
            f"{protocol!r} is not an origin protocol; use one of: {', '.join(ORIGIN_PROTOCOLS)}"
        )
    if protocol == "auto":
        return
    if not service.is_origin:
        raise ValueError(
            f"only applies to http:// and https:// services (and unix:, unix+tls:), not "
            f"{service.text!r}"
        )
    if not service.tls and protocol != "http1":
        raise ValueError(
            f"{protocol} needs an https:// service ({service.text!r} is plain HTTP, which the "
            "connector speaks as HTTP/1.1 only); use https:// or origin-protocol: http1"
        )
    if service.is_unix and protocol == "http3":
        raise ValueError(
            f"http3 needs a UDP origin; {service.text!r} is a Unix stream socket (use auto, "
            "http1 or http2)"
        )


def compile_path(pattern: str) -> re.Pattern[str]:
    """A rule's ``path`` regex, or ``ValueError`` with the compiler's complaint."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None


@dataclass(frozen=True)
class IngressRule:
    """One ``ingress`` entry. A rule without ``hostname`` and ``path`` is the catch-all.

    ``path_re`` is compiled from ``path`` once, here, so matching never recompiles it.
    ``origin_protocol`` is checked against the service here (``ValueError``), so a rule built
    in Python is held to what a file's rule is.
    """

    service: Service
    hostname: str | None = None  # normalized, maybe "*.example.com"
    path: str | None = None  # the regex as written
    origin_ca_file: Path | None = None
    origin_server_name: str | None = None
    origin_protocol: str = "auto"
    origin_request: OriginSettings = field(default_factory=OriginSettings)
    index: int = 0
    line: int | None = None
    path_re: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_origin_protocol(self.origin_protocol, self.service)
        if self.path is not None and self.path_re is None:
            object.__setattr__(self, "path_re", compile_path(self.path))

    @property
    def is_catch_all(self) -> bool:
        return self.hostname is None and self.path is None

    def matches(self, host: str, path: str) -> bool:
        """Host is compared without case or port; the path regex is ``re.search``-ed.

        ``path`` is what the edge forwarded: already in the canonical form of
        :func:`..paths.normalize_path` (``/%68i``, ``//hi`` and ``/./hi`` all arrive as ``/hi``),
        so a rule never has to spell the variants out.
        """
        if self.hostname is not None and not hostname_matches(self.hostname, host):
            return False
        if self.path_re is not None and not self.path_re.search(path.partition("?")[0]):
            return False
        return True


def check_ingress(
    rules: Sequence[IngressRule], fail: Callable[[IngressRule, str], Exception]
) -> None:
    """The last rule must catch everything and no earlier rule may (later ones would be dead)."""
    if not rules:
        return
    for rule in rules[:-1]:
        if rule.is_catch_all:
            raise fail(
                rule,
                f"this rule has no hostname and no path, so it matches every request, but it "
                f"is not the last rule: ingress[{rule.index + 1}] and later would never be used; "
                "move it to the end",
            )
    last = rules[-1]
    if not last.is_catch_all:
        raise fail(
            last,
            "the last ingress rule must be a catch-all (no hostname, no path) so every request "
            "has a service; add a final rule such as `- service: http_status:404`",
        )
