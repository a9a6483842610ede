"""Reading a YAML file while remembering where every key and value was written.

Operators edit these files by hand, so every mistake is reported as ``FILE:LINE: KEY: what is
wrong; what to write instead``. To know the line of each key and value, the YAML is *composed*
into nodes (``yaml.compose`` with ``SafeLoader``) and walked by hand instead of loaded into plain
dicts, which would forget where each value came from. Scalars are converted with PyYAML's safe
constructor, except for string-valued keys, which take the text exactly as written: YAML 1.1
would otherwise turn ``location: NO`` into ``False`` and ``tunnel: 0123`` into ``83``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.constructor import SafeConstructor

from .errors import ConfigError
from .values import check_groups, describe, int_range

__all__ = ["KeyNodes", "YamlReader", "node_kind"]

T = TypeVar("T")

#: A mapping's keys, each with (the key's node, the value's node).
KeyNodes = dict[str, tuple[yaml.Node, yaml.Node]]

# "[::1]:7844" unquoted is a YAML flow sequence followed by junk: say what to do about it.
_BARE_IPV6 = re.compile(r"(?<![\"'])\[[0-9A-Fa-f:.]*\]:\d+")


def node_kind(node: yaml.Node) -> str:
    """What a node is, in the words an error message uses."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a value"


class YamlReader:
    """Walks composed YAML nodes, converting values and raising located :class:`ConfigError`.

    Relative paths in the file are resolved against ``base``, the file's directory, because a
    service manager rarely starts the process where the operator wrote the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.absolute().parent
        self._constructor = SafeConstructor()

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        """A :class:`ConfigError` located at ``node``'s line and naming ``key``."""
        line = node.start_mark.line + 1 if node is not None else None
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        return ConfigError(text, source=str(self.path), line=line, key=key or None)

    def compose(self) -> yaml.MappingNode:
        """The file's root mapping; unreadable, empty or malformed files are located errors."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: no such file", source=str(self.path)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: cannot read: {exc}", source=str(self.path)) from None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            problem = " ".join(p for p in (exc.context, exc.problem) if p)
            lines = text.splitlines()
            source_line = lines[mark.line] if mark and mark.line < len(lines) else ""
            if _BARE_IPV6.search(source_line):
                problem += '; put IPv6 addresses in quotes, e.g. "[::1]:7844"'
            raise ConfigError(
                f"{self.path}:{line}: not valid YAML: {problem}", source=str(self.path), line=line
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{self.path}: not valid YAML: {exc}", source=str(self.path)
            ) from None
        if root is None:
            raise ConfigError(f"{self.path}: the file is empty", source=str(self.path))
        if not isinstance(root, yaml.MappingNode):
            raise self.error(root, "", "the file must be a mapping of key: value lines")
        return root

    def mapping(
        self,
        node: yaml.Node,
        key: str,
        valid: Sequence[str],
        required: Sequence[str] = (),
        owner: yaml.Node | None = None,
    ) -> KeyNodes:
        """Keys to (key node, value node); unknown, duplicate and missing keys are errors.

        A missing key is reported on the line of ``owner`` (the key that holds this mapping,
        e.g. ``public:``) when given, else where the mapping starts.
        """
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, f"expected a mapping with keys {', '.join(valid)}")
        self._constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: KeyNodes = {}
        for knode, vnode in node.value:
            name = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if not isinstance(name, str):
                raise self.error(knode, key, "keys must be plain words")
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                where = f"in {key}" if key else "at the top level"
                raise self.error(
                    knode,
                    self.join(key, name),
                    f"unknown key {name!r} {where}{hint} (valid keys: {', '.join(valid)})",
                )
            if name in out:
                first = out[name][0].start_mark.line + 1
                raise self.error(
                    knode, self.join(key, name), f"given twice (first on line {first})"
                )
            out[name] = (knode, vnode)
        for name in required:
            if name not in out:
                raise self.error(owner or node, self.join(key, name), "is required")
        return out

    @staticmethod
    def join(key: str, name: str) -> str:
        """The dotted key of ``name`` inside ``key`` (``public.bind``, ``ingress[0].path``)."""
        return f"{key}.{name}" if key else name

    def value(self, node: yaml.Node) -> Any:
        """The node as PyYAML's safe loader would give it (YAML 1.1 types)."""
        return self._constructor.construct_object(node, deep=True)

    def text(self, node: yaml.Node, key: str, what: str = "a string") -> str:
        """A string as written (YAML 1.1 booleans and octals are not converted)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            got = "nothing" if isinstance(node, yaml.ScalarNode) else node_kind(node)
            raise self.error(node, key, f"expected {what}, got {got}")
        text = str(node.value).strip()
        if not text:
            raise self.error(node, key, f"expected {what}, got an empty string")
        return text

    def boolean(self, node: yaml.Node, key: str) -> bool:
        """``true`` or ``false`` and nothing else (not ``require``, not ``1``)."""
        value = self.value(node)
        if not isinstance(value, bool):
            raise self.error(node, key, f"expected true or false, got {describe(value)}")
        return value

    def integer(self, node: yaml.Node, key: str, low: int, high: int | None) -> int:
        """An integer in ``[low, high]`` (``high`` ``None``: no upper bound); not a boolean."""
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, key, f"expected {int_range(low, high)}, got {describe(value)}")
        if value < low or (high is not None and value > high):
            raise self.error(node, key, f"expected {int_range(low, high)}, got {value}")
        return value

    def convert(self, node: yaml.Node, key: str, parse: Callable[[Any], T], raw: bool = True) -> T:
        """Run ``parse`` on the value (text as written when ``raw``); ValueError → located error."""
        value = self.text(node, key) if raw else self.value(node)
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from None

    def resolve(self, path: Path) -> Path:
        """``path`` with ``~`` expanded, relative to the file's directory unless absolute."""
        path = path.expanduser()
        return path if path.is_absolute() else self.base / path

    def path_value(self, node: yaml.Node, key: str, must_exist: bool) -> Path:
        """A file path, resolved against the file's directory; maybe required to exist."""
        path = self.resolve(Path(self.text(node, key, "a file path")))
        if must_exist and not path.is_file():
            raise self.error(node, key, f"{path} does not exist or is not a file")
        return path

    def sequence(self, node: yaml.Node, key: str, allow_scalar: bool) -> list[yaml.Node]:
        """A list's items; a single value stands for a list of one when ``allow_scalar``."""
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if allow_scalar and isinstance(node, yaml.ScalarNode):
            return [node]
        raise self.error(node, key, f"expected a list, got {node_kind(node)}")

    def groups(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        """Group names; an unknown one is reported at its own item (``groups[1]``)."""
        items = self.sequence(node, key, allow_scalar=True)
        names = [self.text(item, f"{key}[{i}]", "a group name") for i, item in enumerate(items)]
        for i, (item, name) in enumerate(zip(items, names, strict=True)):
            try:
                check_groups([name])
            except ValueError as exc:
                raise self.error(item, f"{key}[{i}]", str(exc)) from None
        try:
            return check_groups(names)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from None
