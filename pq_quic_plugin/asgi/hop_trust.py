"""Whose ``pq-tunnel-hops`` header to believe, and what to do with one that is not believed.

The hop list is what lets an origin behind pq-tunnel judge every hop, so it is only as good as
the address check in front of it. Two rules live here, once:

* **Addresses are compared normalised.** A dual-stack socket reports an IPv4 peer as
  ``::ffff:127.0.0.1``; that is the same host as ``127.0.0.1`` and must match it, in the
  client address and in the configured list alike. Entries may be addresses or networks
  (``10.0.0.0/8``).
* **An unbelieved hop list is a verdict, not a silence.** Dropping the header and judging the
  request on the last hop alone would let a classical visitor through whenever the connector's
  address is missing from the list. :func:`take_hops` therefore says *why* it did not believe
  a header, and the middleware refuses under ``require`` (and only warns under ``prefer``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .types import HOPS_HEADER, Scope

__all__ = ["HopsVerdict", "LOOPBACK", "TrustedPeers", "normalise_ip", "parse_hops", "take_hops"]

_HOPS_HEADER = HOPS_HEADER.encode()
LOOPBACK = ("127.0.0.1", "::1")
#: A hop list is a few hundred bytes; anything far longer is not from our connector.
MAX_HOPS_HEADER = 8 * 1024
MAX_HOPS = 16

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalise_ip(text: str) -> IPAddress:
    """``text`` as an address, an IPv4-mapped IPv6 address as the IPv4 address it maps;
    raises ``ValueError`` for anything that is not an address."""
    address = ipaddress.ip_address(text.strip().strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(text: str) -> IPNetwork:
    text = str(text).strip()
    if "/" not in text:
        address = normalise_ip(text)
        return ipaddress.ip_network(address)
    network = ipaddress.ip_network(text, strict=False)
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


class TrustedPeers:
    """The addresses and networks whose hop list is believed (``trust_hops_from``)."""

    def __init__(self, entries: Iterable[str] = LOOPBACK) -> None:
        if isinstance(entries, str):
            entries = [e for e in entries.split(",") if e.strip()]
        try:
            self.networks = tuple(_network(e) for e in entries)
        except ValueError as exc:
            raise ValueError(f"trust_hops_from: {exc}") from None

    def __contains__(self, client: object) -> bool:
        try:
            address = normalise_ip(str(client))
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def describe(self) -> str:
        return ", ".join(str(n) for n in self.networks) or "(nobody)"


@dataclass(frozen=True)
class HopsVerdict:
    """What :func:`take_hops` made of a request: the scope the app may see and, when a hop list
    was sent but not believed, why (``distrusted``: ``None`` when there was nothing to doubt)."""

    scope: Scope
    distrusted: str | None = None


def take_hops(scope: Scope, trusted: TrustedPeers) -> HopsVerdict:
    """Turn a trusted connector's ``pq-tunnel-hops`` header into ``pq_quic["hops"]``.

    The header never reaches the app unless it was believed. Hops the server already put in the
    scope win, and then the header is not judged at all (a server in front, e.g. hypercorn-pq's
    own enforcement, has decided). The server's own ``extensions`` dicts are never mutated.
    """
    headers = list(scope.get("headers") or ())
    raw = [bytes(v) for k, v in headers if bytes(k).lower() == _HOPS_HEADER]
    if not raw:
        return HopsVerdict(scope)
    pq_before = (scope.get("extensions") or {}).get("pq_quic") or {}
    already = isinstance(pq_before, dict) and isinstance(pq_before.get("hops"), list)
    client = _client_address(scope)
    reason: str | None = None
    hops: list[dict[str, Any]] | None = None
    if already:
        pass
    elif client is None or client not in trusted:
        reason = f"from {client or 'an unknown address'}, which is not in trust_hops_from"
    elif len(raw) != 1:
        reason = f"repeated {len(raw)} times"
    else:
        hops = parse_hops(raw[0])
        if hops is None:
            reason = "malformed"
    new_scope = dict(scope)
    if hops is None:  # never let an unbelieved hop list reach the app
        new_scope["headers"] = [(k, v) for k, v in headers if bytes(k).lower() != _HOPS_HEADER]
        return HopsVerdict(new_scope, reason)
    extensions = dict(scope.get("extensions") or {})
    pq = dict(extensions.get("pq_quic") or {})
    pq["hops"] = hops
    extensions["pq_quic"] = pq
    new_scope["extensions"] = extensions
    return HopsVerdict(new_scope)


def parse_hops(raw: bytes) -> list[dict[str, Any]] | None:
    """The header's JSON list of hop objects, or ``None`` if it is not one (or is huge)."""
    if len(raw) > MAX_HOPS_HEADER:
        return None
    try:
        hops = json.loads(raw.decode("latin-1"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(hops, list) or not 0 < len(hops) <= MAX_HOPS:
        return None
    if not all(isinstance(h, dict) for h in hops):
        return None
    return hops


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    if not isinstance(client, (list, tuple)) or not client or client[0] is None:
        return None  # e.g. a unix socket: no address to check
    return str(client[0])[:64]
