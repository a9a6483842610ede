"""pyOpenSSL's exceptions, turned into the ``ssl`` exceptions event loops understand.

asyncio, trio and anyio were written against Python's ``ssl``: they retry on
``ssl.SSLWantReadError``, treat ``ssl.SSLEOFError`` as a peer that vanished (trio's
``https_compatible`` mode turns it into a clean EOF), and hypercorn's asyncio exception handler
silences only ``ssl.SSLError``. A pyOpenSSL exception escaping into them would be a crash or a
noisy traceback, so nothing else ever leaves the layer.

A refused handshake under ``require`` is the exception to "just translate": the peer's alert says
only "handshake failure", and only our side knows that it offered post-quantum groups only. So,
like the QUIC binding, the client says why and what to do, and the server logs what it refused.
"""

from __future__ import annotations

import logging
import ssl
from typing import TypeVar

from OpenSSL import SSL

from ..auth_policy import AuthPolicy
from ..policy import GroupPolicy, Policy
from .auth import scheme_for_key
from .native import verify_failure

logger = logging.getLogger("pq_quic_plugin.tls")

__all__ = ["PostQuantumRefusedError", "auth_refused", "translate", "want_read"]


class PostQuantumRefusedError(ssl.SSLError):
    """A ``require`` handshake failed because the peer cannot do post-quantum key exchange with
    us. No classical connection was made."""


#: The peer's alerts that mean "nothing in common": what a server without ML-KEM sends.
_NO_COMMON_GROUND = ("alert handshake failure", "alert insufficient security")
_NO_TLS13 = "alert protocol version"
#: Our server's own reasons for refusing a client without a post-quantum group or TLS 1.3.
_SERVER_REFUSALS = ("no suitable key share", "no shared groups", "unsupported protocol")


def want_read() -> ssl.SSLWantReadError:
    return ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "The operation did not complete (read)")


_E = TypeVar("_E", bound=ssl.SSLError)


def _stdlib(cls: type[_E], errno: int, reason: str, text: str) -> _E:
    """An ``ssl`` exception shaped like Python's own: ``[SSL: REASON] text`` with ``library``
    and ``reason`` set, so code that inspects them (or just prints) sees the familiar form."""
    exc = cls(errno, f"[SSL: {reason}] {text}")
    exc.library = "SSL"
    exc.reason = reason
    return exc


def _openssl_reasons(error: SSL.Error) -> list[str]:
    """The reason strings of OpenSSL's error queue as pyOpenSSL captured it."""
    entries = error.args[0] if error.args and isinstance(error.args[0], list) else []
    return [str(entry[2]) for entry in entries if isinstance(entry, tuple) and len(entry) == 3]


def _reason_code(text: str) -> str:
    return text.upper().replace(" ", "_").replace("/", "_")


def _refused_by_peer(policy: GroupPolicy, cause: str) -> PostQuantumRefusedError:
    """Our ``require`` client's explanation of a server that cannot do post-quantum with us."""
    text = (
        f"post-quantum handshake refused by the peer ({cause}). We offered only post-quantum "
        f"groups [{', '.join(policy.names)}] over TLS 1.3 because the policy is 'require'; the "
        "peer cannot do post-quantum key exchange with us (no post-quantum group in common, or "
        "no TLS 1.3). Enable X25519MLKEM768 on the server (OpenSSL 3.5 or later, or another "
        "TLS stack with ML-KEM), or use policy 'prefer' to allow a classical connection. "
        "No classical connection was made."
    )
    logger.error("%s", text)
    return _stdlib(PostQuantumRefusedError, ssl.SSL_ERROR_SSL, "POST_QUANTUM_REFUSED", text)


def _refused_client(policy: GroupPolicy, openssl_reason: str) -> str:
    """Our ``require`` server's reason for refusing a client (logged, and the error's text)."""
    if openssl_reason == "unsupported protocol":
        what = "client does not speak TLS 1.3, which post-quantum key exchange needs"
    else:
        what = "client offered no post-quantum key-exchange group we accept"
    return (
        f"refusing handshake: {what} (OpenSSL: {openssl_reason}); server policy is 'require' "
        f"(accepts: {', '.join(policy.names)})"
    )


def auth_refused(reason: str) -> PostQuantumRefusedError:
    """A ``require`` client's refusal of a server that did not authenticate with ML-DSA."""
    return _stdlib(
        PostQuantumRefusedError,
        ssl.SSL_ERROR_SSL,
        "POST_QUANTUM_AUTH_REFUSED",
        f"{reason}. No connection was made.",
    )


#: OpenSSL's reason when a server holds no certificate the client's signature_algorithms allow.
_NO_SIGNATURE = "no suitable signature algorithm"


def _refused_signature(connection: SSL.Connection, auth: AuthPolicy | None, reason: str) -> str:
    """A server's reason for refusing a client it has no certificate for: under ``require``
    the client offered no ML-DSA (the only pairs loaded, see :mod:`.auth`)."""
    chains = getattr(connection.get_context(), "pq_chains", {})
    schemes = [scheme_for_key(chain[0].public_key(), True) for chain in chains.values()]
    names = ", ".join(s.name for s in schemes if s is not None) or "none"
    if auth is AuthPolicy.REQUIRE:
        what = (
            "client offered no ML-DSA signature scheme; server auth policy is 'require' "
            f"(accepts: {names})"
        )
    else:
        what = (
            "client offered no signature scheme the server's certificates can sign with "
            f"(server signs with: {names})"
        )
    return f"refusing handshake: {what} (OpenSSL: {reason})"


def translate(
    error: SSL.Error,
    connection: SSL.Connection,
    *,
    policy: GroupPolicy | None,
    server_side: bool,
    in_handshake: bool,
    hostname: str | None,
    auth: AuthPolicy | None = None,
) -> ssl.SSLError:
    """The ``ssl`` exception for ``error``, raised by ``connection`` (``policy`` None: no
    post-quantum policy applies, e.g. a context built for the ``off`` policy never gets here)."""
    require = policy is not None and policy.policy is Policy.REQUIRE
    if isinstance(error, SSL.WantReadError):
        return want_read()
    if isinstance(error, SSL.WantWriteError):  # memory BIOs never fill up; kept for safety
        return ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE, "The operation did not complete")
    if isinstance(error, SSL.ZeroReturnError):
        return ssl.SSLZeroReturnError(
            ssl.SSL_ERROR_ZERO_RETURN, "TLS/SSL connection has been closed (EOF)"
        )
    if isinstance(error, SSL.SysCallError):
        if require and in_handshake and not server_side and policy is not None:
            return _refused_by_peer(policy, "it closed the connection during the handshake")
        return _stdlib(
            ssl.SSLEOFError, ssl.SSL_ERROR_EOF, "", "EOF occurred in violation of protocol"
        )
    reasons = _openssl_reasons(error)
    first = reasons[0] if reasons else "unknown error"
    if "certificate verify failed" in reasons:
        return _verification_error(connection, hostname)
    if server_side and in_handshake and first == _NO_SIGNATURE:
        text = _refused_signature(connection, auth, first)
        logger.warning("%s", text)
        return _stdlib(ssl.SSLError, ssl.SSL_ERROR_SSL, _reason_code(first), text)
    if require and in_handshake and policy is not None:
        if not server_side and any(alert in first for alert in (*_NO_COMMON_GROUND, _NO_TLS13)):
            return _refused_by_peer(policy, f"TLS {first.split('alert ', 1)[-1]} alert")
        if server_side and first in _SERVER_REFUSALS:
            text = _refused_client(policy, first)
            logger.warning("%s", text)
            return _stdlib(ssl.SSLError, ssl.SSL_ERROR_SSL, _reason_code(first), text)
    return _stdlib(ssl.SSLError, ssl.SSL_ERROR_SSL, _reason_code(first), first)


def _verification_error(
    connection: SSL.Connection, hostname: str | None
) -> ssl.SSLCertVerificationError:
    """Python's ``SSLCertVerificationError`` with OpenSSL's ``verify_code`` and message, worded
    like Python's for a host-name mismatch (the message people search for)."""
    code, message = verify_failure(connection) or (0, "certificate verify failed")
    if message.lower().startswith("hostname mismatch") and hostname:
        message = f"Hostname mismatch, certificate is not valid for {hostname!r}."
    elif message.lower().startswith("ip address mismatch") and hostname:
        message = f"IP address mismatch, certificate is not valid for {hostname!r}."
    exc = _stdlib(
        ssl.SSLCertVerificationError,
        ssl.SSL_ERROR_SSL,
        "CERTIFICATE_VERIFY_FAILED",
        f"certificate verify failed: {message}",
    )
    exc.verify_code = code
    exc.verify_message = message
    return exc
