"""Refuse to run on an aioquic whose internals we have not tested.

The binding replaces three private methods of ``aioquic.tls.Context`` (and reads the private
state they share with the rest of aioquic's TLS engine), wraps ``QuicConnection._initialize``,
paces receive windows through ``QuicConnection._write_stream_limits`` and reads send state that
aioquic keeps in private attributes (:mod:`.facade`). A different aioquic release can change any
of them silently, which for key exchange means a broken or, worse, a quietly classical
handshake. So at import the version must be in the tested range and every name in
:data:`REQUIRED_INTERNALS` must exist (see :mod:`.internals`); failing with a clear message is
the safe default. ``PQ_QUIC_SKIP_VERSION_CHECK=1`` skips both checks, for people trying a new
release.

:data:`REQUIRED_INTERNALS` is the one list of aioquic's private (and undocumented) names that
``aioquic_binding/`` uses; ``tests/test_binding_internals.py`` fails when code here uses a
private name that is not on it.
"""

from __future__ import annotations

import os

import aioquic
from aioquic import tls
from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3Connection
from aioquic.quic.connection import QuicConnection
from aioquic.quic.stream import QuicStream, QuicStreamReceiver, QuicStreamSender

from .internals import Internal, report

__all__ = [
    "REQUIRED_INTERNALS",
    "SUPPORTED",
    "UnsupportedAioquicVersion",
    "check_aioquic_version",
    "parse_version",
]

#: The aioquic releases this binding was tested against: [minimum, maximum).
SUPPORTED = ((1, 7), (1, 8))
SKIP_ENV = "PQ_QUIC_SKIP_VERSION_CHECK"


_CLIENT = "aioquic_binding/client_side.py"
_SERVER = "aioquic_binding/server_side.py"
_BOTH = "aioquic_binding/client_side.py and server_side.py"


def _context(name: str, used_by: str, instance: bool = False) -> Internal:
    return Internal(tls.Context, name, used_by, instance=instance)


#: Every aioquic name the binding relies on that aioquic does not document, by user.
REQUIRED_INTERNALS: tuple[Internal, ...] = (
    # PostQuantumContext overrides three methods of tls.Context, calls four more, and reads or
    # writes the configuration and handshake state they share with the rest of the engine.
    _context("_client_send_hello", _CLIENT),
    _context("_client_handle_hello", _CLIENT),
    _context("_server_handle_hello", _SERVER),
    _context("_server_expect_finished", _SERVER),
    _context("_set_state", _BOTH),
    _context("_setup_traffic_protection", _BOTH),
    _context("_signature_algorithms_for_private_key", _SERVER),
    _context("_alpn_protocols", _BOTH, instance=True),
    _context("_cipher_suites", _BOTH, instance=True),
    _context("_enc_key", _SERVER, instance=True),
    _context("_is_client", "aioquic_binding/context_base.py", instance=True),
    _context("_key_schedule_proxy", _CLIENT, instance=True),
    _context("_key_schedule_psk", _CLIENT, instance=True),
    _context("_legacy_compression_methods", _BOTH, instance=True),
    _context("_next_dec_key", _SERVER, instance=True),
    _context("_psk_key_exchange_mode", _SERVER, instance=True),
    _context("_psk_key_exchange_modes", _BOTH, instance=True),
    _context("_request_client_certificate", _SERVER, instance=True),
    _context("_server_name", _CLIENT, instance=True),
    _context("_session_resumed", _BOTH, instance=True),
    _context("_signature_algorithms", _BOTH, instance=True),
    _context("_supported_groups", "aioquic_binding/context.py", instance=True),
    _context("_supported_versions", _BOTH, instance=True),
    # hook.py: aioquic builds its tls.Context in _initialize and offers no factory.
    Internal(QuicConnection, "_initialize", "aioquic_binding/hook.py"),
    Internal(QuicConnection, "tls", "aioquic_binding/hook.py", instance=True),
    Internal(QuicConnection, "_configuration", "aioquic_binding/hook.py", instance=True),
    Internal(QuicConnection, "_is_client", "aioquic_binding/hook.py", instance=True),
    Internal(QuicConnection, "_handshake_complete", "aioquic_binding/hook.py", instance=True),
    # facade.py: send state, peer address and bound port, which aioquic keeps private.
    Internal(QuicConnectionProtocol, "_quic", "aioquic_binding/facade.py", instance=True),
    Internal(H3Connection, "_quic", "aioquic_binding/facade.py", instance=True),
    Internal(QuicServer, "_transport", "aioquic_binding/facade.py", instance=True),
    Internal(QuicConnection, "_streams", "aioquic_binding/facade.py", instance=True),
    Internal(QuicConnection, "_state", "aioquic_binding/facade.py", instance=True),
    Internal(QuicConnection, "_network_paths", "aioquic_binding/facade.py", instance=True),
    Internal(QuicStreamSender, "_buffer", "aioquic_binding/facade.py", instance=True),
    Internal(QuicStreamSender, "_buffer_fin", "aioquic_binding/facade.py", instance=True),
    Internal(QuicStreamSender, "_reset_error_code", "aioquic_binding/facade.py", instance=True),
    # flow_control.py: wraps the per-connection limit writer and steers its doubling rule.
    Internal(
        QuicConnection,
        "_write_stream_limits",
        "aioquic_binding/flow_control.py",
        params=("self", "builder", "space", "stream"),
    ),
    Internal(QuicStream, "max_stream_data_local", "aioquic_binding/flow_control.py", instance=True),
    Internal(
        QuicStreamReceiver, "highest_offset", "aioquic_binding/flow_control.py", instance=True
    ),
    Internal(QuicStreamReceiver, "_buffer_start", "aioquic_binding/flow_control.py", instance=True),
    Internal(
        QuicStreamReceiver, "_stop_error_code", "aioquic_binding/flow_control.py", instance=True
    ),
)


class UnsupportedAioquicVersion(ImportError):
    """The installed aioquic is outside the tested range or lacks an internal we use."""


def parse_version(version: str) -> tuple[int, ...]:
    """``"1.7.2"`` -> ``(1, 7, 2)``; suffixes such as ``rc1`` or ``.dev0`` are ignored."""
    parts = []
    for piece in version.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    return tuple(parts)


def _install_hint(wanted: str) -> str:
    return (
        f"Install a supported release: pip install 'aioquic{wanted}' "
        f"(or set {SKIP_ENV}=1 to try anyway, at your own risk)."
    )


def check_aioquic_version(
    version: str | None = None, internals: tuple[Internal, ...] = REQUIRED_INTERNALS
) -> None:
    """Raise :class:`UnsupportedAioquicVersion` unless aioquic is in :data:`SUPPORTED` and has
    every name in ``internals``."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    found = version if version is not None else aioquic.__version__
    low, high = SUPPORTED
    wanted = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    if not (low <= parse_version(found)[:2] < high):
        raise UnsupportedAioquicVersion(
            f"pq-quic-plugin supports aioquic {wanted}, found aioquic {found}. The binding "
            "relies on private internals of aioquic that change between releases. "
            + _install_hint(wanted)
        )
    missing = report(internals)
    if missing:
        raise UnsupportedAioquicVersion(
            f"aioquic {found} lacks internals that pq-quic-plugin's binding uses:\n  "
            + "\n  ".join(missing)
            + "\nThis aioquic differs from the releases the binding was tested with. "
            + _install_hint(wanted)
        )
