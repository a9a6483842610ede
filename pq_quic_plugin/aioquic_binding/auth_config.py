"""``configure_auth()``: the authentication policy and extra certificates of a configuration.

Kept apart from :func:`~.hook.configure` because authentication is a separate decision from key
exchange (an ML-DSA certificate is useless to an old client; X25519MLKEM768 is not), and because
a server may hold several certificates where aioquic's ``QuicConfiguration`` has room for one.
The settings live on the configuration, as the key-exchange settings do, and each connection's
TLS context picks them up when the binding converts it (:func:`~.authentication.apply_auth`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration

from ..auth_policy import AuthPolicy
from ..policy import Policy
from .certificates import AUTH_ATTR, AuthSettings, Credential
from .hook import configure, settings_of

logger = logging.getLogger("pq_quic_plugin")

#: A certificate pair as ``configure_auth`` takes it: a loaded :class:`Credential`, or
#: ``(certfile, keyfile)`` / ``(certfile, keyfile, password)`` paths to PEM files.
CertificateSpec = (
    Credential
    | tuple[str | Path, str | Path | None]
    | tuple[str | Path, str | Path | None, bytes | str | None]
)


def _credential(spec: CertificateSpec) -> Credential:
    if isinstance(spec, Credential):
        spec.check()
        return spec
    return Credential.load(*spec)


def configure_auth(
    configuration: QuicConfiguration,
    auth: AuthPolicy | str | bool | None = AuthPolicy.PREFER,
    certificates: Iterable[CertificateSpec] = (),
) -> QuicConfiguration:
    """Set how connections from ``configuration`` authenticate, and a server's extra pairs.

    ``auth``: ``prefer`` (default; a client offers ML-DSA, a server signs with ML-DSA when the
    client offers it), ``require`` (ML-DSA or no connection) or ``off`` (classical only).
    ``certificates`` (servers only): more pairs next to the one ``load_cert_chain`` loaded; when
    the configuration has none yet, the first pair becomes it. Each handshake uses the first
    ML-DSA pair whose scheme the client offers, else the first classical one it can verify.

    A configuration that has not been through :func:`~.hook.configure` gets its defaults
    (key exchange ``prefer``): authentication runs in the binding's TLS engine.
    """
    policy = AuthPolicy.parse(auth)
    kex = settings_of(configuration)
    if kex is not None and kex.policy is Policy.OFF and policy is not AuthPolicy.OFF:
        raise ValueError(
            "post-quantum authentication runs in the binding's TLS engine, and key-exchange "
            "policy 'off' leaves the connection to stock aioquic: use 'prefer' or 'require'"
        )
    pairs = [_credential(spec) for spec in certificates]
    if pairs and configuration.is_client:
        raise ValueError("certificates= is for servers: aioquic clients do not present one")
    if pairs and configuration.certificate is None:
        first = pairs.pop(0)
        configuration.certificate = first.certificate
        configuration.certificate_chain = list(first.chain)
        configuration.private_key = first.private_key
    if not configuration.is_client and policy is AuthPolicy.REQUIRE:
        _check_require_has_ml_dsa(configuration, pairs)
    settings = AuthSettings(policy, tuple(pairs))
    setattr(configuration, AUTH_ATTR, settings)
    if kex is None:
        configure(configuration)
    logger.info(
        "authentication (%s): policy=%s%s",
        "client" if configuration.is_client else "server",
        policy.value,
        "".join(f"; extra certificate {p.scheme_list()}" for p in pairs),
    )
    return configuration


def _check_require_has_ml_dsa(configuration: QuicConfiguration, pairs: list[Credential]) -> None:
    """A ``require`` server without an ML-DSA pair would refuse every client: say so now."""
    own = configuration.certificate
    if own is None:
        return  # load_cert_chain comes later; the handshake refuses then, with a reason
    candidates = [
        Credential(own, tuple(configuration.certificate_chain), configuration.private_key)
    ]
    if not any(c.ml_dsa for c in candidates + pairs):
        raise ValueError(
            "authentication policy 'require' needs an ML-DSA certificate: pass one in "
            "certificates=[(certfile, keyfile)] (python -m pq_quic_plugin.devcert DIR "
            "--sig ml-dsa-65 makes a test one)"
        )


def auth_settings_of(configuration: QuicConfiguration) -> AuthSettings | None:
    """What :func:`configure_auth` set on ``configuration``, or None."""
    settings: AuthSettings | None = getattr(configuration, AUTH_ATTR, None)
    return settings
