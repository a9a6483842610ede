"""pluggy hook specifications: the whole contract between pq-quic-plugin and its plugins.

All hooks share the ``pq_quic_`` prefix, as tox's hooks share ``tox_`` and pytest's
``pytest_``: one module can implement hooks of several projects without two of them needing
the same function name, and a reader sees at once which project a hook belongs to. The built-in
groups come through the same hook as third-party ones, so there is exactly one way a group
enters the registry.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from .groups.base import Group

PROJECT_NAME = "pq_quic"
ENTRY_POINT_GROUP = "pq_quic_plugin"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def pq_quic_register_groups() -> Sequence[Group]:
    """Return key-exchange groups to add to the registry.

    Each group needs a unique IANA codepoint and a unique name (names are matched
    case-insensitively). A plugin that reuses a built-in codepoint is refused with an error
    naming both plugins: silently replacing X25519MLKEM768 would be a security problem.
    """
    raise NotImplementedError
