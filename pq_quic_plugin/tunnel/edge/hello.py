"""The registration messages a connector sends, checked field by field before anything uses them.

Before authentication these come from anyone who can reach the connector port. Every field is
checked for its exact JSON type and range here, once (a ``bool`` is not an integer, a list is
not a string, ``null`` is not an index), so the code that uses a :class:`Hello` never meets a
value it did not expect and a malformed message is a clean refusal, never a traceback.
:class:`Malformed` carries a reason for the edge's log only; it never quotes the message
unescaped (see :mod:`..log_safe`).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from ..log_safe import shown

__all__ = [
    "MAX_CONN_INDEX",
    "MAX_HOSTNAMES",
    "Hello",
    "Malformed",
    "canonical_uuid",
    "parse_auth",
    "parse_hello",
    "parse_version",
]

#: ``ha-connections`` is at most 16; indexes far beyond are not a connector of ours.
MAX_CONN_INDEX = 255
MAX_HOSTNAMES = 200
MAX_ID = 64  # a UUID is 36 characters
MAX_SOFTWARE = 100
MAX_HOSTNAME = 253
PROOF_BYTES = 32  # HMAC-SHA256
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


class Malformed(ValueError):
    """A registration message that breaks the protocol; the text is for the edge's log."""


@dataclass(frozen=True)
class Hello:
    """A checked ``hello``. ``tunnel_id`` is what was sent (a string of bounded length), not
    necessarily a UUID: a name or junk is answered exactly like an unknown tunnel."""

    version: int
    tunnel_id: str
    connector_id: str
    conn_index: int
    software: str
    hostnames: tuple[str, ...]


def canonical_uuid(text: str) -> str | None:
    """``text`` as a lower-case UUID if it is one in the 8-4-4-4-12 form, else ``None``."""
    return text.lower() if _UUID.fullmatch(text) else None


def _int(message: dict[str, Any], key: str, high: int) -> int:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{key} must be an integer, got {shown(value)}")
    if not 0 <= value <= high:
        raise Malformed(f"{key} {value if abs(value) < 10**9 else '(huge)'} is not in 0-{high}")
    return value


def _str(message: dict[str, Any], key: str, limit: int, default: str | None = None) -> str:
    value = message.get(key, default)
    if not isinstance(value, str):
        raise Malformed(f"{key} must be a string, got {shown(value)}")
    if len(value) > limit:
        raise Malformed(f"{key} is {len(value)} characters, more than {limit}")
    return value


def _type(message: dict[str, Any], expected: str) -> None:
    if message.get("type") != expected:
        raise Malformed(f"expected a {expected!r} message, got type {shown(message.get('type'))}")


def parse_version(message: dict[str, Any]) -> int:
    """The ``hello``'s type and protocol version, checked before anything else (a connector of
    another version may send other fields)."""
    _type(message, "hello")
    return _int(message, "version", 0xFFFF)


def parse_hello(message: dict[str, Any]) -> Hello:
    """A ``hello`` of our protocol version; raises :class:`Malformed`."""
    version = parse_version(message)
    tunnel_id = _str(message, "tunnel_id", MAX_ID)
    connector_id = _str(message, "connector_id", MAX_ID)
    if canonical_uuid(connector_id) is None:
        raise Malformed(f"connector_id {shown(connector_id)} is not a UUID")
    conn_index = _int(message, "conn_index", MAX_CONN_INDEX)
    software = _str(message, "software", MAX_SOFTWARE, default="")
    if not _PRINTABLE.fullmatch(software):
        raise Malformed(f"software {shown(software)} is not printable ASCII")
    hostnames = message.get("hostnames", [])
    if hostnames is None:
        hostnames = []
    if not isinstance(hostnames, list) or len(hostnames) > MAX_HOSTNAMES:
        raise Malformed(f"hostnames must be a list of at most {MAX_HOSTNAMES} strings")
    for host in hostnames:
        if not isinstance(host, str) or not 0 < len(host) <= MAX_HOSTNAME:
            raise Malformed(f"hostname {shown(host)} is not a string of 1-{MAX_HOSTNAME} chars")
    return Hello(version, tunnel_id, connector_id, conn_index, software, tuple(hostnames))


def parse_auth(message: dict[str, Any]) -> bytes:
    """The proof from an ``auth`` message; raises :class:`Malformed`."""
    _type(message, "auth")
    text = _str(message, "proof", 64)
    try:
        proof = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed("proof is not base64") from None
    if len(proof) != PROOF_BYTES:
        raise Malformed(f"proof is {len(proof)} bytes, not {PROOF_BYTES}")
    return proof
