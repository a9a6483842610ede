"""Host names and ``host:port`` pairs: one definition of parsing, formatting and normalising.

A tunnel matches visitors' ``Host`` headers against hostnames from files and the command line,
and prints addresses in logs, errors and metrics. Every one of those places uses the functions
here, so a name is normalised (lower case, no trailing dot, no port, IPv6 without brackets) the
same way wherever it is compared, and an IPv6 address is always printed in brackets.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

__all__ = [
    "MAX_HOST_HEADER",
    "HostPort",
    "format_hostport",
    "hostname_matches",
    "normalize_hostname",
    "parse_hostport",
    "request_host",
    "strip_port",
]


def format_hostport(host: str, port: int) -> str:
    """``host:port``, or ``[v6]:port`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HostPort(NamedTuple):
    """A host and a port; ``str()`` gives ``host:port``, or ``[v6]:port`` for IPv6."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


_HOSTNAME_LABEL = re.compile(r"\A(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


def parse_hostport(text: str, *, allow_port_zero: bool = False) -> HostPort:
    """Split ``host:port`` or ``[v6addr]:port``; the port is required.

    ``allow_port_zero`` is for listening addresses, where port 0 asks the OS for a free port.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected HOST:PORT as a string, got {text!r}")
    s = text.strip()
    if "://" in s:
        raise ValueError(f"{text!r} looks like a URL; give HOST:PORT without a scheme")
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = s[1:end], s[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError(f"{text!r} has no port; write [{host}]:PORT")
        port_text = rest[1:]
    else:
        if s.count(":") > 1:
            raise ValueError(f"{text!r}: put IPv6 addresses in brackets, e.g. [::1]:443")
        host, sep, port_text = s.partition(":")
        if not sep:
            raise ValueError(f"{text!r} has no port; write HOST:PORT, e.g. {s or 'localhost'}:443")
        if not host:
            raise ValueError(f"{text!r} has no host; write HOST:PORT, e.g. 127.0.0.1{s}")
        labels = host.lower().rstrip(".").split(".")
        if not all(_HOSTNAME_LABEL.match(label) for label in labels):
            raise ValueError(f"{text!r}: {host!r} is not a valid host name or address")
    if not port_text.isdigit():
        raise ValueError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"{text!r}: port must be from {low} to 65535")
    return HostPort(host, port)


def strip_port(host: str) -> str:
    """The host part of a ``Host`` header: drops ``:port`` and IPv6 brackets."""
    h = host.strip()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        return h.partition(":")[0]
    return h


#: The longest ``Host`` value that can name a valid host: a 253-character name, a trailing dot
#: and ``:65535``, or a bracketed IPv6 address with a zone and a port. Anything longer is refused
#: before it is split, so no work on a visitor's header grows faster than its length.
MAX_HOST_HEADER = 253 + 1 + 6


def request_host(value: str) -> str:
    """The host a request names in ``Host`` or ``:authority``, as routing compares it.

    No port, no IPv6 brackets, lower case, no trailing dot: the form :func:`normalize_hostname`
    gives configured names, so a visitor's ``Example.COM.:443`` finds ``example.com``.

    ``""`` when ``value`` names no valid host (RFC 1035/1123 limits: at most 253 characters,
    labels of 1-63 letters, digits, ``-`` or ``_`` that neither start nor end with ``-``; an
    IPv6 literal in brackets; a numeric port): every caller can then treat it as "no such host"
    (the edge answers 400), and a huge header costs one length check, never a per-label copy.
    """
    if not isinstance(value, str) or len(value) > MAX_HOST_HEADER + 2:  # + the spaces stripped
        return ""
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "?"
        if rest and not (rest.startswith(":") and _port_ok(rest[1:])):
            return ""
        return _ipv6(text[1:end])
    if text.count(":") > 1:  # a bare IPv6 address (an ASGI server's own address)
        return _ipv6(text)
    host, sep, port = text.partition(":")
    if sep and not _port_ok(port):
        return ""
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or len(host) > 253:
        return ""
    if not all(_HOSTNAME_LABEL.match(label) for label in host.split(".")):
        return ""
    return host


def _ipv6(text: str) -> str:
    """``text`` lower-cased if it is an IPv6 address, else ``""``."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return ""
    return text.lower()


def _port_ok(text: str) -> bool:
    """A ``Host`` header's port: 1-5 ASCII digits (any value; routing ignores it)."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def normalize_hostname(text: str, *, allow_wildcard: bool = True) -> str:
    """Lower-case, validate and return a host name, optionally ``*.``-prefixed.

    The wildcard must be a whole leftmost label and stands for one or more labels, so
    ``*.example.com`` covers ``a.example.com`` and ``a.b.example.com`` but not ``example.com``.
    Non-ASCII names must be given in their ``xn--`` form.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a host name, got {text!r}")
    name = text.strip().lower().rstrip(".")
    if name == "*":
        raise ValueError("'*' alone is not a host name; leave hostname out for a catch-all rule")
    labels = name.split(".")
    if labels[0] == "*":
        if not allow_wildcard:
            raise ValueError(f"{text!r}: a wildcard is not allowed here")
        labels = labels[1:]
        if len(labels) < 2 and labels != ["localhost"]:
            raise ValueError(f"{text!r}: a wildcard needs a domain, e.g. *.example.com")
    if not labels or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        hint = " (a wildcard must be the whole leftmost label: *.example.com)"
        hint = hint if "*" in name else ""
        raise ValueError(f"{text!r} is not a valid host name{hint}")
    if len(name) > 253:
        raise ValueError(f"{text!r} is longer than 253 characters")
    return name


def hostname_matches(pattern: str, host: str) -> bool:
    """Does a normalized pattern (maybe ``*.domain``) match a host (any case, any port)?"""
    h = request_host(host)
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        return h.endswith(suffix) and len(h) > len(suffix)
    return h == pattern
