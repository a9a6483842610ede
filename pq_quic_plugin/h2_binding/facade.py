"""The binding's two changes: a DATA frame's ``repr`` without hex-encoding the whole payload, and
no per-header debug calls in hpack.

hyperframe's ``_raw_data_repr(data)`` returns ``<hex:`` + the hex of ``data``, cut to 20
characters plus ``...`` when longer, + ``>`` (``None`` for no data). 20 hex characters are 10
bytes, so the hex of the first 11 bytes decides the text exactly as the hex of all of them
does: :func:`raw_data_repr` encodes those, in constant time whatever the frame's size. The
text is the same for every input (``tests/test_h2_binding.py`` compares them).

hpack calls ``log.debug`` about 50 times per request on a tunnel link (every header it adds,
encodes and decodes), each a real ``Logger.debug`` call even with DEBUG off: about 30 us per
request in a cProfile of the connector (http2 path); the tunnel's requests/s rose about 3 %.
Nobody reads those lines (at DEBUG they are most of a 600,000-line log per minute), so
:func:`apply` gives hpack a logger that drops them.

:func:`apply` is called by the programs that move bulk data over h2 (``pq-tunnel edge``,
``pq-tunnel run``, ``hypercorn-pq``), never at import: a library that imports
``pq_quic_plugin`` does not get another library's function replaced behind its back.
"""

from __future__ import annotations

import binascii
from typing import Any

import hpack.hpack
import hyperframe.frame

__all__ = ["apply", "applied", "original_raw_data_repr", "raw_data_repr", "restore"]

#: hyperframe's own function, kept to restore it (and for the tests' comparison).
original_raw_data_repr = hyperframe.frame._raw_data_repr
#: hpack's own module logger, kept to restore it.
original_hpack_log = hpack.hpack.log


class _DroppedDebug:
    """What hpack's module ``log`` is used for (``debug`` only), doing nothing."""

    def debug(self, *args: Any, **kwargs: Any) -> None:
        """Dropped: see the module docstring."""


_DROPPED = _DroppedDebug()

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
    """Make every frame's ``repr`` and every header cheap in this process (idempotent)."""
    hyperframe.frame._raw_data_repr = raw_data_repr
    hpack.hpack.log = _DROPPED  # type: ignore[assignment]


def restore() -> None:
    """Put hyperframe's function and hpack's logger back."""
    hyperframe.frame._raw_data_repr = original_raw_data_repr
    hpack.hpack.log = original_hpack_log


def applied() -> bool:
    """Whether :func:`apply` is in effect."""
    return hyperframe.frame._raw_data_repr is raw_data_repr and hpack.hpack.log is _DROPPED
