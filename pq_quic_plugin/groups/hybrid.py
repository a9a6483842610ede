"""Hybrid groups: two component groups whose shares, replies and secrets are concatenated.

This is the construction of draft-ietf-tls-ecdhe-mlkem and of the Kyber drafts: no combiner beyond
concatenation, because the TLS key schedule already hashes the shared secret. The order of the
components is part of the wire format and differs between drafts (ML-KEM first in X25519MLKEM768,
the classical part first elsewhere); an order mistake still interoperates with ourselves, so only
tests against independent peers catch it.
"""

from __future__ import annotations

from typing import Any

from .base import Group, InvalidKeyShare


def _sizes(group: Group) -> tuple[int, int]:
    """Components must announce their sizes: the hybrid cannot split peer input otherwise."""
    share_size = getattr(group, "share_size", None)
    reply_size = getattr(group, "reply_size", None)
    if not isinstance(share_size, int) or not isinstance(reply_size, int):
        raise TypeError(f"hybrid component {group.name!r} needs int share_size and reply_size")
    return share_size, reply_size


class HybridGroup:
    """Concatenation of ``first`` and ``second``; components' own codepoints never go on the wire.

    Peer input is split by the components' exact sizes, so a wrong total length is reported
    against the hybrid (the peer sent one blob) and a bad half is reported with both names.
    """

    def __init__(self, name: str, codepoint: int, first: Group, second: Group) -> None:
        self.name = name
        self.codepoint = codepoint
        self.first = first
        self.second = second
        self.post_quantum = bool(first.post_quantum or second.post_quantum)
        first_share, first_reply = _sizes(first)
        second_share, second_reply = _sizes(second)
        self._first_share = first_share
        self._first_reply = first_reply
        self.share_size = first_share + second_share
        self.reply_size = first_reply + second_reply

    def generate(self) -> tuple[tuple[Any, Any], bytes]:
        first_state, first_share = self.first.generate()
        second_state, second_share = self.second.generate()
        return (first_state, second_state), first_share + second_share

    def encapsulate(self, peer_share: bytes) -> tuple[bytes, bytes]:
        self._check_length("key share", peer_share, self.share_size, self._first_share)
        cut = self._first_share
        try:
            first_secret, first_reply = self.first.encapsulate(peer_share[:cut])
            second_secret, second_reply = self.second.encapsulate(peer_share[cut:])
        except InvalidKeyShare as exc:
            raise InvalidKeyShare(f"{self.name}: {exc}") from exc
        return first_secret + second_secret, first_reply + second_reply

    def decapsulate(self, private_state: tuple[Any, Any], reply_share: bytes) -> bytes:
        self._check_length("server key share", reply_share, self.reply_size, self._first_reply)
        first_state, second_state = private_state
        cut = self._first_reply
        try:
            first_secret = self.first.decapsulate(first_state, reply_share[:cut])
            second_secret = self.second.decapsulate(second_state, reply_share[cut:])
        except InvalidKeyShare as exc:
            raise InvalidKeyShare(f"{self.name}: {exc}") from exc
        return first_secret + second_secret

    def _check_length(self, what: str, data: bytes, expected: int, first: int) -> None:
        if len(data) != expected:
            raise InvalidKeyShare(
                f"{self.name} {what} is {len(data)} bytes, expected {expected} "
                f"({self.first.name} {first} + {self.second.name} {expected - first})"
            )

    def __repr__(self) -> str:
        return (
            f"<HybridGroup {self.name} 0x{self.codepoint:04X} = "
            f"{self.first.name} || {self.second.name}>"
        )
