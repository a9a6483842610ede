"""The plugin manager and the group registry built from it.

Groups are collected once, lazily, from the built-in plugin and every setuptools entry point in
the ``pq_quic_plugin`` group. Lookups by name are case-insensitive because operators type group
names on command lines and in config files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence

import pluggy

from . import hookspecs
from .groups.base import Group

logger = logging.getLogger("pq_quic_plugin")


class UnknownGroupError(ValueError):
    """A group name or codepoint that no registered plugin provides."""


class GroupConflictError(RuntimeError):
    """Two plugins registered the same codepoint or name."""


class _BuiltinPlugin:
    """Registers the built-in groups through the same hook third-party plugins use."""

    @hookspecs.hookimpl
    def pq_quic_register_groups(self) -> Sequence[Group]:
        from .groups.builtin import builtin_groups

        return builtin_groups()


class GroupRegistry:
    """Every known group, by codepoint and by lower-cased name, in preference order."""

    def __init__(self, groups: Iterable[tuple[str, Group]]) -> None:
        self._by_codepoint: dict[int, Group] = {}
        self._by_name: dict[str, Group] = {}
        self._origin: dict[int, str] = {}
        self._ordered: list[Group] = []
        for origin, group in groups:
            self._add(origin, group)

    def _add(self, origin: str, group: Group) -> None:
        if not isinstance(group, Group):
            raise TypeError(f"plugin {origin} returned {group!r}, which is not a Group")
        if not 0 < group.codepoint < 0x10000:
            raise ValueError(f"plugin {origin}: group {group.name} has codepoint outside 16 bits")
        other = self._by_codepoint.get(group.codepoint)
        if other is not None:
            raise GroupConflictError(
                f"group {group.name} (0x{group.codepoint:04X}) from {origin} clashes with "
                f"{other.name} from {self._origin[group.codepoint]}"
            )
        key = group.name.lower()
        if key in self._by_name:
            raise GroupConflictError(f"group name {group.name} from {origin} is already taken")
        self._by_codepoint[group.codepoint] = group
        self._by_name[key] = group
        self._origin[group.codepoint] = origin
        self._ordered.append(group)

    def __iter__(self) -> Iterator[Group]:
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)

    def all(self) -> list[Group]:
        return list(self._ordered)

    def by_codepoint(self, codepoint: int) -> Group | None:
        return self._by_codepoint.get(codepoint)

    def by_name(self, name: str) -> Group:
        group = self._by_name.get(name.strip().lower())
        if group is None:
            valid = ", ".join(g.name for g in self._ordered)
            raise UnknownGroupError(f"unknown key-exchange group {name!r}; valid names: {valid}")
        return group

    def resolve(self, names: Iterable[str | Group]) -> list[Group]:
        """Turn names (or groups) into groups, keeping order and dropping repeats."""
        out: list[Group] = []
        for item in names:
            group = item if isinstance(item, Group) else self.by_name(item)
            if group not in out:
                out.append(group)
        return out

    def origin(self, group: Group) -> str:
        return self._origin.get(group.codepoint, "?")


_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_registry: GroupRegistry | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager: built-ins plus entry-point plugins, loaded once."""
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            pm.add_hookspecs(hookspecs)
            pm.register(_BuiltinPlugin(), name="pq_quic_plugin.builtin")
            loaded = pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
            if loaded:
                logger.info("loaded %d key-exchange group plugin(s) from entry points", loaded)
            _manager = pm
        return _manager


def registry() -> GroupRegistry:
    """The group registry, rebuilt after :func:`reload` or a new registration."""
    global _registry
    pm = plugin_manager()
    with _lock:
        if _registry is None:
            entries: list[tuple[str, Group]] = []
            # get_hookimpls() is in registration order (pluggy *calls* them in reverse), so
            # the built-in groups keep their place at the head of the preference order.
            for impl in pm.hook.pq_quic_register_groups.get_hookimpls():
                for group in impl.function() or ():  # type: ignore[attr-defined]
                    entries.append((impl.plugin_name, group))
            _registry = GroupRegistry(entries)
        return _registry


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object or module in-process (entry points do this automatically)."""
    pm = plugin_manager()
    pm.register(plugin, name=name)
    reload()


def unregister_plugin(plugin: object) -> None:
    plugin_manager().unregister(plugin)
    reload()


def reload() -> None:
    """Forget the cached registry so the next lookup sees newly registered plugins."""
    global _registry
    with _lock:
        _registry = None
