"""What both tunnel stores (SQLite and Redis) share: the record, the errors, and the rules a
tunnel's name and hostnames follow, so the two backends accept and refuse the same things with
the same words.

Only the HKDF-derived auth key is ever stored, never the tunnel secret (see ``credentials.py``):
:func:`new_tunnel` makes the secret, derives the key and hands the secret back to be written to
the credentials file, once.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ..credentials import SECRET_BYTES, derive_auth_key
from ..hostnames import normalize_hostname, request_host

__all__ = [
    "REPORTS_KEPT",
    "NewTunnel",
    "StoreError",
    "TunnelConflictError",
    "TunnelNotFoundError",
    "TunnelRecord",
    "canonical_id",
    "host_candidates",
    "hostname_conflict",
    "name_conflict",
    "new_tunnel",
    "normalize_all",
    "not_found",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: How many post-quantum failure reports the store keeps (older ones are deleted).
REPORTS_KEPT = 200


class StoreError(Exception):
    """Base class for tunnel store errors."""


class TunnelNotFoundError(StoreError, LookupError):
    """No tunnel with that ID or name."""


class TunnelConflictError(StoreError, ValueError):
    """The name or a hostname is already taken by another tunnel."""


@dataclass(frozen=True)
class TunnelRecord:
    """A tunnel as the edge knows it; ``auth_key`` verifies proofs and is kept out of repr."""

    id: str
    name: str
    hostnames: tuple[str, ...]
    created_at: datetime
    auth_key: bytes = field(repr=False)


@dataclass(frozen=True)
class NewTunnel:
    """A tunnel about to be stored: its ``secret`` goes to the credentials file only."""

    id: str
    name: str
    hostnames: tuple[str, ...]
    auth_key: bytes = field(repr=False)
    secret: bytes = field(repr=False)


def new_tunnel(name: str, hostnames: Iterable[str]) -> NewTunnel:
    """A UUID4, a fresh 32-byte secret and its derived key, after checking the name and the
    hostnames (``ValueError`` says what to write instead)."""
    if not isinstance(name, str) or not _NAME.match(name) or canonical_id(name) is not None:
        raise ValueError(
            f"{name!r} is not a valid tunnel name: use 1-64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit, and not shaped like a UUID"
        )
    hosts = tuple(normalize_all(hostnames))
    tunnel_id = str(uuid.uuid4())
    secret = secrets.token_bytes(SECRET_BYTES)
    return NewTunnel(tunnel_id, name, hosts, derive_auth_key(secret, tunnel_id), secret)


def canonical_id(text: object) -> str | None:
    """``text`` as a lower-case UUID, or ``None`` when it is not one (then it may be a name)."""
    try:
        return str(uuid.UUID(str(text)))
    except (ValueError, TypeError, AttributeError):
        return None


def normalize_all(hostnames: Iterable[str]) -> list[str]:
    """Every hostname normalised once, in order (``ValueError`` for an invalid one)."""
    if isinstance(hostnames, str):
        hostnames = [hostnames]
    out: list[str] = []
    for h in hostnames:
        name = normalize_hostname(h)
        if name not in out:
            out.append(name)
    return out


def host_candidates(host: str) -> list[str]:
    """What a request's host may be routed by, best first: the exact hostname, then each
    wildcard from the most specific (``*.b.example.com`` before ``*.example.com``). Case and
    ``:port`` are ignored; an empty list for a host that is not a name."""
    h = request_host(host)
    if not h:
        return []
    labels = h.split(".")
    return [h] + ["*." + ".".join(labels[i:]) for i in range(1, len(labels))]


def not_found(id_or_name: str, names: Iterable[str]) -> TunnelNotFoundError:
    """The error for a tunnel that is not there, naming those that are (for a typo)."""
    known = sorted(names)
    hint = f"; known tunnels: {', '.join(known)}" if known else "; there are no tunnels"
    return TunnelNotFoundError(f"no tunnel with ID or name {id_or_name!r}{hint}")


def hostname_conflict(hostname: str, owner_id: str, owner_name: str) -> TunnelConflictError:
    return TunnelConflictError(
        f"hostname {hostname!r} already belongs to tunnel {owner_name!r} ({owner_id}); "
        f"remove it there first: pq-tunnel route {owner_name} --remove-hostname {hostname}"
    )


def name_conflict(name: str, owner_id: str) -> TunnelConflictError:
    """The error for a tunnel name that is taken, naming the tunnel that has it."""
    return TunnelConflictError(f"a tunnel named {name!r} already exists ({owner_id})")
