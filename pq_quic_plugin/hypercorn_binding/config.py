"""``PostQuantumConfig``: a hypercorn ``Config`` that carries the post-quantum settings.

Hypercorn pickles its ``Config`` into every spawned worker. Because this class lives in this
module, unpickling it in a worker imports the module, and importing it installs the hooks
(:mod:`.hooks`): that is how ``-w 2`` workers become post-quantum without any code of ours
running in them first. The keys ``pq``, ``pq_groups``, ``pq_trust_hops_from``, ``pq_auth``,
``pq_certfile`` and ``pq_keyfile`` are the same in a TOML config file, and apply to both
listeners: QUIC through the hooks, TCP through :meth:`create_ssl_context`, which every worker
calls for itself. ``pq_handshake_timeout`` is the HTTP/3 listener's only.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

from hypercorn.config import Config, Sockets

from ..aioquic_binding.handshake_deadline import DEFAULT_HANDSHAKE_TIMEOUT
from ..asgi.hop_trust import TrustedPeers
from ..auth_policy import AuthPolicy
from ..h2_binding import apply as apply_h2_binding
from ..plugins import registry
from ..policy import GroupPolicy, Policy
from .auth import NEEDS_PQ, auth_needs_pq, check_auth
from .hooks import install_hooks
from .tcp import check_tcp, limit_unsent, tcp_context

install_hooks()


class PostQuantumConfig(Config):
    """hypercorn's Config plus ``pq`` (off / prefer / require) and ``pq_groups`` (names)."""

    pq: str = "off"
    #: Set by ``hypercorn-pq``: the workers apply the h2 binding (:mod:`pq_quic_plugin.h2_binding`).
    pq_h2_binding: bool = False
    pq_groups: list[str] | None = None
    #: Who may send a pq-tunnel hop list, for the enforcement under ``pq = "require"``;
    #: ``None``: loopback (:data:`~pq_quic_plugin.asgi.hop_trust.LOOPBACK`).
    pq_trust_hops_from: list[str] | None = None
    #: Authentication policy, ``off``/``prefer``/``require`` (``None``: prefer), and an extra
    #: certificate pair (ML-DSA, next to ``certfile``), chosen per client (``docs/auth.md``).
    pq_auth: str | None = None
    pq_certfile: str | None = None
    pq_keyfile: str | None = None
    #: What a TCP connection may hold unsent, in the kernel (``TCP_NOTSENT_LOWAT``) and in its
    #: TLS layer each (``None``: the system's and asyncio's), so a client that stops reading
    #: holds this much instead of megabytes (:mod:`.tcp`).
    pq_unsent_limit: int | None = None
    #: Seconds an HTTP/3 connection has to complete its handshake (``None``: no deadline).
    pq_handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT

    @classmethod
    def from_config(cls, config: Config) -> PostQuantumConfig:
        """Copy a Config built by hypercorn's own loaders (TOML, python:, file:)."""
        new = cls.__new__(cls)
        new.__dict__.update(config.__dict__)
        return new

    def create_ssl_context(self) -> ssl.SSLContext | None:
        """The TCP listener's TLS: post-quantum under ``pq`` prefer/require (hypercorn's own
        settings carried over, :mod:`.tcp`), Python's ``ssl`` as in stock hypercorn when off."""
        if self.pq_h2_binding:  # each worker calls this once, for itself
            apply_h2_binding()
        if not self.ssl_enabled or Policy.parse(self.pq or "off") is Policy.OFF:
            return super().create_ssl_context()
        return tcp_context(self)

    def create_sockets(self) -> Sockets:
        """hypercorn's sockets, with :attr:`pq_unsent_limit` on the TCP ones."""
        sockets = super().create_sockets()
        if self.pq_unsent_limit is not None:
            limit_unsent(sockets.secure_sockets + sockets.insecure_sockets, self.pq_unsent_limit)
        return sockets


def normalise_groups(value: Any) -> list[str] | None:
    """Accept "a,b", ["a", "b"] or None; return canonical IANA names (validated)."""
    if value is None or value == "" or value == []:
        return None
    names: Iterable[str] = value.split(",") if isinstance(value, str) else value
    cleaned = [n.strip() for n in names if str(n).strip()]
    return [g.name for g in registry().resolve(cleaned)]


def normalise_trusted(value: Any) -> list[str] | None:
    """Accept "a,b", ["a", "b"] or None (loopback); each an address or a network. Raises
    ``ValueError`` naming the entry that is neither."""
    if value is None or value == "" or value == []:
        return None
    names: Iterable[str] = value.split(",") if isinstance(value, str) else value
    cleaned = [str(n).strip() for n in names if str(n).strip()]
    TrustedPeers(cleaned)  # validates
    return cleaned


def post_quantum(
    config: Config,
    policy: Policy | str | bool | None = "prefer",
    groups: Any = None,
    *,
    auth: str | None = None,
    pq_certfile: str | None = None,
    pq_keyfile: str | None = None,
) -> PostQuantumConfig:
    """Library use: make a hypercorn Config post-quantum for ``hypercorn.asyncio.serve``.

    Validates the policy and groups up front, for QUIC and (with a certificate) for TCP: an
    unknown group name raises with the list of valid names, and a list that leaves TCP no group
    OpenSSL can negotiate raises naming the QUIC-only groups, so a mistake surfaces at start-up,
    not at the first handshake. ``auth``, ``pq_certfile`` and ``pq_keyfile`` are the
    authentication settings (``pq_auth`` and the extra ML-DSA pair), checked the same way.
    """
    pq_config = (
        config if isinstance(config, PostQuantumConfig) else PostQuantumConfig.from_config(config)
    )
    pol = Policy.parse(policy)
    pq_config.pq = pol.value
    pq_config.pq_groups = normalise_groups(groups)
    if auth is not None:
        pq_config.pq_auth = AuthPolicy.parse(auth).value
    if pq_certfile is not None:
        pq_config.pq_certfile, pq_config.pq_keyfile = pq_certfile, pq_keyfile
    if pol is Policy.OFF and auth_needs_pq(pq_config):
        raise ValueError(NEEDS_PQ)
    if pol is not Policy.OFF:
        GroupPolicy.server_default(pol, pq_config.pq_groups)  # fails early on a bad combination
        if pq_config.ssl_enabled:
            check_tcp(pol, pq_config.pq_groups)  # and for the TCP listener's groups
            check_auth(pq_config)
    return pq_config
