"""A request path in one canonical form: what ingress rules judge and what the origin receives.

Ingress ``path`` rules are regular expressions over the path. Matched against the raw path, a
visitor writes the same resource in forms a rule does not see (``/%68eaders``, ``//headers``,
``/./headers``, ``/a/../headers``) while the origin's router, which decodes and resolves them,
serves ``/headers``. The edge therefore puts every path through :func:`normalize_path` once and
forwards the result, so the rule and the origin see the same string (RFC 3986 section 6.2.2):

* percent-encoded unreserved characters (``A-Z a-z 0-9 - . _ ~``) are decoded, other escapes
  are kept with upper-case hex digits;
* runs of ``/`` collapse to one;
* ``.`` and ``..`` segments are resolved (``..`` above the root stays at the root).

A path that no rule could judge safely is refused (``ValueError``; the edge answers 400): an
encoded ``/`` or ``\\`` (``%2F``, ``%5C``: one origin treats it as a separator, another as part
of a name), an encoded or raw control character, a raw ``\\`` or space, a malformed escape, and
any target that is not origin-form (``*``, ``http://host/path``).
"""

from __future__ import annotations

__all__ = ["normalize_path"]

#: RFC 3986 section 2.3: characters that mean the same encoded or not.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
#: Decoded, these would change how the path splits into segments, or hide a control byte.
_REFUSED_ESCAPES = frozenset({0x2F, 0x5C, 0x7F, *range(0x20)})


def normalize_path(raw: str) -> str:
    """The canonical form of an origin-form path (no query string); ``ValueError`` if refused.

    Linear in the length of ``raw``; the result is never longer than ``raw``.
    """
    if not raw.startswith("/"):
        raise ValueError("the request target must be a path starting with '/'")
    decoded = _decode_unreserved(raw)
    segments: list[str] = []
    parts = decoded.split("/")
    for i, segment in enumerate(parts[1:], start=1):
        last = i == len(parts) - 1
        if segment == "..":
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif segment == ".":
            if last:
                segments.append("")
        elif segment or last:  # an empty segment is a doubled '/' unless it ends the path
            segments.append(segment)
    return "/" + "/".join(segments)


def _decode_unreserved(raw: str) -> str:
    """``raw`` with unreserved escapes decoded and the others checked and upper-cased."""
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError("the path has a malformed percent-escape")
            byte = int(pair, 16)
            if byte in _REFUSED_ESCAPES:
                raise ValueError(f"the path encodes a separator or control byte (%{pair.upper()})")
            decoded = chr(byte)
            out.append(decoded if decoded in _UNRESERVED else "%" + pair.upper())
            i += 3
            continue
        if ch == "\\" or ord(ch) <= 0x20 or ord(ch) == 0x7F:
            raise ValueError("the path holds a backslash, a space or a control character")
        out.append(ch)
        i += 1
    return "".join(out)
