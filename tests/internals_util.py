"""What the bindings' internals tests share: the checks switched on, and what "private" means.

Import ``checks_enabled`` into a test module to make it autouse there (pytest collects fixtures
from a module's globals).
"""

from __future__ import annotations

import ast

import pytest

from pq_quic_plugin.host_internals import SKIP_ENV


@pytest.fixture(autouse=True)
def checks_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks run even when the developer's shell skips them (PQ_QUIC_SKIP_VERSION_CHECK)."""
    monkeypatch.delenv(SKIP_ENV, raising=False)


def is_private(name: str) -> bool:
    """``_name`` but not ``__dunder__``: the names the bindings must list."""
    return name.startswith("_") and not name.endswith("__")


def stored_on_self(node: ast.AST) -> str | None:
    """The attribute name when ``node`` is ``self.<name> = ...`` (an attribute our own class
    owns, so not a host library's private name), else None."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    ):
        return node.attr
    return None
