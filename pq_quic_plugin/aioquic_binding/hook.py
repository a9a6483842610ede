"""Where the binding meets aioquic: a wrapper around ``QuicConnection._initialize``, and guards.

aioquic builds its ``tls.Context`` inside ``QuicConnection._initialize`` and offers no factory,
so the binding wraps that one method. The wrapper calls aioquic's original and then, only for a
connection that asked for it (a configured ``QuicConfiguration``, or any connection while
:func:`install` is active), converts the fresh context into a
:class:`~.context.PostQuantumContext`. The same connections get a guard around the three
methods every host drives them through (:mod:`.connection_guard`): an exception out of one of
them closes that connection instead of reaching the server, and a server connection must
complete its handshake within a deadline (:mod:`.handshake_deadline`). Every other connection
runs aioquic's code untouched.

The wrappers are removed again when nothing needs them (after :func:`uninstall`, once no
configured configuration is alive), so ``install(); uninstall()`` leaves aioquic exactly as it
was.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from ..groups.base import Group
from ..policy import GroupPolicy, Policy
from .authentication import apply_auth
from .connection_guard import GUARDED_METHODS, guarded
from .context import PostQuantumContext
from .handshake_deadline import DEFAULT_HANDSHAKE_TIMEOUT, HandshakeDeadline, check_timeout
from .reasons import bounded_reason

logger = logging.getLogger("pq_quic_plugin")

_SETTINGS_ATTR = "_pq_quic_settings"


@dataclass(frozen=True)
class PostQuantumSettings:
    """What :func:`configure` or :func:`install` decided, for each side of a connection."""

    policy: Policy
    client: GroupPolicy | None
    server: GroupPolicy | None
    #: The TLS engine to convert contexts into; a subclass may extend it (tests use one to
    #: build a misbehaving peer).
    context_class: type[PostQuantumContext] = PostQuantumContext
    #: Seconds a server connection has to complete its handshake (None: no deadline).
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT

    @classmethod
    def build(
        cls,
        policy: Policy | str | bool | None,
        groups: Iterable[str | Group] | None = None,
        key_shares: Iterable[str | Group] | None = None,
        is_client: bool | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> PostQuantumSettings:
        pol = Policy.parse(policy)
        timeout = check_timeout(handshake_timeout)
        if pol is Policy.OFF:
            return cls(pol, None, None, handshake_timeout=timeout)
        names = list(groups) if groups is not None else None
        client = GroupPolicy.build(pol, names, key_shares) if is_client in (None, True) else None
        server = GroupPolicy.server_default(pol, names) if is_client in (None, False) else None
        return cls(pol, client, server, handshake_timeout=timeout)

    def for_side(self, is_client: bool) -> GroupPolicy | None:
        return self.client if is_client else self.server


_lock = threading.Lock()
#: aioquic's own methods while the binding's wrappers stand in for them (empty: unpatched).
_originals: dict[str, Callable[..., Any]] = {}
_installed: PostQuantumSettings | None = None
_configured_alive = 0


def _settings_for(connection: QuicConnection) -> tuple[PostQuantumSettings, GroupPolicy] | None:
    """What the binding runs ``connection`` with, or None when it is stock aioquic's."""
    settings: PostQuantumSettings | None = getattr(connection._configuration, _SETTINGS_ATTR, None)
    if settings is None:
        settings = _installed
    if settings is None:
        return None
    policy = settings.for_side(connection._is_client)
    return None if policy is None else (settings, policy)


def _runs_ours(connection: QuicConnection) -> bool:
    return _settings_for(connection) is not None


def _wrapped_initialize(self: QuicConnection, peer_cid: bytes) -> None:
    _originals["_initialize"](self, peer_cid)
    found = _settings_for(self)
    if found is None:
        return
    settings, policy = found
    settings.context_class.adopt(self.tls, policy)
    apply_auth(self.tls, self._configuration)
    if self._is_client:
        if policy.policy is Policy.REQUIRE:
            _explain_refusals(self, policy)
    elif settings.handshake_timeout:
        HandshakeDeadline(self, settings.handshake_timeout).arm()


def _explain_refusals(connection: QuicConnection, policy: GroupPolicy) -> None:
    """Make a refused ``require`` handshake say why, instead of a bare CRYPTO_ERROR 0x128.

    The peer's alert only says "handshake_failure"; the client is the one that knows it offered
    post-quantum groups only. The event's reason phrase is rewritten and logged, so both the
    application (``ConnectionTerminated.reason_phrase``) and the operator (the log) see it.
    """
    original = connection.next_event

    def next_event() -> events.QuicEvent | None:
        event = original()
        if (
            isinstance(event, events.ConnectionTerminated)
            and not getattr(connection, "_handshake_complete", True)
            and 0x100 <= event.error_code <= 0x1FF
            # Key exchange agreed: a later refusal (authentication, certificate) is not this.
            and getattr(connection.tls, "pq_negotiated_group", None) is None
        ):
            alert = event.error_code - 0x100
            # The peer's own words are the peer's to size: bounded before they are repeated.
            theirs = bounded_reason(event.reason_phrase or "")
            event.reason_phrase = (
                f"post-quantum handshake refused by the peer (TLS alert {alert}"
                f"{': ' + theirs if theirs else ''}). "
                f"We offered only post-quantum groups [{', '.join(policy.names)}] because the "
                "policy is 'require'; the peer has no post-quantum group in common with us. "
                "Enable X25519MLKEM768 on the server, or use policy 'prefer' to allow a "
                "classical connection. No classical connection was made."
            )
            logger.error("%s", event.reason_phrase)
        return event

    connection.next_event = next_event  # type: ignore[method-assign]


def _ensure_patched() -> None:
    """Wrap ``_initialize`` (the TLS engine) and the entry points (:mod:`.connection_guard`)."""
    if _originals:
        return
    _originals["_initialize"] = QuicConnection._initialize
    # Lets the internals check (and inspect) see aioquic's function behind the wrapper.
    _wrapped_initialize.__wrapped__ = QuicConnection._initialize  # type: ignore[attr-defined]
    QuicConnection._initialize = _wrapped_initialize  # type: ignore[method-assign]
    for name in GUARDED_METHODS:
        original = getattr(QuicConnection, name)
        _originals[name] = original
        setattr(QuicConnection, name, guarded(name, original, _runs_ours))


def _maybe_unpatch() -> None:
    if _originals and _installed is None and _configured_alive == 0:
        for name, original in _originals.items():
            setattr(QuicConnection, name, original)
        _originals.clear()


def _forget_configuration() -> None:
    global _configured_alive
    with _lock:
        _configured_alive -= 1
        _maybe_unpatch()


def configure(
    configuration: QuicConfiguration,
    policy: Policy | str | bool | None = Policy.PREFER,
    groups: Iterable[str | Group] | None = None,
    key_shares: Iterable[str | Group] | None = None,
    *,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> QuicConfiguration:
    """Make connections built from ``configuration`` negotiate post-quantum under ``policy``.

    ``groups`` are names in preference order (case-insensitive IANA names). A client offers them
    and sends key shares for ``key_shares`` (default: the best post-quantum and the best
    classical group); a server accepts them in that order (default: every registered group,
    post-quantum first). A server connection whose handshake is not complete
    ``handshake_timeout`` seconds after its first datagram is closed (None or 0: aioquic's idle
    timeout only). Returns the same configuration, for chaining.
    """
    global _configured_alive
    settings = PostQuantumSettings.build(
        policy, groups, key_shares, configuration.is_client, handshake_timeout
    )
    with _lock:
        first = getattr(configuration, _SETTINGS_ATTR, None) is None
        setattr(configuration, _SETTINGS_ATTR, settings)
        if first:
            _configured_alive += 1
            weakref.finalize(configuration, _forget_configuration)
        _ensure_patched()
    side = settings.for_side(configuration.is_client)
    logger.info(
        "post-quantum %s: %s",
        "client" if configuration.is_client else "server",
        side.describe() if side is not None else "policy=off (aioquic defaults)",
    )
    return configuration


def install(
    policy: Policy | str | bool | None = Policy.PREFER,
    groups: Iterable[str | Group] | None = None,
    *,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> PostQuantumSettings:
    """Make every aioquic connection created from now on negotiate with ``policy``.

    Configurations passed through :func:`configure` keep their own settings. Server connections
    get the same handshake deadline as under :func:`configure`.
    """
    global _installed
    settings = PostQuantumSettings.build(policy, groups, handshake_timeout=handshake_timeout)
    with _lock:
        _installed = settings if settings.policy is not Policy.OFF else None
        if _installed is not None:
            _ensure_patched()
        else:
            _maybe_unpatch()
    if settings.client is not None and settings.server is not None:
        logger.info(
            "post-quantum installed for every aioquic connection: client %s; server %s",
            settings.client.describe(),
            settings.server.describe(),
        )
    return settings


def uninstall() -> None:
    """Undo :func:`install`; aioquic is restored once no configured configuration remains."""
    global _installed
    with _lock:
        _installed = None
        _maybe_unpatch()
    logger.info("post-quantum library hook uninstalled")


def installed() -> PostQuantumSettings | None:
    return _installed


def is_patched() -> bool:
    return bool(_originals)


def settings_of(configuration: QuicConfiguration) -> PostQuantumSettings | None:
    return getattr(configuration, _SETTINGS_ATTR, None)


def negotiated_group(connection: Any) -> Group | None:
    """The group a finished (or finishing) handshake agreed on, on either side, or None.

    Accepts a ``QuicConnection``, an aioquic ``QuicConnectionProtocol`` or a TLS context.
    Connections that run stock aioquic (policy off) report None: aioquic records no group.
    """
    conn = getattr(connection, "_quic", connection)
    ctx = getattr(conn, "tls", conn)
    if isinstance(ctx, PostQuantumContext):
        return ctx.pq_negotiated_group
    return None
