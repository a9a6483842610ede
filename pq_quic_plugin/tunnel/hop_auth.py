"""The authentication half of a hop entry: which signature scheme the hop's handshake used and
whether that was post-quantum authentication (docs/protocol.md, "The hop list").

Key exchange (``group``, ``post_quantum``) and authentication are separate facts: a hop can
agree on X25519MLKEM768 and still be authenticated by an ECDSA certificate that a future
attacker could forge. Every hop entry carries both, read from the TLS object of the hop's own
connection (QUIC or TCP, either side) rather than assumed from configuration: one rule, here.
"""

from __future__ import annotations

from typing import Any

from .. import negotiated_signature_scheme, post_quantum_auth
from ..auth_policy import SignatureScheme

__all__ = ["NO_AUTH", "auth_fields", "auth_of", "describe_auth"]

#: A hop without TLS (plaintext ``http://``, a Unix socket, the connector's own pages).
NO_AUTH: dict[str, Any] = {"signature_scheme": None, "post_quantum_auth": False}


def auth_of(connection: Any) -> tuple[SignatureScheme | None, bool]:
    """The scheme the server signed with, and whether authentication was post-quantum (an
    ML-DSA signature on an all-ML-DSA chain), for a QUIC or TCP connection of ours."""
    return negotiated_signature_scheme(connection), post_quantum_auth(connection)


def auth_fields(connection: Any) -> dict[str, Any]:
    """``{"signature_scheme": "ML-DSA-65", "post_quantum_auth": True}`` for a hop entry."""
    scheme, post_quantum = auth_of(connection)
    return {
        "signature_scheme": scheme.name if scheme is not None else None,
        "post_quantum_auth": post_quantum,
    }


def describe_auth(connection: Any) -> str:
    """For a log line: ``ML-DSA-65 (post-quantum)``, ``ECDSA-P256-SHA256 (classical)``."""
    scheme, post_quantum = auth_of(connection)
    if scheme is None:
        return "unknown"
    return f"{scheme.name} ({'post-quantum' if post_quantum else 'classical'})"
