"""The kinds of value a field can hold, each readable from YAML and from a flag.

Every kind pairs a YAML reading (which knows the node, hence the line) with a flag conversion
(which knows only the text or a Python value) around one rule from ``values.py``, so both paths
accept the same values and refuse the rest with the same words.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ...policy import Policy
from ..hostnames import HostPort, normalize_hostname, parse_hostport
from .ingress import IngressRule, check_ingress, compile_path, parse_service
from .origin_request import TLS_ONLY_KEYS, OriginSettings
from .table import FieldTable, SectionRead, ValueKind, read_section
from .values import (
    LOG_LEVELS,
    check_host_header,
    check_int,
    check_loglevel,
    check_url,
    describe,
    format_duration,
    parse_duration,
    policy_parser,
    split_groups,
)
from .yaml_reader import YamlReader

__all__ = [
    "BoolValue",
    "ChoiceValue",
    "DurationValue",
    "GroupsValue",
    "HostHeaderValue",
    "HostPortListValue",
    "HostPortValue",
    "HostnameValue",
    "IngressValue",
    "IntValue",
    "LogLevelValue",
    "OriginRequestValue",
    "PathValue",
    "PolicyValue",
    "RegexValue",
    "RuleValue",
    "SectionValue",
    "ServiceValue",
    "TextValue",
    "UrlValue",
]


class RuleValue(ValueKind):
    """A kind that is one rule from ``values.py`` and nothing more.

    The file's value goes through the same :meth:`convert` as a flag's, so both are accepted
    and refused alike and reading only adds the file and line to the error. The rule sees the
    text exactly as written unless :attr:`raw` is false. Subclasses set :attr:`rule`, or
    override :meth:`convert` when the rule needs the kind's options.
    """

    #: A plain value in, the value out; ``ValueError`` says what to write instead.
    rule: Callable[[Any], Any]
    #: False: the rule gets the value as YAML types it (a number stays a number).
    raw = True

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> Any:
        return r.convert(node, key, self.convert, raw=self.raw)

    def convert(self, value: Any) -> Any:
        return self.rule(value)


class TextValue(ValueKind):
    """A non-empty string, exactly as written (``NO`` stays ``NO``)."""

    doc = "string"

    def __init__(self, what: str = "a string", metavar: str = "TEXT") -> None:
        self.what = what
        self.metavar = metavar

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> str:
        return r.text(node, key, self.what)

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected {self.what}")
        return value.strip()


class BoolValue(ValueKind):
    """``true`` or ``false``; as a flag, present means true."""

    doc = "`true`/`false`"
    action = "store_true"

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> bool:
        return r.boolean(node, key)

    def convert(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value

    def show(self, value: Any) -> str:
        return "`true`" if value else "`false`"


class IntValue(ValueKind):
    """An integer in ``[low, high]`` (no upper bound when ``high`` is ``None``)."""

    metavar = "N"

    def __init__(self, low: int, high: int | None) -> None:
        self.low, self.high = low, high
        self.doc = f"integer {low}-{high}" if high is not None else f"integer >= {low}"

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> int:
        return r.integer(node, key, self.low, self.high)

    def convert(self, value: Any) -> int:
        return check_int(value, self.low, self.high)


class DurationValue(RuleValue):
    """``30s``, ``1m30s``, ``500ms`` or a number of seconds.

    In a file, ``90`` and ``1.5`` are YAML numbers, taken as seconds; words are text.
    """

    doc = "duration"
    metavar = "DURATION"
    raw = False
    rule = staticmethod(parse_duration)

    def show(self, value: Any) -> str:
        return f"`{format_duration(value)}`"


class LogLevelValue(RuleValue):
    """One of :data:`LOG_LEVELS`; the file also takes ``warn`` and any case."""

    doc = "`debug`, `info`, `warning` (`warn`), `error`"
    metavar = "LEVEL"
    choices = LOG_LEVELS
    rule = staticmethod(check_loglevel)


class ChoiceValue(RuleValue):
    """One word from a fixed list, any case (``origin-protocol: HTTP2`` is ``http2``)."""

    metavar = "WORD"

    def __init__(self, choices: Sequence[str]) -> None:
        self.words = tuple(choices)
        self.choices = self.words
        self.doc = ", ".join(f"`{c}`" for c in self.words)

    def convert(self, value: Any) -> str:
        word = value.strip().lower() if isinstance(value, str) else ""
        if word not in self.words:
            raise ValueError(f"{value!r} is not allowed; use one of: {', '.join(self.words)}")
        return word


class PolicyValue(RuleValue):
    """A post-quantum policy, limited to the ones that make sense for the key."""

    metavar = "POLICY"

    def __init__(self, allowed: Sequence[Policy]) -> None:
        self.allowed = tuple(allowed)
        self.choices = tuple(p.value for p in self.allowed)
        self.doc = ", ".join(f"`{p.value}`" for p in self.allowed)
        self.rule = policy_parser(self.allowed)

    def show(self, value: Any) -> str:
        return f"`{Policy(value).value}`"


class UrlValue(RuleValue):
    """An ``http://`` or ``https://`` URL."""

    doc = "`http://` or `https://` URL"
    metavar = "URL"
    rule = staticmethod(check_url)


class ServiceValue(RuleValue):
    """Where requests go: ``http://``, ``https://`` (HTTP/3) or ``http_status:NNN``."""

    doc = "service"
    metavar = "URL"
    rule = staticmethod(parse_service)


class HostnameValue(RuleValue):
    """A host name, normalised; maybe a ``*.domain`` wildcard."""

    metavar = "HOST"

    def __init__(self, wildcard: bool) -> None:
        self.wildcard = wildcard
        self.doc = "host name or `*.domain`" if wildcard else "host name"

    def convert(self, value: Any) -> str:
        return normalize_hostname(value, allow_wildcard=self.wildcard)


class HostHeaderValue(RuleValue):
    """A ``Host`` header value: a host name or address, maybe with ``:port``, kept as written."""

    doc = "host[:port]"
    metavar = "HOST"
    rule = staticmethod(check_host_header)


class HostPortValue(RuleValue):
    """``HOST:PORT``; ``listen`` allows port 0 (the OS picks a free port)."""

    doc = "HOST:PORT"
    metavar = "HOST:PORT"

    def __init__(self, listen: bool) -> None:
        self.listen = listen

    def convert(self, value: Any) -> HostPort:
        if isinstance(value, HostPort):
            return value
        return parse_hostport(value, allow_port_zero=self.listen)


class HostPortListValue(ValueKind):
    """One ``HOST:PORT`` or a list of them; the flag is repeated for several."""

    doc = "HOST:PORT or a list of them"
    metavar = "HOST:PORT"
    action = "append"

    def __init__(self, what: str) -> None:
        self.what = what

    def read(
        self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None
    ) -> tuple[HostPort, ...]:
        items = r.sequence(node, key, allow_scalar=True)
        if not items:
            raise r.error(node, key, f"give at least one {self.what} (HOST:PORT)")
        return tuple(
            r.convert(
                item,
                f"{key}[{i}]" if len(items) > 1 or item is not node else key,
                parse_hostport,
            )
            for i, item in enumerate(items)
        )

    def convert(self, value: Any) -> tuple[HostPort, ...]:
        items = [value] if isinstance(value, (str, HostPort)) else list(value)
        if not items:
            raise ValueError(f"give at least one {self.what} (HOST:PORT)")
        return tuple(v if isinstance(v, HostPort) else parse_hostport(v) for v in items)

    def show(self, value: Any) -> str:
        return ", ".join(f"`{v}`" for v in value) if value else "none"


class PathValue(ValueKind):
    """A file path; in a file, relative to the file's directory and maybe required to exist.

    A flag's path is taken as given (relative to the current directory) and checked when used.
    """

    doc = "path"
    metavar = "FILE"

    def __init__(self, must_exist: bool) -> None:
        self.must_exist = must_exist

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> Path:
        return r.path_value(node, key, self.must_exist)

    def convert(self, value: Any) -> Path:
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise ValueError(f"expected a file path, got {describe(value)}")
        return Path(value)

    def resolve_default(self, r: YamlReader, value: Any) -> Any:
        return None if value is None else r.resolve(Path(value))


class GroupsValue(ValueKind):
    """Key-exchange group names; a flag gives them comma-separated."""

    doc = "list of group names"
    metavar = "NAME,NAME"

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> tuple[str, ...]:
        return r.groups(node, key)

    def convert(self, value: Any) -> tuple[str, ...]:
        return split_groups(value)


class RegexValue(ValueKind):
    """A Python regular expression, kept as written once it is known to compile."""

    doc = "regular expression"
    metavar = "REGEX"

    def read(self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None) -> str:
        text = r.text(node, key, "a regular expression")
        r.convert(node, key, compile_path)
        return text

    def convert(self, value: Any) -> str:
        compile_path(value)
        return str(value)


class SectionValue(ValueKind):
    """A nested mapping read with its own table (``public:``, ``connectors:``)."""

    doc = "mapping"
    overridable = False

    def __init__(self, table: FieldTable) -> None:
        self.table = table

    def read(
        self, r: YamlReader, node: yaml.Node, key: str, owner: yaml.Node | None = None
    ) -> SectionRead:
        return read_section(r, node, key, self.table, owner=owner)


class OriginRequestValue(ValueKind):
    """An ``originRequest`` mapping (cloudflared's keys), read with its own table into
    :class:`~.origin_request.OriginSettings`; a key left out stays ``None``."""

    doc = "mapping"
    overridable = False

    def __init__(self, table: FieldTable) -> None:
        self.table = table

    def show(self, value: Any) -> str:
        return "none"

    def read(
        self, r: YamlReader, node: yaml.Node, key: str, owner: yaml.Node | None = None
    ) -> OriginSettings:
        section = read_section(r, node, key, self.table, owner=owner)
        return OriginSettings(**section.values)


class IngressValue(ValueKind):
    """The ``ingress`` list: each rule read with ``rules``, the last one a catch-all."""

    doc = "list of rules"
    overridable = False

    def __init__(self, rules: FieldTable) -> None:
        self.rules = rules

    def show(self, value: Any) -> str:
        return "none" if not value else f"{len(value)} rules"

    def read(
        self, r: YamlReader, node: yaml.Node, key: str, owner: Any = None
    ) -> tuple[IngressRule, ...]:
        items = r.sequence(node, key, allow_scalar=False)
        if not items:
            raise r.error(
                node,
                key,
                "the list is empty; end it with a catch-all rule such as "
                "`- service: http_status:404`",
            )
        rules = [self._rule(r, item, f"{key}[{i}]", i) for i, item in enumerate(items)]

        def fail(rule: IngressRule, message: str) -> Exception:
            return r.error(items[rule.index], f"{key}[{rule.index}]", message)

        check_ingress(rules, fail)
        return tuple(rules)

    def _rule(self, r: YamlReader, item: yaml.Node, where: str, index: int) -> IngressRule:
        """One rule; a check across its keys (``IngressRule`` raises ``ValueError``) points at
        ``origin-protocol``, the key that names what the service cannot do."""
        section = read_section(r, item, where, self.rules)
        origin_kind = self.rules.by_key("originRequest").kind
        assert isinstance(origin_kind, OriginRequestValue)
        _check_origin_request(r, section, where, origin_kind.table)
        try:
            return IngressRule(**section.values, index=index, line=item.start_mark.line + 1)
        except ValueError as exc:
            knode = section.keys.get("origin-protocol", (item, item))[0]
            raise r.error(knode, f"{where}.origin-protocol", str(exc)) from None


#: A rule's own keys that say the same as an ``originRequest`` key (ours came first).
_SAME_AS = {"origin-ca-file": "ca_pool", "origin-server-name": "origin_server_name"}


def _check_origin_request(
    r: YamlReader, section: SectionRead, where: str, table: FieldTable
) -> None:
    """A rule's ``originRequest`` against the rule: TLS settings need a TLS service, and a
    setting given twice (``origin-ca-file`` and ``caPool``, ``origin-protocol`` and
    ``http2Origin``) must not disagree. Errors point at the ``originRequest`` key's line."""
    if "originRequest" not in section.keys:
        return
    settings: OriginSettings = section.values["origin_request"]
    service = section.values["service"]
    vnode = section.keys["originRequest"][1]
    assert isinstance(vnode, yaml.MappingNode)  # read_section checked it
    written = {k.value: k for k, _ in vnode.value}

    def fail(attr: str, message: str) -> Exception:
        name = str(table.by_attr(attr).key)
        return r.error(written.get(name, vnode), f"{where}.originRequest.{name}", message)

    for attr in settings.given():
        if attr in TLS_ONLY_KEYS and not service.tls:
            raise fail(
                attr,
                f"only applies to services reached over TLS (https://, unix+tls:), not "
                f"{service.text!r}",
            )
    for own, attr in _SAME_AS.items():
        mine, theirs = section.values[own.replace("-", "_")], getattr(settings, attr)
        if own in section.keys and theirs is not None and mine != theirs:
            raise fail(attr, f"says something else than the rule's {own}; give only one of them")
    protocol, http2 = section.values["origin_protocol"], settings.http2_origin
    if http2 is not None and protocol != "auto" and http2 != (protocol == "http2"):
        raise fail(
            "http2_origin",
            f"contradicts origin-protocol: {protocol}; give only one of them (http2Origin: "
            "true is origin-protocol: http2)",
        )
