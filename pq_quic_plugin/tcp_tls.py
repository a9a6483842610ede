"""``ssl_context()``: the one factory for TLS contexts on TCP, post-quantum or not.

The post-quantum contexts come from :mod:`.tls_binding` (pyOpenSSL on ``cryptography``'s OpenSSL
3.5+); policy ``off`` gives a plain ``ssl.SSLContext``. Both are configured by the same code,
so certificates, trust, ALPN and verification mean the same with and without post-quantum.
This module imports :mod:`.tls_binding` only for ``prefer``/``require``: its import checks
pyOpenSSL and ML-KEM support, and a deployment that turned post-quantum off must keep working
where those are missing.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Iterable, Sequence

from .auth_policy import AuthPolicy
from .groups.base import Group
from .policy import Policy

logger = logging.getLogger("pq_quic_plugin")

__all__ = ["ssl_context"]

Password = str | bytes | bytearray | Callable[[], str | bytes | bytearray] | None
PathLike = str | os.PathLike[str]
#: One more certificate pair for a server: ``(certfile, keyfile)`` or with a password.
CertificatePair = tuple[PathLike, PathLike | None] | tuple[PathLike, PathLike | None, Password]


def ssl_context(
    policy: Policy | str | bool | None = "prefer",
    groups: Iterable[str | Group] | None = None,
    *,
    server_side: bool,
    certfile: PathLike | None = None,
    keyfile: PathLike | None = None,
    password: Password = None,
    cafile: PathLike | None = None,
    alpn: Iterable[str] | None = None,
    verify: bool = True,
    check_hostname: bool | None = None,
    skip_quic_only: bool = False,
    auth: AuthPolicy | str | bool | None = None,
    certificates: Sequence[CertificatePair] = (),
) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for TCP whose key exchange follows ``policy``.

    ``prefer`` and ``require`` return a :class:`~.tls_binding.PostQuantumSSLContext` (usable
    wherever asyncio, trio, anyio or httpx's async client take an ``SSLContext``; not for
    blocking ``wrap_socket``); ``off`` returns Python's own. ``groups`` are the QUIC binding's
    names; without them a server accepts every group OpenSSL can negotiate, post-quantum first,
    and a client offers X25519MLKEM768, x25519, secp256r1, secp384r1. A QUIC-only group raises
    ``QuicOnlyGroupError`` (a ``ValueError``), or is left out with a warning if
    ``skip_quic_only`` (for a group list shared with a QUIC listener).

    Server: ``certfile``/``keyfile``/``password`` as ``load_cert_chain``; ``cafile`` is loaded for
    client certificates, which are requested only once you set ``verify_mode``. Client: the
    server is verified against ``cafile`` (or the system's CAs) unless ``verify=False``, and its
    name is checked unless ``check_hostname=False``; ``alpn`` lists protocols, best first.
    ``SSLKEYLOGFILE`` in the environment is honoured as by ``ssl.create_default_context``.

    Authentication (``docs/auth.md``), as ``configure_auth`` on QUIC: ``auth`` is ``prefer``
    (default: ML-DSA when the peer can), ``require`` (a server refuses clients that offer no
    ML-DSA, a client refuses a server that did not authenticate with ML-DSA on an all-ML-DSA
    chain) or ``off``; ``certificates`` are a server's pairs beyond ``certfile``, each
    ``(certfile, keyfile)`` or ``(certfile, keyfile, password)``, and OpenSSL picks per client.
    Policy ``off`` (Python's ``ssl``, no ML-DSA) takes neither.
    """
    pol = Policy.parse(policy)
    auth_policy = AuthPolicy.parse(auth)
    if pol is Policy.OFF and (certificates or (auth is not None and auth_policy.value != "off")):
        raise ValueError(
            "post-quantum authentication (ML-DSA) over TCP runs on the post-quantum layer, and "
            "policy 'off' uses Python's ssl: use policy 'prefer' or 'require', or drop "
            "auth=/certificates="
        )
    if certificates and not server_side:
        raise ValueError("certificates= is for servers: a client presents one certificate")
    if pol is Policy.OFF:
        if groups is not None:
            raise ValueError(
                "policy 'off' uses Python's ssl module, which cannot choose key-exchange groups; "
                "drop groups= or use policy 'prefer'"
            )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    else:
        from .tls_binding import PostQuantumSSLContext, tls_group_policy

        group_policy = tls_group_policy(
            pol, groups, server_side=server_side, skip_quic_only=skip_quic_only
        )
        ctx = PostQuantumSSLContext(group_policy, server_side=server_side, auth=auth_policy)
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile, password)
    elif keyfile is not None:
        raise ValueError("keyfile needs certfile")
    for pair in certificates:
        ctx.add_cert_chain(*pair)  # type: ignore[attr-defined]
    _set_trust(ctx, server_side, cafile, verify, check_hostname)
    if alpn is not None:
        ctx.set_alpn_protocols(list(alpn))
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog:
        ctx.keylog_filename = keylog
    openssl_context = getattr(ctx, "openssl_context", None)
    if openssl_context is not None:
        openssl_context()  # build now: whatever OpenSSL refuses fails here, not at a handshake
        logger.info(
            "post-quantum TCP %s: %s; authentication %s",
            "server" if server_side else "client",
            ctx.group_policy.describe(),  # type: ignore[attr-defined]
            auth_policy.value,
        )
    return ctx


def _set_trust(
    ctx: ssl.SSLContext,
    server_side: bool,
    cafile: PathLike | None,
    verify: bool,
    check_hostname: bool | None,
) -> None:
    """Whom the context trusts and checks: the same rules for Python's context and ours."""
    if server_side:
        if check_hostname:
            raise ValueError("check_hostname applies to clients, not to server_side=True")
        if cafile is not None:
            ctx.load_verify_locations(cafile)
    elif verify:
        if cafile is not None:
            ctx.load_verify_locations(cafile)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = True if check_hostname is None else check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        if check_hostname:
            raise ValueError("check_hostname=True needs verify=True")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
