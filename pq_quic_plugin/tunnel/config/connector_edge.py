"""The connector's ``config.yml`` and the edge's ``edge.yaml``: loading, validation, matching.

Operators edit these files by hand, so every mistake is reported as ``FILE:LINE: KEY: what is
wrong; what to write instead``. To know the line of each key and value, the YAML is *composed*
into nodes (``yaml.compose`` with ``SafeLoader``) and walked by hand instead of loaded into plain
dicts, which would forget where each value came from. Scalars are converted with PyYAML's safe
constructor, except for string-valued keys, which take the text exactly as written: YAML 1.1
would otherwise turn ``location: NO`` into ``False`` and ``tunnel: 0123`` into ``83``.

Both configurations are frozen dataclasses; command-line flags are applied with
:meth:`ConnectorConfig.with_overrides`, which validates flag values with the same rules and names
the flag in its errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor

from ...plugins import UnknownGroupError, registry
from ...policy import GroupPolicy, Policy
from ..hostnames import (
    HostPort,
    hostname_matches,
    normalize_hostname,
    parse_hostport,
    strip_port,
)

__all__ = [
    "ConfigError",
    "HostPort",
    "Service",
    "IngressRule",
    "ConnectorConfig",
    "PublicListener",
    "ConnectorListener",
    "EdgeConfig",
    "LOG_LEVELS",
    "load_connector_config",
    "load_edge_config",
    "parse_hostport",
    "parse_duration",
    "parse_service",
    "normalize_hostname",
    "hostname_matches",
    "strip_port",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
SERVICE_HINT = "use http://HOST:PORT, https://HOST:PORT or http_status:NNN"


class ConfigError(ValueError):
    """A configuration mistake, with the file, line and key it concerns already in the message.

    ``source``, ``line`` and ``key`` are also kept as attributes so a CLI or a test can use them
    without parsing the text; any of them may be ``None`` (a flag has no file or line).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.key = key


# --------------------------------------------------------------------------------------------
# Small parsers shared by both files and by the command-line flags
# --------------------------------------------------------------------------------------------


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``"30s"``, ``"1m"``, ``"500ms"``, ``"1h"``, ``"1m30s"`` or a plain number.

    A bare number (or numeric string) means seconds, like cloudflared's flags.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 1m or 500ms, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        s = value.strip().lower()
        try:
            seconds = float(s)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(s):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(s) or not s:
                raise ValueError(
                    f"{value!r} is not a duration; write e.g. 30s, 1m, 1m30s, 500ms or a number "
                    "of seconds"
                ) from None
    else:
        raise ValueError(f"expected a duration like 30s, 1m or 500ms, got {value!r}")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"{value!r}: a duration must be a finite number of seconds >= 0")
    return seconds


# --------------------------------------------------------------------------------------------
# Ingress
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """Where an ingress rule sends requests.

    ``kind`` is ``"http"`` (HTTP/1.1 to the origin), ``"https"`` (HTTP/3 over QUIC to an origin
    that speaks it, post-quantum) or ``"http_status"`` (answer with ``status`` and no origin).
    ``base_path`` is prefixed to the request path (``""`` or ``"/base"``, no trailing slash).
    """

    kind: Literal["http", "https", "http_status"]
    text: str
    host: str = ""
    port: int = 0
    base_path: str = ""
    status: int = 0

    @property
    def address(self) -> HostPort:
        return HostPort(self.host, self.port)

    def __str__(self) -> str:
        return self.text


def parse_service(text: str) -> Service:
    """Parse an ingress ``service`` value; ``ValueError`` says what is wrong and what to write."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a valid service; {SERVICE_HINT}")
    s = text.strip()

    def bad(detail: str = "") -> ValueError:
        extra = f" ({detail})" if detail else ""
        return ValueError(f"{text!r} is not a valid service{extra}; {SERVICE_HINT}")

    if s.lower().startswith("http_status:"):
        code = s.partition(":")[2].strip()
        if not code.isdigit() or not 100 <= int(code) <= 599:
            raise bad("the status must be a number from 100 to 599")
        return Service("http_status", s, status=int(code))
    try:
        parts = urlsplit(s)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not s.lower().startswith(scheme + "://"):
        raise bad()
    if not parts.hostname:
        raise bad("no host")
    if parts.username or parts.password:
        raise bad("credentials in the URL are not supported")
    if parts.query or parts.fragment:
        raise bad("no query or fragment allowed")
    if port is None:
        port = 80 if scheme == "http" else 443
    if port == 0:
        raise bad("port 0")
    kind: Literal["http", "https"] = "http" if scheme == "http" else "https"
    return Service(kind, s, host=parts.hostname, port=port, base_path=parts.path.rstrip("/"))


@dataclass(frozen=True)
class IngressRule:
    """One ``ingress`` entry. A rule without ``hostname`` and ``path`` is the catch-all."""

    service: Service
    hostname: str | None = None  # normalized, maybe "*.example.com"
    path: str | None = None  # the regex as written
    origin_ca_file: Path | None = None
    origin_server_name: str | None = None
    index: int = 0
    line: int | None = None
    path_re: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    @property
    def is_catch_all(self) -> bool:
        return self.hostname is None and self.path is None

    def matches(self, host: str, path: str) -> bool:
        """Host is compared without case or port; the path regex is ``re.search``-ed."""
        if self.hostname is not None and not hostname_matches(self.hostname, host):
            return False
        if self.path_re is not None and not self.path_re.search(path.partition("?")[0]):
            return False
        return True


def _compile_path(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None


def _check_ingress(
    rules: Sequence[IngressRule], fail: Callable[[IngressRule, str], Exception]
) -> None:
    """The last rule must catch everything and no earlier rule may (later ones would be dead)."""
    if not rules:
        return
    for rule in rules[:-1]:
        if rule.is_catch_all:
            raise fail(
                rule,
                f"this rule has no hostname and no path, so it matches every request, but it "
                f"is not the last rule: ingress[{rule.index + 1}] and later would never be used; "
                "move it to the end",
            )
    last = rules[-1]
    if not last.is_catch_all:
        raise fail(
            last,
            "the last ingress rule must be a catch-all (no hostname, no path) so every request "
            "has a service; add a final rule such as `- service: http_status:404`",
        )


# --------------------------------------------------------------------------------------------
# The connector's config.yml
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorConfig:
    """What ``pq-tunnel run`` needs; every field has the default documented in
    ``docs/tunnel-config.md``. ``tunnel`` may be ``None`` when the credentials file names it.
    ``retries`` is the number of consecutive failed attempts per connection before the connector
    gives up (0 = retry forever); a successful registration resets the count."""

    tunnel: str | None = None
    credentials_file: Path | None = None
    edge: tuple[HostPort, ...] = ()
    post_quantum: bool = False
    groups: tuple[str, ...] | None = None
    ha_connections: int = 4
    metrics: HostPort = HostPort("127.0.0.1", 0)
    loglevel: str = "info"
    grace_period: float = 30.0
    pq_report_url: str | None = None
    retries: int = 5
    ca_file: Path | None = None
    edge_server_name: str | None = None
    ingress: tuple[IngressRule, ...] = ()
    source: Path | None = None

    # -- queries ---------------------------------------------------------------------------

    def ingress_match(self, host: str, path: str) -> IngressRule:
        """The first rule matching ``host`` (any case, ``:port`` ignored) and ``path``."""
        for rule in self.ingress:
            if rule.matches(host, path):
                return rule
        # Unreachable for a validated config, whose last rule is a catch-all.
        raise LookupError("no ingress rules configured; add an ingress list or pass --url")

    def server_name_for(self, edge: HostPort) -> str:
        """SNI for an edge address: ``edge-server-name`` when set, else the edge's host."""
        return self.edge_server_name or edge.host

    def check_runnable(self) -> None:
        """Raise :class:`ConfigError` unless everything ``run`` needs has been given."""
        missing = []
        if self.credentials_file is None:
            missing.append("credentials-file (or --credentials-file)")
        if not self.edge:
            missing.append("edge (or --edge HOST:PORT)")
        if not self.ingress:
            missing.append("ingress rules (or --url http://HOST:PORT)")
        if missing:
            where = f"{self.source}: " if self.source else ""
            raise ConfigError(f"{where}missing: {'; '.join(missing)}", source=_s(self.source))

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def quick(
        cls,
        url: str,
        edge: str | HostPort | Sequence[str | HostPort],
        credentials_file: str | Path | None,
        **overrides: Any,
    ) -> ConnectorConfig:
        """A quick tunnel: one catch-all rule sending everything to ``url``.

        ``overrides`` are the same keyword arguments as :meth:`with_overrides`.
        """
        return cls().with_overrides(
            url=url, edge=edge, credentials_file=credentials_file, **overrides
        )

    def with_overrides(self, **flags: Any) -> ConnectorConfig:
        """Apply command-line flags (field names with underscores); ``None`` means not given.

        Accepts every field except ``ingress``/``source``, plus ``url`` (replaces the ingress
        rules with a single catch-all to that service). Values are validated as in the file
        and errors name the flag, e.g. ``--ha-connections: expected ...``. Relative paths are
        taken as given (relative to the current directory).
        """
        names = {f.name for f in dataclasses.fields(self)} - {"ingress", "source"} | {"url"}
        unknown = sorted(set(flags) - names)
        if unknown:
            raise TypeError(f"unknown override(s) {unknown}; valid: {sorted(names)}")
        changes: dict[str, Any] = {}
        for name, value in flags.items():
            if value is None:
                continue
            flag = "--" + name.replace("_", "-")
            try:
                if name == "url":
                    changes["ingress"] = (IngressRule(service=parse_service(value), line=None),)
                else:
                    changes[name] = _convert_override(name, value)
            except ValueError as exc:
                raise ConfigError(f"{flag}: {exc}", key=flag) from None
        out = dataclasses.replace(self, **changes)
        try:
            _check_pq_groups(out.post_quantum, out.groups)
        except ValueError as exc:
            flag = "--groups" if "groups" in changes else "--post-quantum"
            raise ConfigError(f"{flag}: {exc}", key=flag) from None
        return out


def _check_pq_groups(post_quantum: bool, groups: tuple[str, ...] | None) -> None:
    """``post-quantum: true`` with a group list must leave something post-quantum to offer."""
    if post_quantum and groups is not None:
        try:
            GroupPolicy.build(Policy.REQUIRE, groups)
        except ValueError as exc:
            raise ValueError(f"{exc} (post-quantum is on)") from None


def _convert_override(name: str, value: Any) -> Any:
    if name in ("credentials_file", "ca_file"):
        return Path(value)
    if name == "edge":
        items = [value] if isinstance(value, (str, HostPort)) else list(value)
        if not items:
            raise ValueError("give at least one edge address")
        return tuple(v if isinstance(v, HostPort) else parse_hostport(v) for v in items)
    if name == "metrics":
        return value if isinstance(value, HostPort) else parse_hostport(value, allow_port_zero=True)
    if name == "post_quantum":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if name == "ha_connections":
        return _check_int(value, 1, 16)
    if name == "retries":
        return _check_int(value, 0, None)
    if name == "loglevel":
        return _check_loglevel(value)
    if name == "grace_period":
        return parse_duration(value)
    if name == "pq_report_url":
        return _check_url(value)
    if name == "groups":
        return _check_groups([value] if isinstance(value, str) else list(value))
    if name == "edge_server_name":
        return normalize_hostname(value, allow_wildcard=False)
    if name == "tunnel":
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a tunnel name or UUID")
        return value.strip()
    raise AssertionError(name)  # pragma: no cover - names are checked by the caller


def _check_int(value: Any, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        else:
            raise ValueError(f"expected {_int_range(low, high)}, got {_describe(value)}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"expected {_int_range(low, high)}, got {value}")
    return int(value)


def _int_range(low: int, high: int | None) -> str:
    return f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"


def _check_loglevel(value: Any) -> str:
    level = str(value).strip().lower()
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not a log level; use one of: {', '.join(LOG_LEVELS)}")
    return level


def _check_url(value: Any) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return str(value)


def _check_groups(names: Iterable[Any]) -> tuple[str, ...]:
    reg = registry()
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"expected group names, got {name!r}")
        try:
            group = reg.by_name(name)
        except UnknownGroupError as exc:
            raise ValueError(str(exc)) from None
        if group.name not in out:
            out.append(group.name)
    if not out:
        raise ValueError("the group list is empty; leave the key out for the default groups")
    return tuple(out)


def _describe(value: Any) -> str:
    kinds = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing",
    }
    return f"{value!r} ({kinds.get(type(value), type(value).__name__)})"


def _s(path: Path | None) -> str | None:
    return None if path is None else str(path)


# --------------------------------------------------------------------------------------------
# The YAML node walker
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


class _Reader:
    """Walks composed YAML nodes, converting values and raising located :class:`ConfigError`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.absolute().parent
        self._constructor = SafeConstructor()

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        return ConfigError(text, source=str(self.path), line=line, key=key or None)

    def compose(self) -> yaml.MappingNode:
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
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys to (key node, value node); unknown, duplicate and missing keys are errors.

        A missing key is reported on the line of ``owner`` (the key that holds this mapping,
        e.g. ``public:``) when given, else where the mapping starts.
        """
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, f"expected a mapping with keys {', '.join(valid)}")
        self._constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
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
                    f"{key}.{name}" if key else name,
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
        return f"{key}.{name}" if key else name

    def value(self, node: yaml.Node) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def text(self, node: yaml.Node, key: str, what: str = "a string") -> str:
        """A string as written (YAML 1.1 booleans and octals are not converted)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            got = "nothing" if isinstance(node, yaml.ScalarNode) else _node_kind(node)
            raise self.error(node, key, f"expected {what}, got {got}")
        text = str(node.value).strip()
        if not text:
            raise self.error(node, key, f"expected {what}, got an empty string")
        return text

    def boolean(self, node: yaml.Node, key: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise self.error(node, key, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, node: yaml.Node, key: str, low: int, high: int | None) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, key, f"expected {_int_range(low, high)}, got {_describe(value)}")
        if value < low or (high is not None and value > high):
            raise self.error(node, key, f"expected {_int_range(low, high)}, got {value}")
        return value

    def convert(self, node: yaml.Node, key: str, parse: Callable[[Any], T], raw: bool = True) -> T:
        """Run ``parse`` on the value (text as written when ``raw``); ValueError → located error."""
        value = self.text(node, key) if raw else self.value(node)
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from None

    def path_value(self, node: yaml.Node, key: str, must_exist: bool) -> Path:
        raw = Path(self.text(node, key, "a file path")).expanduser()
        path = raw if raw.is_absolute() else self.base / raw
        if must_exist and not path.is_file():
            raise self.error(node, key, f"{path} does not exist or is not a file")
        return path

    def sequence(self, node: yaml.Node, key: str, allow_scalar: bool) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if allow_scalar and isinstance(node, yaml.ScalarNode):
            return [node]
        raise self.error(node, key, f"expected a list, got {_node_kind(node)}")

    def duration(self, node: yaml.Node, key: str) -> float:
        value = self.value(node)
        if isinstance(value, str):
            value = node.value
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from None

    def groups(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        items = self.sequence(node, key, allow_scalar=True)
        names = [self.text(item, f"{key}[{i}]", "a group name") for i, item in enumerate(items)]
        for i, (item, name) in enumerate(zip(items, names, strict=True)):
            try:
                _check_groups([name])
            except ValueError as exc:
                raise self.error(item, f"{key}[{i}]", str(exc)) from None
        try:
            return _check_groups(names)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from None


_BARE_IPV6 = re.compile(r"(?<![\"'])\[[0-9A-Fa-f:.]*\]:\d+")


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a value"


# --------------------------------------------------------------------------------------------
# Loading config.yml
# --------------------------------------------------------------------------------------------

CONNECTOR_KEYS = (
    "tunnel",
    "credentials-file",
    "edge",
    "post-quantum",
    "groups",
    "ha-connections",
    "metrics",
    "loglevel",
    "grace-period",
    "pq-report-url",
    "retries",
    "ca-file",
    "edge-server-name",
    "ingress",
)
RULE_KEYS = ("hostname", "path", "service", "origin-ca-file", "origin-server-name")


def load_connector_config(path: str | Path) -> ConnectorConfig:
    """Read and validate a connector ``config.yml``; relative paths are against its directory."""
    r = _Reader(Path(path))
    keys = r.mapping(r.compose(), "", CONNECTOR_KEYS)
    kw: dict[str, Any] = {"source": r.path}
    for name, (_knode, node) in keys.items():
        attr = name.replace("-", "_")
        if name == "tunnel":
            kw[attr] = r.text(node, name, "a tunnel name or UUID")
        elif name in ("credentials-file", "ca-file"):
            kw[attr] = r.path_value(node, name, must_exist=name == "ca-file")
        elif name == "edge":
            items = r.sequence(node, name, allow_scalar=True)
            if not items:
                raise r.error(node, name, "give at least one edge address (HOST:PORT)")
            kw[attr] = tuple(
                r.convert(
                    item,
                    f"{name}[{i}]" if len(items) > 1 or item is not node else name,
                    parse_hostport,
                )
                for i, item in enumerate(items)
            )
        elif name == "post-quantum":
            kw[attr] = r.boolean(node, name)
        elif name == "groups":
            kw[attr] = r.groups(node, name)
        elif name == "ha-connections":
            kw[attr] = r.integer(node, name, 1, 16)
        elif name == "retries":
            kw[attr] = r.integer(node, name, 0, None)
        elif name == "metrics":
            kw[attr] = r.convert(node, name, lambda t: parse_hostport(t, allow_port_zero=True))
        elif name == "loglevel":
            kw[attr] = r.convert(node, name, _check_loglevel)
        elif name == "grace-period":
            kw[attr] = r.duration(node, name)
        elif name == "pq-report-url":
            kw[attr] = r.convert(node, name, _check_url)
        elif name == "edge-server-name":
            kw[attr] = r.convert(node, name, lambda t: normalize_hostname(t, allow_wildcard=False))
        elif name == "ingress":
            kw[attr] = _load_ingress(r, node)
    try:
        _check_pq_groups(kw.get("post_quantum", False), kw.get("groups"))
    except ValueError as exc:
        raise r.error(keys["groups"][1], "groups", str(exc)) from None
    return ConnectorConfig(**kw)


def _load_ingress(r: _Reader, node: yaml.Node) -> tuple[IngressRule, ...]:
    items = r.sequence(node, "ingress", allow_scalar=False)
    if not items:
        raise r.error(
            node,
            "ingress",
            "the list is empty; end it with a catch-all rule such as `- service: http_status:404`",
        )
    rules: list[IngressRule] = []
    for i, item in enumerate(items):
        key = f"ingress[{i}]"
        keys = r.mapping(item, key, RULE_KEYS, required=("service",))
        svc_node = keys["service"][1]
        service = r.convert(svc_node, f"{key}.service", parse_service)
        hostname = path = None
        path_re = None
        origin_ca = origin_sni = None
        if "hostname" in keys:
            hostname = r.convert(keys["hostname"][1], f"{key}.hostname", normalize_hostname)
        if "path" in keys:
            path_node = keys["path"][1]
            path = r.text(path_node, f"{key}.path", "a regular expression")
            path_re = r.convert(path_node, f"{key}.path", _compile_path)
        for opt in ("origin-ca-file", "origin-server-name"):
            if opt in keys and service.kind != "https":
                raise r.error(
                    keys[opt][0],
                    f"{key}.{opt}",
                    f"only applies to https:// services, not {service.text!r}",
                )
        if "origin-ca-file" in keys:
            origin_ca = r.path_value(keys["origin-ca-file"][1], f"{key}.origin-ca-file", True)
        if "origin-server-name" in keys:
            origin_sni = r.convert(
                keys["origin-server-name"][1],
                f"{key}.origin-server-name",
                lambda t: normalize_hostname(t, allow_wildcard=False),
            )
        rules.append(
            IngressRule(
                service=service,
                hostname=hostname,
                path=path,
                origin_ca_file=origin_ca,
                origin_server_name=origin_sni,
                index=i,
                line=item.start_mark.line + 1,
                path_re=path_re,
            )
        )

    def fail(rule: IngressRule, message: str) -> ConfigError:
        return r.error(items[rule.index], f"ingress[{rule.index}]", message)

    _check_ingress(rules, fail)
    return tuple(rules)


# --------------------------------------------------------------------------------------------
# Loading edge.yaml
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicListener:
    """The visitors' side: HTTP/3 on UDP and HTTP/1.1 + HTTP/2 on TCP, both on ``bind``."""

    bind: HostPort
    certfile: Path
    keyfile: Path
    pq: Policy = Policy.PREFER  # PREFER or REQUIRE


@dataclass(frozen=True)
class ConnectorListener:
    """The QUIC (UDP) listener connectors dial; ``group_policy()`` gives what it accepts."""

    bind: HostPort
    certfile: Path
    keyfile: Path
    post_quantum: Policy = Policy.PREFER  # OFF, PREFER or REQUIRE
    groups: tuple[str, ...] | None = None  # None: every registered group, post-quantum first

    def group_policy(self) -> GroupPolicy:
        return GroupPolicy.server_default(self.post_quantum, self.groups)


@dataclass(frozen=True)
class EdgeConfig:
    """What ``pq-tunnel edge`` needs."""

    public: PublicListener
    connectors: ConnectorListener
    store: Path
    metrics: HostPort = HostPort("127.0.0.1", 0)
    loglevel: str = "info"
    grace_period: float = 30.0
    edge_id: str = field(default_factory=socket.gethostname)
    location: str = "local"
    source: Path | None = None


EDGE_KEYS = (
    "public",
    "connectors",
    "store",
    "metrics",
    "loglevel",
    "grace-period",
    "edge-id",
    "location",
)
PUBLIC_KEYS = ("bind", "certfile", "keyfile", "pq")
CONNECTORS_KEYS = ("bind", "certfile", "keyfile", "post-quantum", "groups")


def _policy(allowed: Sequence[Policy]) -> Callable[[str], Policy]:
    def parse(text: str) -> Policy:
        value = text.strip().lower()
        for p in allowed:
            if p.value == value:
                return p
        raise ValueError(
            f"{text!r} is not allowed; use one of: {', '.join(p.value for p in allowed)}"
        )

    return parse


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Read and validate an ``edge.yaml``; relative paths are against its directory."""
    r = _Reader(Path(path))
    root = r.compose()
    keys = r.mapping(root, "", EDGE_KEYS, required=("public", "connectors"))

    pub = r.mapping(
        keys["public"][1],
        "public",
        PUBLIC_KEYS,
        required=("bind", "certfile", "keyfile"),
        owner=keys["public"][0],
    )
    public = PublicListener(
        bind=r.convert(
            pub["bind"][1], "public.bind", lambda t: parse_hostport(t, allow_port_zero=True)
        ),
        certfile=r.path_value(pub["certfile"][1], "public.certfile", True),
        keyfile=r.path_value(pub["keyfile"][1], "public.keyfile", True),
        pq=(
            r.convert(pub["pq"][1], "public.pq", _policy([Policy.PREFER, Policy.REQUIRE]))
            if "pq" in pub
            else Policy.PREFER
        ),
    )

    cnode = keys["connectors"][1]
    con = r.mapping(
        cnode, "connectors", CONNECTORS_KEYS, required=("bind",), owner=keys["connectors"][0]
    )
    if ("certfile" in con) != ("keyfile" in con):
        given, other = ("certfile", "keyfile") if "certfile" in con else ("keyfile", "certfile")
        raise r.error(
            con[given][0],
            f"connectors.{given}",
            f"give connectors.{other} too, or neither to reuse the public pair",
        )
    policy = (
        r.convert(con["post-quantum"][1], "connectors.post-quantum", _policy(list(Policy)))
        if "post-quantum" in con
        else Policy.PREFER
    )
    groups = r.groups(con["groups"][1], "connectors.groups") if "groups" in con else None
    connectors = ConnectorListener(
        bind=r.convert(
            con["bind"][1], "connectors.bind", lambda t: parse_hostport(t, allow_port_zero=True)
        ),
        certfile=(
            r.path_value(con["certfile"][1], "connectors.certfile", True)
            if "certfile" in con
            else public.certfile
        ),
        keyfile=(
            r.path_value(con["keyfile"][1], "connectors.keyfile", True)
            if "keyfile" in con
            else public.keyfile
        ),
        post_quantum=policy,
        groups=groups,
    )
    try:
        connectors.group_policy()
    except ValueError as exc:
        node = con["groups"][1] if "groups" in con else con["post-quantum"][1]
        key = "connectors.groups" if "groups" in con else "connectors.post-quantum"
        raise r.error(node, key, str(exc)) from None
    a, b = public.bind, connectors.bind
    if a.port == b.port != 0 and (
        a.host == b.host or "0.0.0.0" in (a.host, b.host) or "::" in (a.host, b.host)
    ):
        raise r.error(
            con["bind"][1],
            "connectors.bind",
            f"{b} clashes with public.bind {a}: both listen on UDP; use another port",
        )

    kw: dict[str, Any] = {
        "public": public,
        "connectors": connectors,
        "source": r.path,
        "store": r.base / "tunnels.db",
    }
    for name, (_knode, node) in keys.items():
        attr = name.replace("-", "_")
        if name == "store":
            kw[attr] = r.path_value(node, name, must_exist=False)
        elif name == "metrics":
            kw[attr] = r.convert(node, name, lambda t: parse_hostport(t, allow_port_zero=True))
        elif name == "loglevel":
            kw[attr] = r.convert(node, name, _check_loglevel)
        elif name == "grace-period":
            kw[attr] = r.duration(node, name)
        elif name in ("edge-id", "location"):
            kw[attr] = r.text(node, name)
    return EdgeConfig(**kw)
