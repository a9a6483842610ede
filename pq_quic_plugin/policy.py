"""Policies: which key shares a client sends and which group a server picks.

The policy is the only place where "post-quantum or not" turns into a decision; the TLS binding
asks it and never reasons about groups itself. That keeps the security-relevant rule (no
fallback from post-quantum under ``require``) in one small, testable module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .groups.base import Group
from .plugins import registry
from .policy_level import PolicyLevel

#: What a client offers by default, best first: the hybrid every major browser and TLS stack
#: ships, then the classical groups stock aioquic and older servers speak.
DEFAULT_CLIENT_GROUPS = ("X25519MLKEM768", "x25519", "secp256r1", "secp384r1")


class Policy(PolicyLevel):
    """How strongly a connection insists on post-quantum key exchange."""

    OFF = "off"  # aioquic's own behaviour, untouched
    PREFER = "prefer"  # post-quantum when the peer can, classical otherwise
    REQUIRE = "require"  # post-quantum or no connection at all

    @classmethod
    def _subject(cls) -> str:
        return "post-quantum"


class NoPostQuantumGroupError(ValueError):
    """A ``require`` policy was given a group list with no post-quantum group in it."""


@dataclass(frozen=True)
class Selection:
    """A server's decision on a ClientHello."""

    group: Group | None  # the group to use now, with the client's share
    retry_group: Group | None = None  # ask for this one with a HelloRetryRequest
    reason: str = ""


@dataclass(frozen=True)
class GroupPolicy:
    """A resolved policy: the groups in preference order and which of them get key shares."""

    policy: Policy
    groups: tuple[Group, ...]
    key_share_groups: tuple[Group, ...] = field(default=())

    @classmethod
    def build(
        cls,
        policy: Policy | str | bool | None = Policy.PREFER,
        groups: Iterable[str | Group] | None = None,
        key_shares: Iterable[str | Group] | None = None,
    ) -> GroupPolicy:
        """Resolve names, apply the policy's filter and choose the key shares.

        Without ``groups``, a client offers :data:`DEFAULT_CLIENT_GROUPS`, while a server accepts
        every registered group (see :meth:`server_groups`). Under ``require`` the classical
        groups are removed; if nothing post-quantum is left that is a configuration error, not
        a reason to fall back.
        """
        pol = Policy.parse(policy)
        reg = registry()
        chosen = reg.resolve(groups if groups is not None else DEFAULT_CLIENT_GROUPS)
        if not chosen:
            raise ValueError("the group list is empty")
        if pol is Policy.REQUIRE:
            pq = [g for g in chosen if g.post_quantum]
            if not pq:
                names = ", ".join(g.name for g in chosen)
                raise NoPostQuantumGroupError(
                    f"policy 'require' needs at least one post-quantum group, got: {names}"
                )
            chosen = pq
        if key_shares is not None:
            shares = reg.resolve(key_shares)
            missing = [g.name for g in shares if g not in chosen]
            if missing:
                raise ValueError(
                    f"key share group(s) {', '.join(missing)} are not in the offered groups"
                )
        else:
            shares = _default_key_shares(chosen)
        return cls(policy=pol, groups=tuple(chosen), key_share_groups=tuple(shares))

    @classmethod
    def server_default(
        cls, policy: Policy | str | bool | None, groups: Iterable[str | Group] | None = None
    ) -> GroupPolicy:
        """A server accepts every registered group unless told otherwise, post-quantum first."""
        if groups is None:
            every = registry().all()
            groups = [g for g in every if g.post_quantum] + [g for g in every if not g.post_quantum]
        # A server sends no key shares of its own choosing: it answers the client's.
        return dataclasses.replace(cls.build(policy, groups), key_share_groups=())

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def describe(self) -> str:
        """One line for logs: the policy is always visible (see the security standards)."""
        text = f"policy={self.policy.value} groups=[{','.join(self.names)}]"
        if self.key_share_groups:
            text += f" key_shares=[{','.join(g.name for g in self.key_share_groups)}]"
        return text

    def select(
        self, offered_shares: Sequence[int], supported: Sequence[int] | None, retry_allowed: bool
    ) -> Selection:
        """Pick the group for a ClientHello, following the server's own preference order.

        The most preferred mutually supported group wins when the client sent a share for it.
        When it did not, a share of the same kind (post-quantum or classical) that the client
        did send is used instead, to save a round trip; only when post-quantum is at stake
        (the best mutual group is post-quantum and no post-quantum share came) is a
        HelloRetryRequest worth its round trip.
        """
        shares = set(offered_shares)
        listed = set(supported) if supported is not None else set(shares)
        listed |= shares
        mutual = [g for g in self.groups if g.codepoint in listed]
        if not mutual:
            return Selection(None, reason="no group in common")
        best = mutual[0]
        if best.codepoint in shares:
            return Selection(best)
        same_kind = [
            g for g in mutual if g.codepoint in shares and g.post_quantum == best.post_quantum
        ]
        if same_kind:
            return Selection(same_kind[0])
        if retry_allowed:
            return Selection(None, retry_group=best, reason="client sent no share for it")
        return Selection(None, reason="the client's retried hello still lacks the share")


def _default_key_shares(groups: Sequence[Group]) -> list[Group]:
    """One share for the best post-quantum group and one for the best classical group.

    That is what Chromium and Firefox send: a server of either kind answers in one round trip,
    and the ClientHello stays at two Initial datagrams instead of ten.
    """
    shares: list[Group] = []
    for want_pq in (True, False):
        for g in groups:
            if g.post_quantum == want_pq:
                shares.append(g)
                break
    return shares
