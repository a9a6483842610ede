"""Refuse to run on an ``h2`` or ``hyperframe`` whose internals we have not tested.

h2 4.4 formats ``repr(frame)`` of every frame it receives for a trace log
(``H2Connection._receive_frame``: ``logger.trace("Received frame: %s", repr(frame))``), and
evaluates that argument even when the logger is h2's silent default. hyperframe's
``repr`` of a DATA frame hex-encodes the whole payload (``_raw_data_repr``) and then keeps 20
characters of it: a quarter to a third of h2's receive time on a bulk transfer. Neither library
has a setting for this, so :mod:`.facade` replaces that one private module function with one
that hex-encodes only the bytes it shows; the text is the same. As for the other bindings
(:mod:`pq_quic_plugin.host_internals`), the releases must be in the tested ranges and every
name in :data:`REQUIRED_INTERNALS` must exist, checked at import; ``PQ_QUIC_SKIP_VERSION_CHECK=1``
skips that.
"""

from __future__ import annotations

import h2.connection
import h2.stream
import hpack.hpack
import hyperframe.frame

from ..host_internals import SKIP_ENV, Internal, Release, check_releases

__all__ = [
    "H2_SUPPORTED",
    "HYPERFRAME_SUPPORTED",
    "REQUIRED_INTERNALS",
    "SKIP_ENV",
    "UnsupportedH2Version",
    "check_h2_binding",
]

#: The h2 releases this binding was tested against: [minimum, maximum).
H2_SUPPORTED = ((4, 1), (4, 5))
#: The hyperframe releases (h2 4.x requires hyperframe 6.x).
HYPERFRAME_SUPPORTED = ((6, 0), (6, 2))

_FACADE = "h2_binding/facade.py"
_STREAM_LENGTH = "h2_binding/stream_length.py"

#: Every private name of h2 and hyperframe the binding relies on.
REQUIRED_INTERNALS: tuple[Internal, ...] = (
    # facade.py replaces the module function every frame's repr calls for its payload.
    Internal(hyperframe.frame, "_raw_data_repr", _FACADE, params=("data",)),
    # The one caller that matters: facade.py is worth having only while h2 formats every
    # received frame there; not called or wrapped, only checked so a change is noticed.
    Internal(h2.connection.H2Connection, "_receive_frame", _FACADE, params=("self", "frame")),
    # facade.py replaces hpack's module logger (hpack's release is h2's to choose: h2 4.x
    # requires hpack 4.x, so a missing name is reported against h2).
    Internal(hpack.hpack, "log", _FACADE),
    # stream_length.py: the client connection's streams are a subclass whose content-length
    # reading does not raise (the stream's ``_expected_content_length`` set to None instead).
    Internal(
        h2.connection.H2Connection,
        "_begin_new_stream",
        _STREAM_LENGTH,
        params=("self", "stream_id", "allowed_ids"),
    ),
    Internal(
        h2.stream.H2Stream, "_initialize_content_length", _STREAM_LENGTH, params=("self", "headers")
    ),
    Internal(h2.stream.H2Stream, "_expected_content_length", _STREAM_LENGTH, instance=True),
)


class UnsupportedH2Version(ImportError):
    """h2 or hyperframe is outside the tested range or lacks an internal we use."""


def check_h2_binding(
    h2_version: str | None = None,
    hyperframe_version: str | None = None,
    internals: tuple[Internal, ...] = REQUIRED_INTERNALS,
) -> None:
    """Raise :class:`UnsupportedH2Version` unless h2 and hyperframe are in their tested ranges
    and every name in ``internals`` exists (a hyperframe name is blamed on hyperframe)."""
    check_releases(
        Release("hyperframe", HYPERFRAME_SUPPORTED, hyperframe_version),
        Release("h2", H2_SUPPORTED, h2_version),
        internals,
        lambda item: item.owner is hyperframe.frame,
        user="pq-quic-plugin's h2 binding",
        error=UnsupportedH2Version,
    )
