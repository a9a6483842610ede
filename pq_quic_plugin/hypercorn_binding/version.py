"""Refuse to run on a hypercorn whose internals we have not tested.

hypercorn has no extension points for what ``hypercorn-pq`` does, so the binding wraps four
constructors (:mod:`.hooks`), swaps two module globals of ``hypercorn.__main__`` for one call
(:mod:`.cli`), replaces the event handling of each HTTP/3 connection (:mod:`.h3_streams`),
resets unfinished HTTP/2 streams (:mod:`.h2_streams`) and overrides ``Config.create_ssl_context``
with the TLS settings it reads (:mod:`.config`, :mod:`.tcp`). All of that leans on private and
undocumented names of hypercorn that can change in any release, and a change would show up as a
crashed listener or a hang, not at start-up. So at import the version must be in the tested
range and every name in :data:`REQUIRED_INTERNALS` must exist (the same check as the aioquic
binding's, :mod:`pq_quic_plugin.host_internals`). ``PQ_QUIC_SKIP_VERSION_CHECK=1``
skips it, for people trying a new release.

The binding reads no private aioquic name itself: those go through
:mod:`pq_quic_plugin.aioquic_binding.facade` and ``flow_control``, checked by that binding.
"""

from __future__ import annotations

import functools
import importlib.util
from importlib import metadata

import hypercorn.__main__ as hypercorn_main
import hypercorn.protocol.h2 as hypercorn_h2
from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.asyncio.worker_context import AsyncioSingleTask
from hypercorn.asyncio.worker_context import WorkerContext as AsyncioWorkerContext
from hypercorn.config import Config
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer
from hypercorn.protocol.h3 import H3Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.quic import QuicProtocol
from hypercorn.protocol.quic import _Connection as _QuicConnectionEntry

from ..host_internals import Internal, check_release, names_of

__all__ = [
    "REQUIRED_INTERNALS",
    "SUPPORTED",
    "UnsupportedHypercornVersion",
    "check_hypercorn_version",
]

#: The hypercorn releases this binding was tested against: [minimum, maximum).
SUPPORTED = ((0, 18), (0, 19))

#: The binding modules that use the names below, as the failure message names them.
_CLI, _HOOKS, _H3, _H2, _CONFIG, _TCP, _GUARD, _SHUTDOWN = (
    f"hypercorn_binding/{module}.py"
    for module in (
        "cli",
        "hooks",
        "h3_streams",
        "h2_streams",
        "config",
        "tcp",
        "quic_guard",
        "quic_shutdown",
    )
)


def _trio_internals() -> tuple[Internal, ...]:
    """The trio worker's side of the same facts; only where trio (an optional extra) exists."""
    if importlib.util.find_spec("trio") is None:
        return ()
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer
    from hypercorn.trio.worker_context import TrioSingleTask
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

    return (
        *names_of(TrioTCPServer, _HOOKS, "protocol_send", instance="stream"),
        *names_of(TrioWorkerContext, _H3, "sleep", instance="terminated"),
        *names_of(TrioSingleTask, _GUARD, instance="_handle"),
    )


#: Every hypercorn name the binding relies on that hypercorn does not document, by user.
REQUIRED_INTERNALS: tuple[Internal, ...] = (
    # cli.py runs hypercorn's own main() with its `argparse` and `run` globals swapped.
    Internal(hypercorn_main, "main", _CLI, params=("sys_args",)),
    *names_of(hypercorn_main, _CLI, "argparse run"),
    # hooks.py wraps four constructors and reads what they set.
    *names_of(QuicProtocol, _HOOKS, "__init__", instance="config quic_config server"),
    Internal(H3Protocol, "__init__", _HOOKS, params=("self", "app")),
    *names_of(H3Protocol, _HOOKS, instance="app"),
    *names_of(H2Protocol, _HOOKS, "__init__"),
    # ProtocolWrapper's `send` is taken by position: args[6] after (app, config).
    Internal(
        ProtocolWrapper,
        "__init__",
        _HOOKS,
        params=tuple("self app config context task_group state ssl client server send".split()),
    ),
    # `send` is the TCP server's bound protocol_send; its TLS object gives the TCP scope facts.
    *names_of(AsyncioTCPServer, _HOOKS, "protocol_send", instance="writer"),
    # The app's `send` is the HTTPStream's bound app_send, which names the stream.
    *names_of(HTTPStream, _HOOKS, "app_send", instance="stream_id"),
    # quic_guard.py wraps the listener's datagram handler and timer, and drops a connection
    # from hypercorn's table (each entry a private _Connection) when one of them raised.
    *names_of(
        QuicProtocol, _GUARD, "handle _handle_timer send_all", instance="connections send context"
    ),
    *names_of(_QuicConnectionEntry, _GUARD, instance="cids quic task"),
    # ... and lets a fired timer's task finish instead of cancelling itself (trio) when it arms
    # the next timer: the connection's SingleTask forgets it.
    *names_of(AsyncioSingleTask, _GUARD, instance="_handle"),
    # quic_shutdown.py wakes the listener's loop at shutdown and closes idle connections, then
    # re-arms each one's timer as QuicProtocol.handle does.
    *names_of(
        QuicProtocol,
        _SHUTDOWN,
        "_handle_timer idle send_all",
        instance="connections send context server task_group config",
    ),
    *names_of(_QuicConnectionEntry, _SHUTDOWN, instance="h3 quic task"),
    *names_of(H3Protocol, _SHUTDOWN, instance="streams"),
    # h3_streams.py replaces H3Protocol.handle per connection and wraps stream_send.
    *names_of(
        H3Protocol,
        _H3,
        "handle stream_send _create_stream",
        instance="send connection streams config context",
    ),
    *names_of(Config, _H3, "max_app_queue_size"),
    *names_of(AsyncioWorkerContext, _H3, "sleep", instance="terminated"),
    # h2_streams.py wraps H2Protocol.stream_send and resets what the app left unfinished; it
    # replaces each stream buffer's pop (which the send loop calls) with a watermark version,
    # and turns off the request limit's GOAWAY on its copy of the config.
    *names_of(
        H2Protocol,
        _H2,
        "stream_send _flush",
        instance="stream_buffers streams connection priority config",
    ),
    *names_of(Config, _H2, "keep_alive_max_requests"),
    *names_of(StreamBuffer, _H2, "close pop", instance="_complete buffer _paused _is_empty"),
    *names_of(hypercorn_h2, _H2, "BUFFER_LOW_WATER"),
    # config.py overrides the one method both workers take their TCP TLS from; tcp.py carries
    # over the settings hypercorn's own version of it applies.
    Internal(Config, "create_ssl_context", _CONFIG, params=("self",)),
    *names_of(Config, _CONFIG, "ssl_enabled"),
    *names_of(
        Config,
        _TCP,
        "certfile keyfile keyfile_password ca_certs alpn_protocols ciphers verify_mode "
        "verify_flags",
    ),
    *_trio_internals(),
)


class UnsupportedHypercornVersion(ImportError):
    """The installed hypercorn is outside the tested range or lacks an internal we use."""


def check_hypercorn_version(
    version: str | None = None, internals: tuple[Internal, ...] = REQUIRED_INTERNALS
) -> None:
    """Raise :class:`UnsupportedHypercornVersion` unless hypercorn is in :data:`SUPPORTED`
    and has every name in ``internals``."""
    check_release(
        "hypercorn",
        functools.partial(metadata.version, "hypercorn"),
        SUPPORTED,
        internals,
        user="hypercorn-pq (pq-quic-plugin's hypercorn binding)",
        error=UnsupportedHypercornVersion,
        version=version,
    )
