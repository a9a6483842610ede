"""Why a tunnel connection failed, in the words an operator needs, and what to do about it.

A connector that blames post-quantum for a network outage sends people the wrong way (the
complaint of cloudflared#1149), and one that says only ``ConnectionError`` sends them nowhere.
So every failure is sorted into one :class:`FailureKind` with the real reason attached:

- ``network``: no answer (timeout), UDP unreachable, TCP refused, the connection dropped;
  retried. The only kind that makes ``protocol: auto`` switch transport (:mod:`.transports`).
- ``tls``: the TLS handshake failed for a reason other than key exchange, e.g. the edge's
  certificate did not verify; retried (a certificate can be renewed), never the PQ banner.
- ``post-quantum``: the edge refused every key-exchange group we offered (``handshake_failure``
  during the handshake while ``post-quantum`` is on), or, under ``post-quantum-auth``, the edge
  did not authenticate with ML-DSA (``Failure.edge_auth``; the reason says what it
  presented): the only kind that shows the banner. An authentication refusal is retried,
  since the edge's operator can fix it without touching the connector (a new certificate),
  but as the permanent-ish thing it is: at ``max-backoff`` from the first failure, with the
  banner and report once per connection rather than at every attempt (:mod:`.supervisor`);
  never as a network failure, so ``protocol: auto`` does not switch transport over it.
- ``authentication``: the edge refused the registration, or closed a registered connection
  because its tunnel was deleted. Permanent: retrying cannot help (docs/tunnel.md, "Retries").
"""

from __future__ import annotations

import asyncio
import enum
import re
import ssl
from dataclasses import dataclass
from typing import Any

from ..wire import ERROR_AUTH, StreamReset
from .registration import RegistrationError

__all__ = ["Failure", "FailureKind", "auth_refusal", "classify", "describe_close"]

#: QUIC carries a TLS alert as CRYPTO_ERROR (0x100) plus the alert number (RFC 9001, 4.8).
_CRYPTO_ERROR = 0x100
_ALERT_HANDSHAKE_FAILURE = 40
_ALERT_ILLEGAL_PARAMETER = 47
_ALERT_NAMES = {
    10: "unexpected_message",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    80: "internal_error",
    109: "missing_extension",
    120: "no_application_protocol",
}
#: Words in a handshake_failure's reason that say it was the key exchange that failed.
_KEY_EXCHANGE_WORDS = ("key share", "key-exchange", "key exchange", "group")
#: The reason aioquic gives when a handshake heard nothing back for the idle timeout.
_IDLE_TIMEOUT = "Idle timeout"
#: The ``reason`` of the TLS layer's ``PostQuantumRefusedError`` (checked by name, so that this
#: module does not import the TLS layer: a connector without post-quantum may lack it).
_PQ_REFUSED = "POST_QUANTUM_REFUSED"
#: The same for a ``require`` client's refusal of a server that did not sign with ML-DSA.
_PQ_AUTH_REFUSED = "POST_QUANTUM_AUTH_REFUSED"
#: How ``auth_policy.client_refusal`` words the two refusals (QUIC alert and TCP error alike).
_CLASSICAL_SERVER = re.compile(r"server authenticated with ([\w.-]+) \(classical\)")
_MIXED_CHAIN = re.compile(r"server signed with ([\w.-]+) but its certificate chain is not all")


class FailureKind(enum.Enum):
    NETWORK = "network"
    TLS = "tls"
    POST_QUANTUM = "post-quantum"
    AUTHENTICATION = "authentication"


@dataclass(frozen=True)
class Failure:
    """One failed attempt: its kind and the reason, as shown in the log, banner and report."""

    kind: FailureKind
    reason: str
    edge_auth: bool = False
    """A post-quantum failure of the edge's authentication (``post-quantum-auth``), not of the
    key exchange: the banner says what to check accordingly."""

    @property
    def permanent(self) -> bool:
        """Retrying cannot help: the edge said this tunnel may not connect."""
        return self.kind is FailureKind.AUTHENTICATION

    @property
    def shows_banner(self) -> bool:
        return self.kind is FailureKind.POST_QUANTUM


def describe_close(code: int | None, reason: str) -> str:
    """A CONNECTION_CLOSE as a person reads it: ``TLS alert handshake_failure: REASON``."""
    if code is not None and _CRYPTO_ERROR <= code <= _CRYPTO_ERROR + 0xFF:
        alert = code - _CRYPTO_ERROR
        name = _ALERT_NAMES.get(alert, f"alert {alert}")
        return f"TLS alert {name}: {reason}" if reason else f"TLS alert {name}"
    return reason or ("closed" if code is None else f"error 0x{code:X}")


def auth_refusal(text: str) -> str | None:
    """The operator's sentence for our refusal of an edge that did not authenticate with
    ML-DSA, from the TLS layer's reason (``auth_policy.client_refusal``); None for any other."""
    classical = _CLASSICAL_SERVER.search(text)
    if classical:
        return (
            f"edge presented a classical certificate ({classical.group(1)}); "
            "post-quantum-auth requires ML-DSA"
        )
    mixed = _MIXED_CHAIN.search(text)
    if mixed:
        return (
            f"edge presented an {mixed.group(1)} certificate whose chain is not all ML-DSA; "
            "post-quantum-auth requires ML-DSA throughout"
        )
    return None


def classify(
    exc: BaseException,
    conn: Any,
    *,
    post_quantum: bool,
    registered: bool,
    post_quantum_auth: bool = False,
) -> Failure:
    """Sort the failure of one attempt; ``conn`` is the link (a ``TunnelLink``) the attempt
    created, if any (its close code and reason are the real story behind aioquic's bare
    ``ConnectionError``). Over http2 the handshake's own exceptions say what happened."""
    if isinstance(exc, RegistrationError):
        return Failure(FailureKind.AUTHENTICATION, f"the edge refused the registration: {exc}")
    if isinstance(exc, ssl.SSLError):
        text = f"TLS handshake failed: {exc}"
        refusal = auth_refusal(str(exc))
        if getattr(exc, "reason", None) == _PQ_AUTH_REFUSED and post_quantum_auth and refusal:
            return Failure(FailureKind.POST_QUANTUM, refusal, edge_auth=True)
        if getattr(exc, "reason", None) == _PQ_REFUSED and post_quantum:
            return Failure(FailureKind.POST_QUANTUM, str(exc))
        return Failure(FailureKind.TLS, text)
    if isinstance(exc, asyncio.TimeoutError):
        if conn is None or not conn.handshake_done:
            return Failure(FailureKind.NETWORK, "timeout: no answer from the edge (handshake)")
        return Failure(FailureKind.NETWORK, "timeout: the edge did not answer the registration")
    if isinstance(exc, ConnectionRefusedError) and conn is None:
        return Failure(FailureKind.NETWORK, "TCP connection refused: nothing listens there")
    if conn is None or not conn.closed:
        if isinstance(exc, StreamReset):
            return Failure(FailureKind.NETWORK, f"connection dropped: {exc}")
        return Failure(FailureKind.NETWORK, str(exc) or type(exc).__name__)
    code, reason = conn.close_code, conn.close_reason
    if code is not None and reason == f"error 0x{code:X}":
        reason = ""  # the connection's stand-in for a close without a reason phrase
    if registered and code == ERROR_AUTH:
        return Failure(FailureKind.AUTHENTICATION, f"the edge closed the connection: {reason}")
    if reason == _IDLE_TIMEOUT:
        what = "connection" if conn.handshake_done else "handshake"
        return Failure(FailureKind.NETWORK, f"timeout: no answer from the edge ({what})")
    if code is not None and _CRYPTO_ERROR <= code <= _CRYPTO_ERROR + 0xFF:
        alert = code - _CRYPTO_ERROR
        text = describe_close(code, reason)
        key_exchange = alert == _ALERT_HANDSHAKE_FAILURE and (
            not reason or any(word in reason.lower() for word in _KEY_EXCHANGE_WORDS)
        )
        if alert == _ALERT_ILLEGAL_PARAMETER and "key share" in reason.lower():
            key_exchange = True
        if post_quantum and key_exchange and not conn.handshake_done:
            return Failure(FailureKind.POST_QUANTUM, text)
        refusal = auth_refusal(reason) if alert == _ALERT_HANDSHAKE_FAILURE else None
        if post_quantum_auth and refusal and not conn.handshake_done:
            return Failure(FailureKind.POST_QUANTUM, refusal, edge_auth=True)
        return Failure(FailureKind.TLS, text)
    text = describe_close(code, reason)
    return Failure(FailureKind.NETWORK, f"connection lost: {text}" if registered else text)
