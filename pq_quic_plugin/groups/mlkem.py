"""ML-KEM (FIPS 203) groups, on whichever installed backend has the parameter set.

Two backends exist on PyPI: ``cryptography`` (OpenSSL; ML-KEM-768 and -1024 only) and
``pqcrypto`` (PQClean; all three). ``cryptography`` is preferred where it has the parameter set
because it measured faster here and is already audited as part of the TLS stack; ``pqcrypto`` fills
the gap for ML-KEM-512 and is the fallback. ``PQ_QUIC_MLKEM_BACKEND=cryptography|pqcrypto`` pins
one, e.g. to keep all lattice code inside OpenSSL for a compliance review.

Peer input is validated here, before any backend sees it, so that both backends refuse exactly the
same inputs with the same messages; in particular the FIPS 203 modulus check on encapsulation keys
is ours, not the backend's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Any, Protocol

from .base import InvalidKeyShare

BACKEND_ENV = "PQ_QUIC_MLKEM_BACKEND"
BACKENDS = ("cryptography", "pqcrypto")  # preference order

_Q = 3329


@dataclass(frozen=True)
class MLKEMParams:
    """One FIPS 203 parameter set, with the sizes that go on the wire."""

    size: int  # 512, 768 or 1024
    k: int
    ek_size: int
    ct_size: int

    @property
    def name(self) -> str:
        return f"MLKEM{self.size}"


ML_KEM_512 = MLKEMParams(512, 2, 800, 768)
ML_KEM_768 = MLKEMParams(768, 3, 1184, 1088)
ML_KEM_1024 = MLKEMParams(1024, 4, 1568, 1568)
PARAMS = {p.size: p for p in (ML_KEM_512, ML_KEM_768, ML_KEM_1024)}


def passes_modulus_check(params: MLKEMParams, ek: bytes) -> bool:
    """FIPS 203 section 7.2: every 12-bit coefficient of the first 384*k bytes is below q.

    Done with big-integer lane arithmetic instead of a loop over 256*k coefficients: each 3-byte
    group holds two coefficients, so masking the even (and, shifted by 12, the odd) ones into the
    low half of 24-bit lanes and adding 4096 - q carries into bit 12 of a lane exactly when that
    coefficient is >= q. No carry crosses a lane (4095 + 767 < 2**13). For ML-KEM-768 that
    is 3-5 us, against about 115 us for a loop over the coefficients.
    """
    low12, bias, carry = _lane_masks(params.k)
    x = int.from_bytes(ek[: 384 * params.k], "little")
    even = (x & low12) + bias
    odd = ((x >> 12) & low12) + bias
    return not ((even | odd) & carry)


@cache
def _lane_masks(k: int) -> tuple[int, int, int]:
    """Per 24-bit lane: the low 12 bits, the bias 4096 - q, and the carry bit 12."""
    lanes = 128 * k  # 384*k bytes, 3 bytes per lane

    def replicate(value: int) -> int:
        return int.from_bytes(value.to_bytes(3, "little") * lanes, "little")

    return replicate(0xFFF), replicate(4096 - _Q), replicate(0x1000)


class MLKEMBackendError(RuntimeError):
    """The requested ML-KEM backend is unknown or lacks the parameter set."""


class MLKEMBackend(Protocol):
    """What a backend must do; peer input reaches it already validated."""

    name: str

    def keygen(self) -> tuple[Any, bytes]:
        """Return ``(decapsulation_key_object, ek_bytes)``."""
        ...

    def encaps(self, ek: bytes) -> tuple[bytes, bytes]:
        """Return ``(shared_secret, ciphertext)``."""
        ...

    def decaps(self, key: Any, ct: bytes) -> bytes: ...


class _CryptographyBackend:
    name = "cryptography"

    def __init__(self, params: MLKEMParams) -> None:
        mlkem = import_module("cryptography.hazmat.primitives.asymmetric.mlkem")
        self._private = getattr(mlkem, f"MLKEM{params.size}PrivateKey")
        self._public = getattr(mlkem, f"MLKEM{params.size}PublicKey")

    def keygen(self) -> tuple[Any, bytes]:
        key = self._private.generate()
        return key, key.public_key().public_bytes_raw()

    def encaps(self, ek: bytes) -> tuple[bytes, bytes]:
        shared_secret, ct = self._public.from_public_bytes(ek).encapsulate()
        return shared_secret, ct

    def decaps(self, key: Any, ct: bytes) -> bytes:
        return bytes(key.decapsulate(ct))


class _PqcryptoBackend:
    name = "pqcrypto"

    def __init__(self, params: MLKEMParams) -> None:
        self._kem = import_module(f"pqcrypto.kem.ml_kem_{params.size}")

    def keygen(self) -> tuple[Any, bytes]:
        ek, dk = self._kem.keygen()
        return dk, ek

    def encaps(self, ek: bytes) -> tuple[bytes, bytes]:
        ct, shared_secret = self._kem.encaps(ek)  # pqcrypto returns them the other way round
        return shared_secret, ct

    def decaps(self, key: Any, ct: bytes) -> bytes:
        return bytes(self._kem.decaps(key, ct))


_FACTORIES: dict[str, Callable[[MLKEMParams], MLKEMBackend]] = {
    "cryptography": _CryptographyBackend,
    "pqcrypto": _PqcryptoBackend,
}


@cache
def _probe(backend: str, size: int) -> MLKEMBackend | None:
    """Build and exercise a backend once: importable is not enough (OpenSSL may lack ML-KEM)."""
    try:
        impl: MLKEMBackend = _FACTORIES[backend](PARAMS[size])
        key, ek = impl.keygen()
        shared_secret, ct = impl.encaps(ek)
        if impl.decaps(key, ct) != shared_secret:
            return None
    except Exception:  # ImportError, AttributeError, UnsupportedAlgorithm, ...
        return None
    return impl


def forced_backend() -> str | None:
    """The backend pinned by the environment, or None; a typo must fail loudly, not degrade."""
    value = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not value:
        return None
    if value not in BACKENDS:
        raise MLKEMBackendError(f"{BACKEND_ENV}={value!r} is not one of: {', '.join(BACKENDS)}")
    return value


def select_backend(params: MLKEMParams, backend: str | None = None) -> MLKEMBackend:
    """Return ``backend`` if given, else the pinned one, else the first available by preference."""
    choice = backend if backend is not None else forced_backend()
    if choice is not None:
        if choice not in BACKENDS:
            raise MLKEMBackendError(f"unknown ML-KEM backend {choice!r}")
        impl = _probe(choice, params.size)
        if impl is None:
            raise MLKEMBackendError(f"ML-KEM backend {choice!r} cannot do ML-KEM-{params.size}")
        return impl
    for name in BACKENDS:
        impl = _probe(name, params.size)
        if impl is not None:
            return impl
    raise MLKEMBackendError(f"no installed backend can do ML-KEM-{params.size}")


def available_backends(params: MLKEMParams) -> list[str]:
    """Backends that work for ``params`` on this machine (used by tests to cover each one)."""
    return [name for name in BACKENDS if _probe(name, params.size) is not None]


def mlkem_backends() -> dict[str, str | None]:
    """Which backend each parameter set would use now, e.g. ``{"MLKEM512": "pqcrypto", ...}``.

    ``None`` means no backend is usable under the current ``PQ_QUIC_MLKEM_BACKEND``.
    """
    result: dict[str, str | None] = {}
    for params in PARAMS.values():
        try:
            result[params.name] = select_backend(params).name
        except MLKEMBackendError:
            result[params.name] = None
    return result


class MLKEMBasedGroup:
    """Shared machinery of ML-KEM and Kyber groups: validation, backend calls, a final-key hook.

    Kyber round 3 uses the same keys and ciphertexts and differs only in how the final key is
    derived, so subclasses override :meth:`_final_key` and nothing else.
    """

    post_quantum = True
    codepoint: int
    name: str

    def __init__(self, params: MLKEMParams, backend: str | None = None) -> None:
        self.params = params
        self._backend = select_backend(params, backend)
        self.backend_name = self._backend.name
        self.share_size = params.ek_size
        self.reply_size = params.ct_size

    def generate(self) -> tuple[Any, bytes]:
        return self._backend.keygen()

    def encapsulate(self, peer_share: bytes) -> tuple[bytes, bytes]:
        if len(peer_share) != self.params.ek_size:
            raise InvalidKeyShare(
                f"{self.name} encapsulation key is {len(peer_share)} bytes, "
                f"expected {self.params.ek_size}"
            )
        if not passes_modulus_check(self.params, peer_share):
            raise InvalidKeyShare(f"{self.name} encapsulation key fails the FIPS 203 modulus check")
        try:
            shared_secret, ct = self._backend.encaps(bytes(peer_share))
        except ValueError as exc:  # cannot happen after our checks; never let it escape raw
            raise InvalidKeyShare(f"{self.name} encapsulation key rejected: {exc}") from exc
        return self._final_key(shared_secret, ct), ct

    def decapsulate(self, private_state: Any, reply_share: bytes) -> bytes:
        if len(reply_share) != self.params.ct_size:
            raise InvalidKeyShare(
                f"{self.name} ciphertext is {len(reply_share)} bytes, "
                f"expected {self.params.ct_size}"
            )
        try:
            shared_secret = self._backend.decaps(private_state, bytes(reply_share))
        except ValueError as exc:
            raise InvalidKeyShare(f"{self.name} ciphertext rejected: {exc}") from exc
        return self._final_key(shared_secret, reply_share)

    def _final_key(self, shared_secret: bytes, ciphertext: bytes) -> bytes:
        return shared_secret

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} 0x{self.codepoint:04X} "
            f"backend={self.backend_name}>"
        )


class MLKEMGroup(MLKEMBasedGroup):
    """Pure ML-KEM as a TLS group (draft-connolly-tls-mlkem-key-agreement)."""

    _CODEPOINTS = {512: 0x0200, 768: 0x0201, 1024: 0x0202}

    def __init__(self, params: MLKEMParams, backend: str | None = None) -> None:
        super().__init__(params, backend)
        self.name = params.name
        self.codepoint = self._CODEPOINTS[params.size]
