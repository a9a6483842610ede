"""The machinery of field tables: one declaration per configuration key.

A key used to be declared in a dataclass, a key list, an ``if name ==`` chain, an override
converter, argparse and the docs, and the copies drifted. Now a :class:`ConfigField` says once
what the key is called in YAML, which attribute it fills, how its value is read and checked
(its :class:`ValueKind`), its default, its flag and its documentation; everything else - the
YAML reader (:func:`read_section`), flag overrides (:func:`convert_overrides`), argparse (in
``cli.py``) and the reference in ``docs/tunnel-config.md`` (``docs.py``) - walks the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import ConfigError
from .yaml_reader import KeyNodes, YamlReader

__all__ = [
    "ConfigField",
    "ConfigFlag",
    "FieldTable",
    "SectionRead",
    "ValueKind",
    "convert_overrides",
    "read_section",
]


class ValueKind:
    """One type of value: how YAML gives it, how a flag gives it, how the docs describe it.

    Subclasses set the class attributes and implement :meth:`read` and :meth:`convert`; both
    raise with the same words for the same mistake, so a file and a flag fail alike.
    """

    #: The "type" column of the reference table.
    doc = "value"
    #: The placeholder after the flag in ``--help`` (``--edge HOST:PORT``).
    metavar = "VALUE"
    #: The argparse action of the flag: ``store``, ``append`` (repeatable) or ``store_true``.
    action = "store"
    #: The values argparse accepts, when it should check them itself.
    choices: tuple[str, ...] | None = None
    #: False for values a flag cannot give (a nested section, the ingress list).
    overridable = True

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: yaml.Node | None = None) -> Any:
        """The value at ``node``; errors are ``r.error(node, key, ...)``. ``owner`` is the
        node of the key that holds the value, for messages about a section's missing keys."""
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """The value from a flag's text or from Python; ``ValueError`` says what is wrong."""
        raise TypeError(f"{type(self).__name__} values cannot be given as a flag")

    def show(self, value: Any) -> str:
        """How a default is written in the docs."""
        return f"`{value}`"

    def resolve_default(self, r: YamlReader, value: Any) -> Any:
        """The default as the file's reader applies it (paths are relative to the file)."""
        return value


@dataclass(frozen=True)
class ConfigFlag:
    """The command-line spelling of a field.

    ``name`` is ``--something``, or an upper-case word for a positional argument (``NAME``).
    ``metavar`` overrides the kind's placeholder (``--credentials-file FILE``). ``help`` is the
    ``--help`` line, shorter than the field's ``doc``.
    """

    name: str
    help: str
    metavar: str | None = None

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")


@dataclass(frozen=True)
class ConfigField:
    """One configuration key, declared once.

    ``key`` is the YAML key (``None`` for a flag that has no key, like ``--url``); ``attr`` the
    dataclass attribute it fills; ``env`` the environment variable that gives it too
    (``TUNNEL_POST_QUANTUM``; cloudflared's name where it has one), read by
    ``environment.py`` between the file and the flags. ``default`` (or ``default_factory``) is
    the only place the default lives; ``default_doc`` replaces it in the docs when the value
    alone would not say what happens (``None`` meaning "the system's trust store").
    ``requires`` returns why the key is not allowed given the section's other values, or
    ``None`` when it is.
    """

    key: str | None
    attr: str
    kind: ValueKind
    doc: str
    default: Any = None
    default_factory: Callable[[], Any] | None = None
    default_doc: str | None = None
    required: bool = False
    flag: ConfigFlag | None = None
    env: str | None = None
    requires: Callable[[Mapping[str, Any]], str | None] | None = None

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory else self.default

    @property
    def label(self) -> str:
        """What an error about a value given from outside the file names: the flag if there
        is one, else the keyword argument of ``with_overrides``."""
        if self.flag is None:
            return self.attr
        return self.flag.name

    def flag_usage(self) -> str:
        """The flag as ``--help`` shows it: ``--edge HOST:PORT``, ``--post-quantum``, ``NAME``."""
        assert self.flag is not None
        if self.flag.positional or self.kind.action == "store_true":
            return self.flag.name
        return f"{self.flag.name} {self.flag.metavar or self.kind.metavar}"

    def shown_default(self) -> str:
        """The default column of the docs."""
        if self.required:
            return "**required**"
        if self.default_doc is not None:
            return self.default_doc
        value = self.default_value()
        return "none" if value is None else self.kind.show(value)


@dataclass(frozen=True)
class FieldTable:
    """The fields of one file kind or section, in the order the docs and errors list them.

    ``name`` identifies the table in the docs' generated sections; ``title`` is what the docs
    call it (``config.yml``, ``edge.yaml: public``).
    """

    name: str
    title: str
    fields: tuple[ConfigField, ...]

    def __post_init__(self) -> None:
        for what, names in (
            ("key", [f.key for f in self.fields if f.key is not None]),
            ("attribute", [f.attr for f in self.fields]),
            ("flag", [f.flag.name for f in self.fields if f.flag]),
            ("variable", [f.env for f in self.fields if f.env]),
        ):
            doubled = {n for n in names if names.count(n) > 1}
            if doubled:
                raise TypeError(f"{self.name}: {what}(s) declared twice: {sorted(doubled)}")

    @property
    def keys(self) -> tuple[str, ...]:
        """The YAML keys, in table order (the order "valid keys: ..." lists them)."""
        return tuple(f.key for f in self.fields if f.key is not None)

    @property
    def required_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields if f.key is not None and f.required)

    def file_fields(self) -> tuple[ConfigField, ...]:
        return tuple(f for f in self.fields if f.key is not None)

    def flagged(self) -> tuple[ConfigField, ...]:
        return tuple(f for f in self.fields if f.flag is not None)

    def from_environment(self) -> tuple[ConfigField, ...]:
        return tuple(f for f in self.fields if f.env is not None)

    def by_key(self, key: str) -> ConfigField:
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(key)

    def by_attr(self, attr: str) -> ConfigField:
        for f in self.fields:
            if f.attr == attr:
                return f
        raise KeyError(attr)

    def dataclass_default(self, attr: str) -> Any:
        """``dataclasses.field(...)`` carrying the table's default, for the config dataclass."""
        f = self.by_attr(attr)
        if f.default_factory is not None:
            return dataclasses.field(default_factory=f.default_factory)
        return dataclasses.field(default=f.default)

    def check_dataclass(self, cls: type, extra: Iterable[str] = ()) -> None:
        """Fail at import if ``cls`` and the table disagree on attributes or defaults.

        ``extra`` names attributes that are not keys (``source``, the file read).
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        mine = {f.attr for f in self.file_fields()}
        theirs = set(fields) - set(extra)
        if mine != theirs:
            raise TypeError(
                f"{cls.__name__} and the {self.name} field table disagree: only in the class "
                f"{sorted(theirs - mine)}, only in the table {sorted(mine - theirs)}"
            )
        for name in mine:
            dc, f = fields[name], self.by_attr(name)
            if dc.default is not dataclasses.MISSING and dc.default != f.default:
                raise TypeError(f"{cls.__name__}.{name}: default not from the field table")
            factory = dc.default_factory
            if factory is not dataclasses.MISSING and factory is not f.default_factory:
                raise TypeError(f"{cls.__name__}.{name}: default not from the field table")


@dataclass(frozen=True)
class SectionRead:
    """A mapping read through a table: every field's value (given or default) by attribute,
    and the given keys' nodes, so cross-key checks can point at the right line."""

    values: dict[str, Any]
    keys: KeyNodes
    node: yaml.Node


def read_section(
    r: YamlReader,
    node: yaml.Node,
    key: str,
    table: FieldTable,
    owner: yaml.Node | None = None,
) -> SectionRead:
    """Read a mapping with ``table``: unknown keys (with a suggestion), duplicates, missing
    required keys and bad values are located errors; absent keys take the table's default.

    Keys with a ``requires`` condition are read after the others, so the condition sees them.
    """
    keys = r.mapping(node, key, table.keys, required=table.required_keys, owner=owner)
    values: dict[str, Any] = {}
    conditional: list[tuple[ConfigField, yaml.Node, yaml.Node]] = []
    for name, (knode, vnode) in keys.items():
        f = table.by_key(name)
        if f.requires is not None:
            conditional.append((f, knode, vnode))
            continue
        values[f.attr] = f.kind.read(r, vnode, r.join(key, name), knode)
    for f, knode, vnode in conditional:
        assert f.key is not None and f.requires is not None
        problem = f.requires(values)
        if problem is not None:
            raise r.error(knode, r.join(key, f.key), problem)
        values[f.attr] = f.kind.read(r, vnode, r.join(key, f.key), knode)
    for f in table.file_fields():
        if f.attr not in values:
            values[f.attr] = f.kind.resolve_default(r, f.default_value())
    return SectionRead(values, keys, node)


def convert_overrides(
    table: FieldTable,
    given: Mapping[str, Any],
    name: Callable[[ConfigField], str] = lambda f: f.label,
) -> dict[str, Any]:
    """Convert override values by attribute name; ``None`` means "not given" and is skipped.

    A bad value is a :class:`ConfigError` naming where it came from: ``name(field)``, the flag
    by default (``--ha-connections: ...``), the variable for values from the environment
    (``TUNNEL_HA_CONNECTIONS: ...``). A name the table does not know, or one a flag cannot
    set, is a ``TypeError`` (a programming mistake, not an operator's).
    """
    fields = {f.attr: f for f in table.fields if f.kind.overridable}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise TypeError(f"unknown override(s) {unknown}; valid: {sorted(fields)}")
    out: dict[str, Any] = {}
    for attr, value in given.items():
        if value is None:
            continue
        f = fields[attr]
        try:
            out[attr] = f.kind.convert(value)
        except ValueError as exc:
            raise ConfigError(f"{name(f)}: {exc}", key=name(f)) from None
    return out
