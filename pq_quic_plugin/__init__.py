"""Post-quantum key exchange for aioquic and hypercorn.

Public API (see docs/): :func:`configure` one QuicConfiguration, :func:`install` for every
aioquic connection, :func:`negotiated_group` to read back what a handshake agreed on.
"""

from __future__ import annotations

from .aioquic_binding import configure, install, negotiated_group, uninstall
from .groups.base import Group, InvalidKeyShare
from .plugins import UnknownGroupError, registry
from .policy import Policy

__version__ = "0.1.0"


def available_groups() -> list[Group]:
    """Every registered group, built-in and from plugins, in default preference order."""
    return registry().all()


def group_by_name(name: str) -> Group:
    """Look a group up by IANA name, case-insensitively; raises UnknownGroupError."""
    return registry().by_name(name)


__all__ = [
    "Group",
    "InvalidKeyShare",
    "Policy",
    "UnknownGroupError",
    "available_groups",
    "configure",
    "group_by_name",
    "install",
    "negotiated_group",
    "uninstall",
]
