"""The hypercorn side: make its QUIC listener post-quantum and put TLS facts in every scope.

Hypercorn has no extension points for this, so three constructors are wrapped, once per process,
when this module is imported (the spawned workers import it when they unpickle a
:class:`~.config.PostQuantumConfig`, which is why the hooks live at import time):

* ``QuicProtocol.__init__``: after hypercorn built its one ``QuicConfiguration``, apply the
  config's ``pq`` policy (and ``pq_handshake_timeout``) with :func:`pq_quic_plugin.configure`,
  and guard the listener's datagram loop so that no one connection can end it
  (:mod:`.quic_guard`).
* ``H3Protocol.__init__``: wrap the app of each HTTP/3 connection so every request's scope gets
  ``extensions["tls"]`` and ``extensions["pq_quic"]`` from that connection's handshake (the
  group is read per request: the H3 protocol exists before the key exchange finishes), and give
  the connection the guarded event loop and flow control of :mod:`.h3_streams`.
* ``H2Protocol.__init__``: reset HTTP/2 responses an app leaves unfinished (:mod:`.h2_streams`).
* ``ProtocolWrapper.__init__``: the same scope facts for the TCP listener, from the
  connection's TLS object (the post-quantum layer's, see :mod:`.tcp`, or Python's ``ssl`` with
  ``pq`` off). Both workers create the wrapper after the TLS handshake, so they are read once.

A config without ``pq`` (or with ``pq = "off"``) leaves both listeners stock; the scope facts
are still added, since they only describe. The TCP listener's TLS itself is not a hook: it is
:meth:`~.config.PostQuantumConfig.create_ssl_context`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h3 import H3Protocol
from hypercorn.protocol.quic import QuicProtocol

from ..aioquic_binding import configure, settings_of
from ..aioquic_binding.facade import quic_of
from ..aioquic_binding.handshake_deadline import DEFAULT_HANDSHAKE_TIMEOUT as DEFAULT_TIMEOUT
from ..policy import Policy
from .auth import configure_quic_listener
from .h2_streams import harden_h2
from .h3_streams import consumer, harden
from .quic_guard import guard_listener
from .tcp import limit_connection
from .tls_facts import add_to_scope, quic_facts, tcp_facts

logger = logging.getLogger("pq_quic_plugin.hypercorn")
_MARK = "__pq_quic_wrapped__"


class _ScopeFactsApp:
    """An hypercorn AppWrapper that adds connection facts to each scope before the app runs.

    Under ``pq = "require"`` it also puts :class:`~pq_quic_plugin.asgi.PostQuantumMiddleware`
    in front of the application, so nothing is ever served over a classical connection, even by
    an app that does not use the middleware itself. Classical TLS handshakes (QUIC or TCP) are
    refused before any request exists; what it still refuses is a plaintext ``insecure_bind``.
    """

    def __init__(
        self,
        app: Any,
        facts: Callable[[], tuple[dict | None, dict]],
        config: Any,
        consumed: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self._facts = facts
        self._require = Policy.parse(getattr(config, "pq", None) or "off") is Policy.REQUIRE
        self._trusted = getattr(config, "pq_trust_hops_from", None) or ("127.0.0.1", "::1")
        self._consumed = consumed

    async def __call__(self, scope: dict, receive: Any, send: Any, *args: Any) -> Any:
        if scope.get("type") not in ("http", "websocket"):
            return await self.app(scope, receive, send, *args)
        tls_ext, pq = self._facts()
        add_to_scope(scope, tls_ext, pq)
        if self._consumed is not None and scope["type"] == "http":
            receive = _paced(receive, send, self._consumed)
        if not self._require:
            return await self.app(scope, receive, send, *args)
        from ..asgi.middleware import PostQuantumMiddleware

        async def inner(scope: dict, receive: Any, send: Any) -> Any:
            return await self.app(scope, receive, send, *args)

        return await PostQuantumMiddleware(
            inner, require=True, header=False, trust_hops_from=self._trusted
        )(scope, receive, send)


def _paced(receive: Any, send: Any, consumed: Callable[[int, int], Awaitable[None]]) -> Any:
    """``receive`` that reports each body chunk taken, so the stream's QUIC receive window opens
    at the application's pace (see :mod:`.h3_streams`)."""
    # hypercorn hands the app its HTTPStream's bound app_send: that names the stream.
    stream_id = getattr(getattr(send, "__self__", None), "stream_id", None)
    if stream_id is None:
        return receive

    async def paced_receive() -> Any:
        message = await receive()
        body = message.get("body")
        if body:
            await consumed(stream_id, len(body))
        return message

    return paced_receive


def _wrap(cls: type, wrapper: Callable) -> None:
    original = cls.__init__  # type: ignore[misc]
    if getattr(original, _MARK, False):
        return
    patched = functools.wraps(original)(wrapper(original))
    setattr(patched, _MARK, True)
    cls.__init__ = patched  # type: ignore[misc]


def _quic_protocol_init(original: Callable) -> Callable:
    def __init__(self: QuicProtocol, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        guard_listener(self)  # whatever the policy: hypercorn's own loop is what it protects
        policy = Policy.parse(getattr(self.config, "pq", None) or "off")
        if policy is Policy.OFF:
            logger.info("HTTP/3 listener: post-quantum policy off (stock aioquic key exchange)")
            return
        configure(
            self.quic_config,
            policy,
            groups=getattr(self.config, "pq_groups", None),
            handshake_timeout=getattr(self.config, "pq_handshake_timeout", DEFAULT_TIMEOUT),
        )
        configure_quic_listener(self.quic_config, self.config)  # ML-DSA pair, auth, key log
        settings = settings_of(self.quic_config)
        side = settings.server if settings is not None else None
        described = side.describe() if side is not None else "off"
        logger.info("HTTP/3 listener %s: post-quantum %s", self.server, described)

    return __init__


def _h3_protocol_init(original: Callable) -> Callable:
    def __init__(self: H3Protocol, app: Any, *args: Any, **kwargs: Any) -> None:
        original(self, app, *args, **kwargs)
        quic = quic_of(self.connection)
        harden(self)
        self.app = _ScopeFactsApp(  # type: ignore[assignment]
            app, lambda: quic_facts(quic), self.config, consumer(self)
        )

    return __init__


def _h2_protocol_init(original: Callable) -> Callable:
    def __init__(self: H2Protocol, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        harden_h2(self)

    return __init__


def _protocol_wrapper_init(original: Callable) -> Callable:
    def __init__(self: ProtocolWrapper, app: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        # hypercorn passes its TCPServer's bound ``protocol_send``; the server holds the stream.
        send = kwargs.get("send", args[6] if len(args) > 6 else None)
        server = getattr(send, "__self__", None)
        limit_connection(server, config)  # pq_unsent_limit: an unread response holds little
        ssl_object = _ssl_object_of(server)
        cert_pem = _read_cert(config) if ssl_object is not None else None
        facts = tcp_facts(ssl_object, cert_pem)
        app = _ScopeFactsApp(app, lambda: facts, config)
        original(self, app, config, *args, **kwargs)

    return __init__


def _ssl_object_of(server: Any) -> Any:
    writer = getattr(server, "writer", None)  # asyncio worker
    if writer is not None:
        return writer.get_extra_info("ssl_object")
    stream = getattr(server, "stream", None)  # trio worker: a trio.SSLStream after its handshake
    if stream is not None and type(stream).__name__ == "SSLStream":
        return stream  # forwards cipher(), version() and getpeercert() to its TLS object
    return None


@functools.lru_cache(maxsize=8)
def _cert_pem(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return None


def _read_cert(config: Any) -> str | None:
    path = getattr(config, "certfile", None)
    return _cert_pem(str(path)) if path else None


def install_hooks() -> None:
    """Idempotent: wrap hypercorn's constructors once per process."""
    _wrap(QuicProtocol, _quic_protocol_init)
    _wrap(H3Protocol, _h3_protocol_init)
    _wrap(H2Protocol, _h2_protocol_init)
    _wrap(ProtocolWrapper, _protocol_wrapper_init)
