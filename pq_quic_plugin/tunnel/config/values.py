"""Value rules shared by the YAML files and the command-line flags.

A value means the same thing wherever it is written, so ``30s`` in ``config.yml`` and
``--grace-period 30s`` go through the same function and fail with the same words. Each function
takes a plain Python value and raises ``ValueError`` saying what is wrong and what to write; the
YAML reader and the flag overrides add the file, line or flag in front.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ...plugins import UnknownGroupError, registry
from ...policy import Policy
from ..hostnames import request_host

__all__ = [
    "LOG_LEVELS",
    "check_groups",
    "check_host_header",
    "check_int",
    "check_loglevel",
    "check_url",
    "describe",
    "format_duration",
    "int_range",
    "parse_duration",
    "policy_parser",
    "split_groups",
]

LOG_LEVELS = ("debug", "info", "warning", "error")

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


def format_duration(seconds: float) -> str:
    """The shortest way to write ``seconds`` that :func:`parse_duration` reads back."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def describe(value: Any) -> str:
    """``value`` with its YAML-ish kind, so "got 'four' (a string)" says why it was refused."""
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


def int_range(low: int, high: int | None) -> str:
    """The words for an integer range, as every integer error says it."""
    return f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"


def check_int(value: Any, low: int, high: int | None) -> int:
    """An integer in ``[low, high]``; a string of digits (a flag's text) is accepted too."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"expected {int_range(low, high)}, got {describe(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected {int_range(low, high)}, got {describe(value)}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"expected {int_range(low, high)}, got {value}")
    return value


def check_loglevel(value: Any) -> str:
    """One of :data:`LOG_LEVELS`, any case; ``warn`` is taken for ``warning``."""
    level = str(value).strip().lower()
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not a log level; use one of: {', '.join(LOG_LEVELS)}")
    return level


def check_url(value: Any) -> str:
    """An ``http://`` or ``https://`` URL with a host, kept as written."""
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return str(value)


def check_host_header(value: Any) -> str:
    """A value for the ``Host`` header: what a visitor's ``Host`` may be (a host name, an IPv4
    address or a bracketed IPv6 one, maybe ``:port``), kept as written."""
    text = str(value).strip()
    if not request_host(text):
        raise ValueError(
            f"{value!r} is not a valid Host header value; write a host name, maybe with :PORT "
            "(e.g. app.internal or app.internal:8080)"
        )
    return text


def check_groups(names: Iterable[Any]) -> tuple[str, ...]:
    """Registered key-exchange group names, canonical spelling, duplicates dropped."""
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


def split_groups(value: Any) -> tuple[str, ...]:
    """Group names from a flag (``a,b``) or from Python (a list)."""
    if isinstance(value, str):
        return check_groups(n.strip() for n in value.split(",") if n.strip())
    return check_groups(list(value))


def policy_parser(allowed: Sequence[Policy]) -> Callable[[Any], Policy]:
    """A parser accepting only the ``allowed`` policies, by name, any case."""

    def parse(text: Any) -> Policy:
        if isinstance(text, Policy):
            text = text.value
        value = str(text).strip().lower()
        for p in allowed:
            if p.value == value:
                return p
        raise ValueError(
            f"{text!r} is not allowed; use one of: {', '.join(p.value for p in allowed)}"
        )

    return parse
