"""A key-exchange group plugin with a bug: its ``encapsulate`` raises ``RuntimeError``.

A third-party group (``docs/plugins.md``) is code we do not control, and the TLS binding only
maps :class:`~pq_quic_plugin.groups.base.InvalidKeyShare` to an alert; anything else it raises
escapes aioquic's ``receive_datagram``. That is the simplest real way to make one connection
fail inside a server, which the listener must survive (tests/test_fuzz_clienthello.py,
tests/test_connection_guard.py). :func:`register` puts it in the calling process's registry;
the server processes call it, a test process only for the duration of a test.
"""

from __future__ import annotations

import os
from typing import Any

from pq_quic_plugin.hookspecs import hookimpl
from pq_quic_plugin.plugins import register_plugin, unregister_plugin

#: A private-use codepoint (not of the GREASE form 0x?A?A).
BROKEN_CODEPOINT = 0xFE77
BROKEN_NAME = "BrokenPluginKEM"
BUG = "the plugin's encapsulate has a bug"


class BrokenGroup:
    codepoint = BROKEN_CODEPOINT
    name = BROKEN_NAME
    post_quantum = True

    def generate(self) -> tuple[Any, bytes]:
        return None, os.urandom(32)

    def encapsulate(self, peer_share: bytes) -> tuple[bytes, bytes]:
        raise RuntimeError(BUG)

    def decapsulate(self, private_state: Any, reply_share: bytes) -> bytes:
        raise RuntimeError(BUG)


class BrokenPlugin:
    @hookimpl
    def pq_quic_register_groups(self) -> list[Any]:
        return [BrokenGroup()]


_PLUGIN = BrokenPlugin()


def register() -> None:
    register_plugin(_PLUGIN, name="tests.broken_group_plugin")


def unregister() -> None:
    unregister_plugin(_PLUGIN)
