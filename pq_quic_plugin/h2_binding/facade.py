"""The binding's one change: a DATA frame's ``repr`` without hex-encoding the whole payload.

hyperframe's ``_raw_data_repr(data)`` returns ``<hex:`` + the hex of ``data``, cut to 20
characters plus ``...`` when longer, + ``>`` (``None`` for no data). 20 hex characters are 10
bytes, so the hex of the first 11 bytes decides the text exactly as the hex of all of them
does: :func:`raw_data_repr` encodes those, in constant time whatever the frame's size. The
text is the same for every input (``tests/test_h2_binding.py`` compares them).

:func:`apply` is called by the programs that move bulk data over h2 (``pq-tunnel edge``,
``pq-tunnel run``, ``hypercorn-pq``), never at import: a library that imports
``pq_quic_plugin`` does not get another library's function replaced behind its back.
"""

from __future__ import annotations

import binascii

import hyperframe.frame

__all__ = ["apply", "applied", "original_raw_data_repr", "raw_data_repr", "restore"]

#: hyperframe's own function, kept to restore it (and for the tests' comparison).
original_raw_data_repr = hyperframe.frame._raw_data_repr

#: hyperframe shows this many hex characters before "..." (and 11 bytes give 22 of them).
_SHOWN = 20
_BYTES_NEEDED = _SHOWN // 2 + 1


def raw_data_repr(data: bytes | None) -> str:
    """``hyperframe.frame._raw_data_repr(data)``, reading at most 11 bytes of ``data``."""
    if not data:
        return "None"
    r = binascii.hexlify(data[:_BYTES_NEEDED]).decode("ascii")
    if len(r) > _SHOWN:
        r = r[:_SHOWN] + "..."
    return "<hex:" + r + ">"


def apply() -> None:
    """Make every frame's ``repr`` cheap in this process (idempotent)."""
    hyperframe.frame._raw_data_repr = raw_data_repr


def restore() -> None:
    """Put hyperframe's own function back."""
    hyperframe.frame._raw_data_repr = original_raw_data_repr


def applied() -> bool:
    """Whether :func:`apply` is in effect."""
    return hyperframe.frame._raw_data_repr is raw_data_repr
