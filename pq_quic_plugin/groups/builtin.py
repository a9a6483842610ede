"""The groups this package ships, in our default preference order.

Names are the IANA TLS Supported Groups names. One exception: X25519Kyber768Draft00 was deployed
in 2022 under the pre-IANA codepoint 0xFE31 before it got 0x6399, and both may still be met; the
0xFE31 copy is called ``"X25519Kyber768Draft00Old"``, the name Cloudflare's Go fork, boring-rs
and packet dissectors use for it, so names stay unique (also case-insensitively).

The list is rebuilt on every call so that ``PQ_QUIC_MLKEM_BACKEND`` is read when groups are set
up. If that variable pins a backend lacking a parameter set (``cryptography`` has no ML-KEM-512),
the groups needing it are left out with a warning rather than failing the whole plugin; an
unknown value still raises :class:`MLKEMBackendError`, since a typo must not quietly change what
a server offers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .base import Group
from .ecdh import X25519Group, secp256r1, secp384r1
from .hybrid import HybridGroup
from .kyber import KyberGroup
from .mlkem import (
    ML_KEM_512,
    ML_KEM_768,
    ML_KEM_1024,
    MLKEMBackendError,
    MLKEMGroup,
    forced_backend,
)

logger = logging.getLogger(__name__)

_BUILDERS: list[tuple[str, Callable[[], Group]]] = [
    (
        "X25519MLKEM768",
        lambda: HybridGroup("X25519MLKEM768", 0x11EC, MLKEMGroup(ML_KEM_768), X25519Group()),
    ),
    (
        "SecP256r1MLKEM768",
        lambda: HybridGroup("SecP256r1MLKEM768", 0x11EB, secp256r1(), MLKEMGroup(ML_KEM_768)),
    ),
    (
        "SecP384r1MLKEM1024",
        lambda: HybridGroup("SecP384r1MLKEM1024", 0x11ED, secp384r1(), MLKEMGroup(ML_KEM_1024)),
    ),
    (
        "X25519Kyber768Draft00",
        lambda: HybridGroup("X25519Kyber768Draft00", 0x6399, X25519Group(), KyberGroup(ML_KEM_768)),
    ),
    (
        "X25519Kyber768Draft00Old",
        lambda: HybridGroup(
            "X25519Kyber768Draft00Old", 0xFE31, X25519Group(), KyberGroup(ML_KEM_768)
        ),
    ),
    (
        "X25519Kyber512Draft00",
        lambda: HybridGroup("X25519Kyber512Draft00", 0xFE30, X25519Group(), KyberGroup(ML_KEM_512)),
    ),
    ("MLKEM1024", lambda: MLKEMGroup(ML_KEM_1024)),
    ("MLKEM768", lambda: MLKEMGroup(ML_KEM_768)),
    ("MLKEM512", lambda: MLKEMGroup(ML_KEM_512)),
    ("x25519", X25519Group),
    ("secp256r1", secp256r1),
    ("secp384r1", secp384r1),
]


def builtin_groups() -> list[Group]:
    """Fresh instances of every built-in group, most preferred first."""
    forced_backend()  # raises on an unknown value before anything is skipped
    groups: list[Group] = []
    for name, build in _BUILDERS:
        try:
            groups.append(build())
        except MLKEMBackendError as exc:
            logger.warning("leaving out group %s: %s", name, exc)
    return groups
