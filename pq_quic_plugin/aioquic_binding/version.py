"""Refuse to run on an aioquic whose private TLS internals we have not tested.

The binding overrides three private methods of ``aioquic.tls.Context`` and wraps
``QuicConnection._initialize``; a different aioquic release can change them silently, which for
key exchange means a broken or, worse, a quietly classical handshake. Failing at import with a
clear message is the safe default; ``PQ_QUIC_SKIP_VERSION_CHECK=1`` is the escape hatch for
people testing a new release.
"""

from __future__ import annotations

import os

import aioquic
from aioquic import tls
from aioquic.quic.connection import QuicConnection

#: The aioquic releases this binding was tested against: [minimum, maximum).
SUPPORTED = ((1, 7), (1, 8))
_REQUIRED_INTERNALS = (
    (tls.Context, "_client_send_hello"),
    (tls.Context, "_client_handle_hello"),
    (tls.Context, "_server_handle_hello"),
    (tls.Context, "_setup_traffic_protection"),
    (QuicConnection, "_initialize"),
    (QuicConnection, "_write_stream_limits"),  # pq_quic_plugin.aioquic_binding.flow_control
)


class UnsupportedAioquicVersion(ImportError):
    pass


def _parse(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_aioquic_version(version: str | None = None) -> None:
    """Raise :class:`UnsupportedAioquicVersion` unless aioquic is in :data:`SUPPORTED`."""
    if os.environ.get("PQ_QUIC_SKIP_VERSION_CHECK") == "1":
        return
    found = version if version is not None else aioquic.__version__
    low, high = SUPPORTED
    wanted = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    if not (low <= _parse(found)[:2] < high):
        raise UnsupportedAioquicVersion(
            f"pq-quic-plugin supports aioquic {wanted}, found aioquic {found}. The binding "
            "relies on private internals of aioquic.tls that change between releases. "
            f"Install a supported release: pip install 'aioquic{wanted}' "
            "(or set PQ_QUIC_SKIP_VERSION_CHECK=1 to try anyway, at your own risk)."
        )
    missing = [
        f"{owner.__name__}.{name}"
        for owner, name in _REQUIRED_INTERNALS
        if not hasattr(owner, name)
    ]
    if missing:
        raise UnsupportedAioquicVersion(
            f"aioquic {found} lacks internals the binding needs: {', '.join(missing)}"
        )
