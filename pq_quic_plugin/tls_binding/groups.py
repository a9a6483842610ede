"""The project's groups, as OpenSSL negotiates them over TCP.

Over QUIC every group is our own Python code; over TCP OpenSSL does the key exchange, so only
the groups OpenSSL implements can be offered. Those keep the names and :class:`Group` objects of
the registry, so configuration and :func:`negotiated_group` read the same on both transports.
The rest (the draft Kyber hybrids, every plugin's group) are QUIC-only: asking for one over TCP
is a configuration error, not a silent omission, because an operator who listed it expects it.

A policy becomes an OpenSSL group list here. A server's list is split into preference tuples,
one per run of groups of the same kind (``X25519MLKEM768:... / X25519:...``): OpenSSL then
prefers a group of an earlier tuple even at the cost of a HelloRetryRequest, which is the QUIC
rule (``GroupPolicy.select``): a client that lists post-quantum but sent only a classical share
is asked for the post-quantum one, while a classical-only client is still served in one round
trip. With one flat list OpenSSL would take the classical share and never ask.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable

from ..groups.base import Group
from ..plugins import UnknownGroupError, registry
from ..policy import DEFAULT_CLIENT_GROUPS, GroupPolicy, NoPostQuantumGroupError, Policy
from .native import accepts_groups

logger = logging.getLogger("pq_quic_plugin.tls")

__all__ = [
    "OPENSSL_GROUPS",
    "QuicOnlyGroupError",
    "client_group_list",
    "group_from_openssl",
    "server_group_list",
    "split_tls_groups",
    "tls_group_policy",
]

#: The built-in groups OpenSSL (3.5 and later) implements in TLS, by codepoint; the registry's
#: names for them are OpenSSL's names too (OpenSSL compares them case-insensitively).
OPENSSL_GROUPS = frozenset({0x11EC, 0x11EB, 0x11ED, 0x0200, 0x0201, 0x0202, 0x001D, 0x0017, 0x0018})

_BUILTIN_ORIGIN = "pq_quic_plugin.builtin"


class QuicOnlyGroupError(ValueError):
    """A group that only the QUIC binding implements was asked for over TCP (TLS via OpenSSL),
    or no group of a list can be negotiated over TCP."""


def _tls_capable(group: Group) -> bool:
    """Built in, one OpenSSL implements, and accepted by the OpenSSL actually in use. A plugin's
    group never is: OpenSSL would run its own code for the codepoint, not the plugin's."""
    return (
        group.codepoint in OPENSSL_GROUPS
        and registry().origin(group) == _BUILTIN_ORIGIN
        and _openssl_accepts(group.name)
    )


_accepted: dict[str, bool] = {}


def _openssl_accepts(name: str) -> bool:
    if name not in _accepted:
        _accepted[name] = accepts_groups(name)
    return _accepted[name]


def split_tls_groups(groups: Iterable[str | Group]) -> tuple[list[Group], list[Group]]:
    """``(usable over TCP, QUIC-only)``, each in the given order; unknown names raise
    :class:`UnknownGroupError`. For callers that share one group list between QUIC and TCP."""
    chosen = registry().resolve(groups)
    return [g for g in chosen if _tls_capable(g)], [g for g in chosen if not _tls_capable(g)]


def _names(groups: Iterable[Group]) -> str:
    return ", ".join(g.name for g in groups)


def _quic_only_message(quic_only: list[Group], usable: list[Group]) -> str:
    usable_all = [g for g in registry().all() if _tls_capable(g)]
    text = (
        f"group(s) {_names(quic_only)} are QUIC-only: over TCP the key exchange is done by "
        "OpenSSL, which does not implement them (only the QUIC binding does). "
    )
    if usable:
        text += f"Remove them to use {_names(usable)} over TCP, "
    else:
        text += "No group in the list can be negotiated over TCP; "
    return text + f"or choose from: {_names(usable_all)}."


def tls_group_policy(
    policy: Policy | str | bool | None,
    groups: Iterable[str | Group] | None,
    *,
    server_side: bool,
    skip_quic_only: bool = False,
) -> GroupPolicy:
    """The resolved policy for one TCP context, with the QUIC binding's defaults and rules.

    Without ``groups`` a server accepts every TLS-capable registered group (post-quantum first)
    and a client offers :data:`DEFAULT_CLIENT_GROUPS`. A QUIC-only group in ``groups`` raises
    :class:`QuicOnlyGroupError`, or with ``skip_quic_only`` is left out with a warning (for a list
    shared with a QUIC listener); a list left with nothing OpenSSL can negotiate always raises.
    """
    pol = Policy.parse(policy)
    quic_only: list[Group] = []
    if groups is None:
        if server_side:
            every = registry().all()
            candidates = [g for g in every if g.post_quantum] + [
                g for g in every if not g.post_quantum
            ]
            candidates = [g for g in candidates if _tls_capable(g)]
        else:
            candidates = registry().resolve(DEFAULT_CLIENT_GROUPS)
    else:
        candidates, quic_only = split_tls_groups(groups)
        if not candidates:
            raise QuicOnlyGroupError(_quic_only_message(quic_only, candidates))
        if quic_only and not skip_quic_only:
            raise QuicOnlyGroupError(_quic_only_message(quic_only, candidates))
        if quic_only:
            logger.warning(
                "TCP (TLS via OpenSSL) leaves out QUIC-only group(s) %s; using %s",
                _names(quic_only),
                _names(candidates),
            )
    try:
        resolved = GroupPolicy.build(pol, candidates)
    except NoPostQuantumGroupError as exc:
        pq_quic_only = [g for g in quic_only if g.post_quantum]
        if pq_quic_only:
            raise NoPostQuantumGroupError(
                f"{exc}; {_names(pq_quic_only)} would be post-quantum but are QUIC-only "
                "(OpenSSL, which does TLS over TCP, does not implement them)"
            ) from None
        raise
    if server_side:
        resolved = dataclasses.replace(resolved, key_share_groups=())
    return resolved


def server_group_list(policy: GroupPolicy) -> str:
    """OpenSSL's list for a server: one preference tuple per run of same-kind groups."""
    runs = itertools.groupby(policy.groups, key=lambda g: g.post_quantum)
    return " / ".join(":".join(g.name for g in run) for _, run in runs)


def client_group_list(policy: GroupPolicy) -> str:
    """OpenSSL's list for a client: every group in order, ``*`` on those that get a key share
    (by default the best post-quantum one and the best classical one, as browsers send)."""
    shares = set(policy.key_share_groups)
    return ":".join(("*" if g in shares else "") + g.name for g in policy.groups)


def group_from_openssl(name: str | None) -> Group | None:
    """The registry's :class:`Group` for a group name OpenSSL reports (``X25519MLKEM768``, but
    lowercase ``x25519``), or None for one the registry lacks (``x448``, ``ffdhe2048``)."""
    if not name:
        return None
    try:
        group = registry().by_name(name)
    except UnknownGroupError:
        return None
    return group if group.codepoint in OPENSSL_GROUPS else None
