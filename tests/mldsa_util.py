"""Shared pieces of the ML-DSA tests: parameter sets, PKIs, the CertificateVerify prefix."""

from __future__ import annotations

from pathlib import Path

from pq_quic_plugin.devcert import DevPKI, make_dev_pki

#: ``(devcert --sig name, TLS SignatureScheme codepoint)`` of each ML-DSA parameter set.
PARAMETER_SETS = [("ml-dsa-44", 0x0904), ("ml-dsa-65", 0x0905), ("ml-dsa-87", 0x0906)]

#: RFC 8446 4.4.3: what precedes the 0x00 and the transcript hash in a server's signature.
CV_PREFIX = b" " * 64 + b"TLS 1.3, server CertificateVerify"


def ml_dsa_pki(directory: Path, sig: str) -> DevPKI:
    """An ML-DSA CA and localhost leaf (``<sig>-ca.pem`` ...) written into ``directory``."""
    return make_dev_pki(directory, sig=sig)
