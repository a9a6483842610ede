"""hypercorn-pq's authentication settings (``pq_auth``, ``pq_certfile``, ``pq_keyfile``), applied
to both listeners from one place.

hypercorn holds one certificate. The ML-DSA pair rides next to it in the config (command line or
TOML), and each listener gets both: the QUIC one through :func:`configure_auth` on hypercorn's
``QuicConfiguration`` (called from the ``QuicProtocol`` hook, in every worker), the TCP one
through ``ssl_context(auth=..., certificates=...)`` (:mod:`.tcp`). Each handshake then uses the
ML-DSA certificate when the client offers ML-DSA and the classical one otherwise, on either
transport, under the same policy (``docs/auth.md``).

Also here, because it serves the same purpose (seeing what a handshake did): ``SSLKEYLOGFILE``
in the environment makes the QUIC listener write its TLS secrets there, as the TCP listener
already does through ``ssl_context``, so Wireshark/tshark can read both.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..auth_policy import AuthPolicy

logger = logging.getLogger("pq_quic_plugin.hypercorn")

__all__ = [
    "NEEDS_PQ",
    "auth_certificates",
    "auth_needs_pq",
    "auth_policy_of",
    "check_auth",
    "configure_quic_listener",
]

#: Why ``pq_auth``/``pq_certfile`` need ``pq``: ML-DSA runs in the post-quantum TLS engines only.
NEEDS_PQ = (
    "post-quantum authentication (--pq-auth, --pq-certfile) needs --pq: ML-DSA runs in the "
    "post-quantum TLS engines, and without --pq both listeners are stock (aioquic's TLS, "
    "Python's ssl on the system OpenSSL, neither of which knows ML-DSA)"
)


def auth_policy_of(config: Any) -> AuthPolicy:
    """The config's ``pq_auth`` (default ``prefer``: ML-DSA for clients that offer it)."""
    return AuthPolicy.parse(getattr(config, "pq_auth", None) or "prefer")


def auth_certificates(config: Any) -> list[tuple[str, str | None]]:
    """The extra pair, ``[(pq_certfile, pq_keyfile)]``, or none."""
    certfile = getattr(config, "pq_certfile", None)
    if not certfile:
        return []
    return [(str(certfile), str(getattr(config, "pq_keyfile", None) or certfile))]


def auth_needs_pq(config: Any) -> bool:
    """Whether the config asks for anything ML-DSA (which ``pq = "off"`` cannot give)."""
    explicit = getattr(config, "pq_auth", None)
    wants = explicit is not None and AuthPolicy.parse(explicit) is not AuthPolicy.OFF
    return wants or bool(getattr(config, "pq_certfile", None))


def check_auth(config: Any) -> str:
    """Load the certificates as a listener will, so that a wrong path, a key that does not
    match, or ``require`` without an ML-DSA certificate stop start-up, not the first handshake;
    returns a summary for the start-up lines."""
    from .. import ssl_context

    policy = auth_policy_of(config)
    pairs = auth_certificates(config)
    ssl_context(
        "prefer",
        server_side=True,
        certfile=config.certfile,
        keyfile=config.keyfile,
        password=getattr(config, "keyfile_password", None),
        auth=policy,
        certificates=pairs,
    )
    extra = f", extra certificate {pairs[0][0]}" if pairs else ""
    return f"authentication {policy.value}{extra}"


def configure_quic_listener(quic_config: Any, config: Any) -> None:
    """Authentication and the key log for the HTTP/3 listener's ``QuicConfiguration`` (already
    made post-quantum by ``configure``)."""
    from ..aioquic_binding.auth_config import configure_auth

    configure_auth(quic_config, auth_policy_of(config), certificates=auth_certificates(config))
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and getattr(quic_config, "secrets_log_file", None) is None:
        # Line-buffered append, shared with the TCP listener's lines: NSS key log format.
        quic_config.secrets_log_file = open(keylog, "a", buffering=1)  # noqa: SIM115
        logger.warning("HTTP/3 listener: writing TLS secrets to %s (SSLKEYLOGFILE)", keylog)
