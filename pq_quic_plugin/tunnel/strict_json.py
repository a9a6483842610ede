"""JSON from strangers, and JSON for operators: one strict decoder, one strict encoder.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e999`` (a float overflow) and writes them
back out as the bare words ``NaN``/``Infinity``, which no other JSON parser reads: one such value
in a report made ``/status.json`` unreadable. It also recurses once per nesting level, so a
message nested a thousand deep raised ``RecursionError`` out of a registration. Everything the
tunnel decodes from a peer (control messages, failure reports) goes through :func:`loads`, and
everything it serves to an operator through :func:`dumps`.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["MAX_DEPTH", "StrictJSONError", "dumps", "loads"]

#: Our messages nest two or three levels; anything far deeper is not one of them.
MAX_DEPTH = 8


class StrictJSONError(ValueError):
    """The bytes are not a JSON document we accept; the message never quotes the input."""


def loads(data: bytes | str, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``data``: at most ``max_bytes`` of UTF-8, nested at most ``max_depth`` deep,
    finite numbers only, no key twice in one object. Raises :class:`StrictJSONError`."""
    if len(data) > max_bytes:
        raise StrictJSONError(f"{len(data)} bytes, more than the {max_bytes} allowed")
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError:
        raise StrictJSONError("not UTF-8") from None
    depth = _depth(text, max_depth)
    if depth > max_depth:
        raise StrictJSONError(f"nested {depth} deep, more than {max_depth}")
    try:
        return json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite,
            object_pairs_hook=_unique_keys,
        )
    except StrictJSONError:
        raise
    except (ValueError, RecursionError) as exc:
        raise StrictJSONError(f"not JSON ({type(exc).__name__})") from None


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that raises ``ValueError`` rather than write ``NaN`` or ``Infinity``."""
    return json.dumps(value, allow_nan=False, **kwargs)


def _depth(text: str, limit: int) -> int:
    """The deepest ``[``/``{`` nesting outside strings, without recursing (an upper bound
    when that is within ``limit``: few brackets cannot nest deeper than their count)."""
    brackets = text.count("[") + text.count("{")
    if brackets <= limit:
        return brackets
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError("a number too large for a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError("a key appears twice in one object")
        out[key] = value
    return out
