"""Refuse to run on a hypercorn whose internals we have not tested.

hypercorn has no extension points for what ``hypercorn-pq`` does, so the binding wraps four
constructors (:mod:`.hooks`), swaps two module globals of ``hypercorn.__main__`` for one call
(:mod:`.cli`), replaces the event handling of each HTTP/3 connection (:mod:`.h3_streams`) and
resets unfinished HTTP/2 streams (:mod:`.h2_streams`). All of that leans on private and
undocumented names of hypercorn that can change in any release, and a change would show up as a
crashed listener or a hang, not at start-up. So at import the version must be in the tested
range and every name in :data:`REQUIRED_INTERNALS` must exist (the same check as the aioquic
binding's, :mod:`pq_quic_plugin.aioquic_binding.internals`). ``PQ_QUIC_SKIP_VERSION_CHECK=1``
skips it, for people trying a new release.

The binding reads no private aioquic name itself: those go through
:mod:`pq_quic_plugin.aioquic_binding.facade` and ``flow_control``, checked by that binding.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata

import hypercorn.__main__ as hypercorn_main
from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.asyncio.worker_context import WorkerContext as AsyncioWorkerContext
from hypercorn.config import Config
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer
from hypercorn.protocol.h3 import H3Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.quic import QuicProtocol

from ..aioquic_binding.internals import Internal, report
from ..aioquic_binding.version import SKIP_ENV, parse_version

__all__ = [
    "REQUIRED_INTERNALS",
    "SUPPORTED",
    "UnsupportedHypercornVersion",
    "check_hypercorn_version",
]

#: The hypercorn releases this binding was tested against: [minimum, maximum).
SUPPORTED = ((0, 18), (0, 19))

_CLI = "hypercorn_binding/cli.py"
_HOOKS = "hypercorn_binding/hooks.py"
_H3 = "hypercorn_binding/h3_streams.py"
_H2 = "hypercorn_binding/h2_streams.py"


def _trio_internals() -> tuple[Internal, ...]:
    """The trio worker's side of the same facts; only where trio (an optional extra) exists."""
    if importlib.util.find_spec("trio") is None:
        return ()
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer
    from hypercorn.trio.worker_context import WorkerContext as TrioWorkerContext

    return (
        Internal(TrioTCPServer, "protocol_send", _HOOKS),
        Internal(TrioTCPServer, "stream", _HOOKS, instance=True),
        Internal(TrioWorkerContext, "terminated", _H3, instance=True),
        Internal(TrioWorkerContext, "sleep", _H3),
    )


#: Every hypercorn name the binding relies on that hypercorn does not document, by user.
REQUIRED_INTERNALS: tuple[Internal, ...] = (
    # cli.py runs hypercorn's own main() with its `argparse` and `run` globals swapped.
    Internal(hypercorn_main, "main", _CLI, params=("sys_args",)),
    Internal(hypercorn_main, "argparse", _CLI),
    Internal(hypercorn_main, "run", _CLI),
    # hooks.py wraps four constructors and reads what they set.
    Internal(QuicProtocol, "__init__", _HOOKS),
    Internal(QuicProtocol, "config", _HOOKS, instance=True),
    Internal(QuicProtocol, "quic_config", _HOOKS, instance=True),
    Internal(QuicProtocol, "server", _HOOKS, instance=True),
    Internal(H3Protocol, "__init__", _HOOKS, params=("self", "app")),
    Internal(H3Protocol, "app", _HOOKS, instance=True),
    Internal(H2Protocol, "__init__", _HOOKS),
    # ProtocolWrapper's `send` is taken by position: args[6] after (app, config).
    Internal(
        ProtocolWrapper,
        "__init__",
        _HOOKS,
        params=(
            "self",
            "app",
            "config",
            "context",
            "task_group",
            "state",
            "ssl",
            "client",
            "server",
            "send",
        ),
    ),
    # `send` is the TCP server's bound protocol_send; its TLS object gives the TCP scope facts.
    Internal(AsyncioTCPServer, "protocol_send", _HOOKS),
    Internal(AsyncioTCPServer, "writer", _HOOKS, instance=True),
    # The app's `send` is the HTTPStream's bound app_send, which names the stream.
    Internal(HTTPStream, "app_send", _HOOKS),
    Internal(HTTPStream, "stream_id", _HOOKS, instance=True),
    # h3_streams.py replaces H3Protocol.handle per connection and wraps stream_send.
    Internal(H3Protocol, "handle", _H3),
    Internal(H3Protocol, "stream_send", _H3),
    Internal(H3Protocol, "_create_stream", _H3),
    Internal(H3Protocol, "send", _H3, instance=True),
    Internal(H3Protocol, "connection", _H3, instance=True),
    Internal(H3Protocol, "streams", _H3, instance=True),
    Internal(H3Protocol, "config", _H3, instance=True),
    Internal(H3Protocol, "context", _H3, instance=True),
    Internal(Config, "max_app_queue_size", _H3),
    Internal(AsyncioWorkerContext, "terminated", _H3, instance=True),
    Internal(AsyncioWorkerContext, "sleep", _H3),
    # h2_streams.py wraps H2Protocol.stream_send and resets what the app left unfinished.
    Internal(H2Protocol, "stream_send", _H2),
    Internal(H2Protocol, "_flush", _H2),
    Internal(H2Protocol, "stream_buffers", _H2, instance=True),
    Internal(H2Protocol, "streams", _H2, instance=True),
    Internal(H2Protocol, "connection", _H2, instance=True),
    Internal(H2Protocol, "priority", _H2, instance=True),
    Internal(StreamBuffer, "_complete", _H2, instance=True),
    Internal(StreamBuffer, "close", _H2),
    *_trio_internals(),
)


class UnsupportedHypercornVersion(ImportError):
    """The installed hypercorn is outside the tested range or lacks an internal we use."""


def _install_hint(wanted: str) -> str:
    return (
        f"Install a supported release: pip install 'hypercorn{wanted}' "
        f"(or set {SKIP_ENV}=1 to try anyway, at your own risk)."
    )


def check_hypercorn_version(
    version: str | None = None, internals: tuple[Internal, ...] = REQUIRED_INTERNALS
) -> None:
    """Raise :class:`UnsupportedHypercornVersion` unless hypercorn is in :data:`SUPPORTED`
    and has every name in ``internals``."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    found = version if version is not None else metadata.version("hypercorn")
    low, high = SUPPORTED
    wanted = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    if not (low <= parse_version(found)[:2] < high):
        raise UnsupportedHypercornVersion(
            f"hypercorn-pq supports hypercorn {wanted}, found hypercorn {found}. It relies on "
            "private internals of hypercorn that change between releases. " + _install_hint(wanted)
        )
    missing = report(internals)
    if missing:
        raise UnsupportedHypercornVersion(
            f"hypercorn {found} lacks internals that pq-quic-plugin's hypercorn binding uses:\n  "
            + "\n  ".join(missing)
            + "\nThis hypercorn differs from the releases the binding was tested with. "
            + _install_hint(wanted)
        )
