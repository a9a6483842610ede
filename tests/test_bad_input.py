"""Malformed key shares end the handshake with illegal_parameter, never a traceback.

The malformed side is a real aioquic peer whose group produces a broken share or reply on
purpose (``Corrupting``); the side under test is our unmodified binding. Both talk over UDP.
"""

from __future__ import annotations

from typing import Any

import pytest
from quic_util import ILLEGAL_PARAMETER, Peer, handshake

from pq_quic_plugin import available_groups
from pq_quic_plugin.groups.ecdh import NistCurveGroup, X25519Group
from pq_quic_plugin.groups.hybrid import HybridGroup
from pq_quic_plugin.groups.mlkem import MLKEMBasedGroup


def _components(group: Any) -> list[tuple[Any, int, int]]:
    """(component, share offset, reply offset) for each part of a group."""
    if isinstance(group, HybridGroup):
        return [(group.first, 0, 0), (group.second, group.first.share_size, group.first.reply_size)]
    return [(group, 0, 0)]


def _bad_point(component: Any) -> bytes:
    if isinstance(component, X25519Group):
        return bytes(32)  # u = 0: a low-order point, all-zero shared secret
    assert isinstance(component, NistCurveGroup)
    size = (component.share_size - 1) // 2
    return b"\x04" + (1).to_bytes(size, "big") + (1).to_bytes(size, "big")  # (1, 1): off curve


def _corrupt(group: Any, data: bytes, mode: str, reply: bool) -> bytes:
    if mode == "long":
        return data + b"\x00"
    if mode == "short":
        return data[:-1]
    for component, share_at, reply_at in _components(group):
        at = reply_at if reply else share_at
        if mode == "point" and isinstance(component, (X25519Group, NistCurveGroup)):
            bad = _bad_point(component)
            return data[:at] + bad + data[at + len(bad) :]
        if mode == "modulus" and isinstance(component, MLKEMBasedGroup) and not reply:
            # First 12-bit coefficient := 0xFFF (>= q = 3329): fails the FIPS 203 check.
            return data[:at] + b"\xff" + bytes([data[at + 1] | 0x0F]) + data[at + 2 :]
    raise ValueError(f"{mode} does not apply to {group.name}")


def applies(group: Any, mode: str, reply: bool) -> bool:
    try:
        _corrupt(group, bytes(group.reply_size if reply else group.share_size), mode, reply)
    except ValueError:
        return False
    return True


class Corrupting:
    """A peer's group that breaks its own share (client) or reply (server) one way."""

    def __init__(self, group: Any, mode: str) -> None:
        self.inner, self.mode = group, mode
        self.name, self.codepoint, self.post_quantum = group.name, group.codepoint, True

    def generate(self):  # type: ignore[no-untyped-def]
        state, share = self.inner.generate()
        return state, _corrupt(self.inner, share, self.mode, reply=False)

    def encapsulate(self, peer_share: bytes):  # type: ignore[no-untyped-def]
        secret, reply = self.inner.encapsulate(peer_share)
        return secret, _corrupt(self.inner, reply, self.mode, reply=True)

    def decapsulate(self, state, reply):  # type: ignore[no-untyped-def]
        return self.inner.decapsulate(state, reply)


CASES = [(g, mode) for g in available_groups() for mode in ("short", "long", "point", "modulus")]


@pytest.mark.parametrize(
    "group,mode",
    [pytest.param(g, m, id=f"{g.name}-{m}") for g, m in CASES if applies(g, m, reply=False)],
)
def test_malformed_client_share_gets_illegal_parameter(pki, group, mode) -> None:
    client = Peer("prefer", groups=[Corrupting(group, mode)])
    out = handshake(pki, server=Peer("prefer"), client=client, fails=True)
    assert out.error is not None and out.error.error_code == ILLEGAL_PARAMETER, out.error
    assert group.name in out.error.reason_phrase or "key share" in out.error.reason_phrase
    assert out.server == []


@pytest.mark.parametrize(
    "group,mode",
    [pytest.param(g, m, id=f"{g.name}-{m}") for g, m in CASES if applies(g, m, reply=True)],
)
def test_malformed_server_reply_gets_illegal_parameter(pki, group, mode) -> None:
    out = handshake(
        pki,
        server=Peer("prefer", groups=[Corrupting(group, mode)]),
        client=Peer("prefer", groups=[group.name]),
        fails=True,
    )
    # Our client raised the alert: its own close and the server's view both say so.
    assert out.error is not None and out.error.error_code == ILLEGAL_PARAMETER, out.error
    assert "ServerHello key share" in out.error.reason_phrase
    assert [t.error_code for t in out.server_closes] == [ILLEGAL_PARAMETER]


def test_unknown_and_grease_codepoints_are_ignored(pki) -> None:
    class Opaque:
        """A group the server has never heard of, offered first with a share."""

        def __init__(self, codepoint: int) -> None:
            self.name, self.codepoint, self.post_quantum = (
                f"opaque-{codepoint:04X}",
                codepoint,
                True,
            )

        def generate(self):  # type: ignore[no-untyped-def]
            return None, b"\x01" * 17

        def encapsulate(self, peer_share):  # type: ignore[no-untyped-def]
            raise AssertionError("never selected")

        def decapsulate(self, state, reply):  # type: ignore[no-untyped-def]
            raise AssertionError("never selected")

    grease, unknown = Opaque(0x7A7A), Opaque(0xFEFE)
    client = Peer(
        "prefer",
        groups=[grease, unknown, "X25519MLKEM768", "x25519"],
        key_shares=[grease, unknown, "X25519MLKEM768"],
    )
    assert handshake(pki, server=Peer("prefer"), client=client).group == "X25519MLKEM768"
