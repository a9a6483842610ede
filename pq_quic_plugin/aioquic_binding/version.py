"""Refuse to run on an aioquic whose internals we have not tested.

The binding replaces three private methods of ``aioquic.tls.Context`` (and reads the private
state they share with the rest of aioquic's TLS engine), wraps ``QuicConnection._initialize``,
paces receive windows through ``QuicConnection._write_stream_limits``, reads send state that
aioquic keeps in private attributes (:mod:`.facade`) and watches the handshake state for a
deadline (:mod:`.handshake_deadline`). A different aioquic release can change any of them
silently, which for key exchange means a broken or, worse, a quietly classical
handshake. So at import the version must be in the tested range and every name in
:data:`REQUIRED_INTERNALS` must exist (see :mod:`.internals`); failing with a clear message is
the safe default. ``PQ_QUIC_SKIP_VERSION_CHECK=1`` skips both checks, for people trying a new
release.

:data:`REQUIRED_INTERNALS` is the one list of aioquic's private (and undocumented) names that
``aioquic_binding/`` uses; ``tests/test_binding_internals.py`` fails when code here uses a
private name that is not on it.
"""

from __future__ import annotations

import aioquic
from aioquic import tls
from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3Connection
from aioquic.quic.connection import QuicConnection
from aioquic.quic.recovery import QuicPacketRecovery
from aioquic.quic.stream import QuicStream, QuicStreamReceiver, QuicStreamSender

from ..host_internals import SKIP_ENV, Internal, check_release, names_of, parse_version

__all__ = [
    "REQUIRED_INTERNALS",
    "SKIP_ENV",
    "SUPPORTED",
    "UnsupportedAioquicVersion",
    "check_aioquic_version",
    "parse_version",
]

#: The aioquic releases this binding was tested against: [minimum, maximum).
SUPPORTED = ((1, 7), (1, 8))

_FACADE = "aioquic_binding/facade.py"
_FLOW = "aioquic_binding/flow_control.py"
_H3 = "aioquic_binding/h3_stream_errors.py"

#: Every aioquic name the binding relies on that aioquic does not document, by user.
REQUIRED_INTERNALS: tuple[Internal, ...] = (
    # PostQuantumContext overrides three methods of tls.Context, calls four more, and reads or
    # writes the configuration and handshake state they share with the rest of the engine.
    *names_of(
        tls.Context,
        "aioquic_binding/client_side.py",
        "_client_send_hello _client_handle_hello",
        instance="_key_schedule_proxy _key_schedule_psk _server_name",
    ),
    *names_of(
        tls.Context,
        "aioquic_binding/server_side.py",
        "_server_handle_hello _server_expect_finished",
        instance="_enc_key _next_dec_key _psk_key_exchange_mode _request_client_certificate",
    ),
    *names_of(
        tls.Context,
        "aioquic_binding/client_side.py and server_side.py",
        "_set_state _setup_traffic_protection",
        instance="_alpn_protocols _cipher_suites _legacy_compression_methods"
        " _psk_key_exchange_modes _session_resumed _signature_algorithms _supported_versions",
    ),
    *names_of(tls.Context, "aioquic_binding/context_base.py", instance="_is_client"),
    # authentication.py: ML-DSA in aioquic's CertificateVerify check, which it extends.
    Internal(
        tls.Context,
        "_check_certificate_verify_signature",
        "aioquic_binding/authentication.py",
        params=("self", "verify"),
    ),
    *names_of(
        tls.Context,
        "aioquic_binding/authentication.py",
        instance="_peer_certificate _peer_certificate_chain _verify_mode",
    ),
    *names_of(tls.Context, "aioquic_binding/context.py", instance="_supported_groups"),
    # hook.py: aioquic builds its tls.Context in _initialize and offers no factory.
    *names_of(
        QuicConnection,
        "aioquic_binding/hook.py",
        "_initialize",
        instance="tls _configuration _is_client _handshake_complete",
    ),
    # connection_guard.py: a connection whose entry point raised is closed the way aioquic
    # closes one (close event, closing period, terminated state), its peer named in the log.
    *names_of(
        QuicConnection,
        "aioquic_binding/connection_guard.py",
        "_close_begin _set_state",
        instance="_close_event _close_pending _close_at _events _state _network_paths _is_client",
    ),
    # handshake_deadline.py: a server handshake not complete in time is closed; it stands in
    # for get_timer/handle_timer until the handshake completes or the connection is ending.
    *names_of(
        QuicConnection,
        "aioquic_binding/handshake_deadline.py",
        instance="_handshake_complete _state _close_event",
    ),
    # facade.py: send state, peer address, bound port and the handshake's certificates, which
    # aioquic keeps private.
    *names_of(QuicConnectionProtocol, _FACADE, instance="_quic"),
    *names_of(H3Connection, _FACADE, instance="_quic"),
    *names_of(QuicServer, _FACADE, instance="_transport"),
    *names_of(
        QuicConnection,
        _FACADE,
        instance="_streams _state _network_paths tls _remote_max_streams_bidi"
        " _local_max_streams_bidi",
    ),
    *names_of(tls.Context, _FACADE, instance="_peer_certificate"),
    *names_of(QuicStreamSender, _FACADE, instance="_buffer _buffer_fin _reset_error_code"),
    # flow_control.py: wraps the per-connection limit writer and steers its doubling rule.
    Internal(
        QuicConnection, "_write_stream_limits", _FLOW, params=("self", "builder", "space", "stream")
    ),
    *names_of(QuicStream, _FLOW, instance="max_stream_data_local max_stream_data_local_sent"),
    *names_of(QuicStreamReceiver, _FLOW, instance="highest_offset _buffer_start _stop_error_code"),
    # ... and starts streams with a small window (the initial limits the transport parameters
    # announce), grown by the measured round-trip time.
    *names_of(
        QuicConnection,
        _FLOW,
        instance="_local_max_stream_data_bidi_local _local_max_stream_data_bidi_remote _loss",
    ),
    *names_of(QuicPacketRecovery, _FLOW, instance="_rtt_smoothed _rtt_initialized"),
    # send_backpressure.py: a writer waits while its bytes are beyond the peer's stream window.
    *names_of(QuicConnection, "aioquic_binding/send_backpressure.py", instance="_streams"),
    *names_of(
        QuicStreamSender, "aioquic_binding/send_backpressure.py", instance="_buffer _buffer_stop"
    ),
    # h3_stream_errors.py: a malformed response resets its stream, not the connection.
    Internal(H3Connection, "_check_content_length", _H3, params=("self", "stream")),
    Internal(
        H3Connection,
        "_handle_request_or_push_frame",
        _H3,
        params=("self", "frame_type", "frame_data", "stream", "stream_ended"),
    ),
    Internal(
        H3Connection,
        "_receive_request_or_push_data",
        _H3,
        params=("self", "stream", "data", "stream_ended"),
    ),
)


class UnsupportedAioquicVersion(ImportError):
    """The installed aioquic is outside the tested range or lacks an internal we use."""


def check_aioquic_version(
    version: str | None = None, internals: tuple[Internal, ...] = REQUIRED_INTERNALS
) -> None:
    """Raise :class:`UnsupportedAioquicVersion` unless aioquic is in :data:`SUPPORTED` and has
    every name in ``internals``."""
    check_release(
        "aioquic",
        lambda: aioquic.__version__,
        SUPPORTED,
        internals,
        user="pq-quic-plugin's binding",
        error=UnsupportedAioquicVersion,
        version=version,
    )
