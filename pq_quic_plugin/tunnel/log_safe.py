"""How a string a peer sent us appears in our log: quoted, escaped, and short.

Before authentication anyone can put anything in a registration or a report. Logged as sent,
a newline forges a log line and a 900 kB tunnel ID adds 900 kB of log per attempt. Every
peer-supplied value is logged through :func:`shown`, which cuts it *before* escaping it (so the
work is bounded too) and says how much was left out.
"""

from __future__ import annotations

import re

__all__ = ["LIMIT", "shown", "shown_host", "shown_list"]

_HOSTLIKE = re.compile(r"[A-Za-z0-9.*_:\[\]-]{1,253}")

#: Characters of a peer's value that a log line shows.
LIMIT = 80


def shown(value: object, limit: int = LIMIT) -> str:
    """``value`` for a log line: a string as its ``repr`` (newlines, escapes and any other
    non-printable character escaped) cut at ``limit`` characters; anything else by its type
    (a peer sending a list where a string belongs is the fact worth logging)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}...(+{len(value) - limit} chars)"


def shown_host(value: object) -> str:
    """A host name as it is when it looks like one (letters, digits, ``.-_*:[]``), else
    through :func:`shown`: readable in the common case, never a forged line."""
    if isinstance(value, str) and _HOSTLIKE.fullmatch(value):
        return value
    return shown(value, 100)


def shown_list(values: object, first: int = 4, limit: int = 40) -> str:
    """A peer's list for a log line: how many, and the first few through :func:`shown`."""
    if not isinstance(values, (list, tuple)):
        return shown(values)
    head = ", ".join(shown(v, limit) for v in values[:first])
    more = f", ... ({len(values)} in all)" if len(values) > first else ""
    return f"[{head}{more}]"
