"""A group plugin made for one test: X25519 again under another codepoint and name.

The smallest real third-party group (``docs/plugins.md``): registered through pluggy, as an
installed plugin would be, for the duration of a ``with`` block only, so the registry is the
built-in one again for the next test whatever happens inside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pq_quic_plugin.groups.ecdh import X25519Group
from pq_quic_plugin.hookspecs import hookimpl
from pq_quic_plugin.plugins import register_plugin, unregister_plugin


class _X25519Copy:
    def __init__(self, codepoint: int, name: str) -> None:
        self.codepoint, self.name = codepoint, name

    @hookimpl
    def pq_quic_register_groups(self) -> list[Any]:
        group = X25519Group()
        group.codepoint = self.codepoint  # type: ignore[misc]
        group.name = self.name  # type: ignore[misc]
        return [group]


@contextlib.contextmanager
def x25519_copy(codepoint: int, name: str) -> Iterator[None]:
    """While the block runs, a plugin offers X25519 as group ``name`` at ``codepoint``."""
    plugin = _X25519Copy(codepoint, name)
    register_plugin(plugin, name=name)
    try:
        yield
    finally:
        unregister_plugin(plugin)
