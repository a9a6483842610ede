"""Our groups against independent implementations.

Two copies of our own code agree even when both are wrong in the same way, so every claim here
is checked against something we did not write: the other ML-KEM backend, kyber-py's pure-Python
ML-KEM (FIPS 203) and Kyber round 3, and ``cryptography``'s X25519 used directly to build hybrid
peers by hand. kyber-py ships no published test vectors, so seeded key generation (the same
64-byte seed must give the same key in two implementations) stands in for them.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from kyber_py.kyber import Kyber512, Kyber768
from kyber_py.ml_kem import ML_KEM_512, ML_KEM_768, ML_KEM_1024

from pq_quic_plugin.groups import InvalidKeyShare, builtin_groups
from pq_quic_plugin.groups.kyber import KyberGroup
from pq_quic_plugin.groups.mlkem import (
    PARAMS,
    MLKEMGroup,
    MLKEMParams,
    available_backends,
    passes_modulus_check,
)

KYBER_PY_MLKEM = {512: ML_KEM_512, 768: ML_KEM_768, 1024: ML_KEM_1024}
KYBER_PY_R3 = {512: Kyber512, 768: Kyber768}

BACKEND_CASES = [
    pytest.param(params, backend, id=f"{params.name}-{backend}")
    for params in PARAMS.values()
    for backend in available_backends(params)
]


def _both(size: int) -> tuple[MLKEMGroup, MLKEMGroup]:
    params = PARAMS[size]
    if set(available_backends(params)) != {"cryptography", "pqcrypto"}:
        pytest.skip(f"both backends are needed for ML-KEM-{size}")
    return MLKEMGroup(params, "cryptography"), MLKEMGroup(params, "pqcrypto")


@pytest.mark.parametrize("size", [768, 1024])
def test_cryptography_and_pqcrypto_agree(size: int) -> None:
    a, b = _both(size)
    for keygen, encaps in ((a, b), (b, a)):
        state, ek = keygen.generate()
        secret, ct = encaps.encapsulate(ek)
        assert keygen.decapsulate(state, ct) == secret


def _agree_both_ways(ours: Any, theirs: Any) -> None:
    """kyber-py's keygen, our encapsulation, kyber-py's decapsulation; then our keygen,
    kyber-py's encapsulation, our decapsulation: each pair must agree on the secret."""
    ek, dk = theirs.keygen()
    secret, ct = ours.encapsulate(ek)
    assert theirs.decaps(dk, ct) == secret
    state, ek = ours.generate()
    key, ct = theirs.encaps(ek)
    assert ours.decapsulate(state, ct) == key


@pytest.mark.parametrize(("params", "backend"), BACKEND_CASES)
def test_backend_against_kyber_py_mlkem(params: MLKEMParams, backend: str) -> None:
    _agree_both_ways(MLKEMGroup(params, backend), KYBER_PY_MLKEM[params.size])


@pytest.mark.parametrize("size", [768, 1024])
def test_seeded_keygen_matches_kyber_py(size: int) -> None:
    """Same seed (d || z), same encapsulation key: a known-answer test without shipped vectors."""
    from cryptography.hazmat.primitives.asymmetric import mlkem

    private_class = getattr(mlkem, f"MLKEM{size}PrivateKey")
    for _ in range(3):
        seed = os.urandom(64)
        ek, _ = KYBER_PY_MLKEM[size].key_derive(seed)
        assert private_class.from_seed_bytes(seed).public_key().public_bytes_raw() == ek


@pytest.mark.parametrize(("params", "backend"), BACKEND_CASES)
def test_kyber_against_kyber_py_round3(params: MLKEMParams, backend: str) -> None:
    if params.size not in KYBER_PY_R3:
        pytest.skip("no draft hybrid uses Kyber1024")
    _agree_both_ways(KyberGroup(params, backend), KYBER_PY_R3[params.size])


def _x25519_peer() -> tuple[x25519.X25519PrivateKey, bytes]:
    key = x25519.X25519PrivateKey.generate()
    return key, key.public_key().public_bytes_raw()


# Hybrid peers assembled by hand from kyber-py and cryptography's X25519, in the order the drafts
# give (ML-KEM first only in X25519MLKEM768).
HAND_BUILT = {
    "X25519MLKEM768": (ML_KEM_768, "kem-first"),
    "X25519Kyber768Draft00": (Kyber768, "x25519-first"),
    "X25519Kyber768Draft00Old": (Kyber768, "x25519-first"),
    "X25519Kyber512Draft00": (Kyber512, "x25519-first"),
}


@pytest.mark.parametrize("name", list(HAND_BUILT))
def test_hybrid_against_hand_built_peer(name: str) -> None:
    group = {g.name: g for g in builtin_groups()}[name]
    kem, order = HAND_BUILT[name]
    x_len = 32

    # We are the client, the hand-built peer is the server.
    state, share = group.generate()
    if order == "kem-first":
        ek, x_pub = share[:-x_len], share[-x_len:]
    else:
        x_pub, ek = share[:x_len], share[x_len:]
    kem_secret, ct = kem.encaps(ek)
    x_key, x_reply = _x25519_peer()
    x_secret = x_key.exchange(x25519.X25519PublicKey.from_public_bytes(x_pub))
    if order == "kem-first":
        reply, expected = ct + x_reply, kem_secret + x_secret
    else:
        reply, expected = x_reply + ct, x_secret + kem_secret
    assert group.decapsulate(state, reply) == expected

    # The hand-built peer is the client, we are the server.
    ek, dk = kem.keygen()
    x_key, x_pub = _x25519_peer()
    share = ek + x_pub if order == "kem-first" else x_pub + ek
    secret, reply = group.encapsulate(share)
    if order == "kem-first":
        ct, x_reply = reply[:-x_len], reply[-x_len:]
        expected = kem.decaps(dk, ct) + x_key.exchange(
            x25519.X25519PublicKey.from_public_bytes(x_reply)
        )
    else:
        x_reply, ct = reply[:x_len], reply[x_len:]
        expected = x_key.exchange(x25519.X25519PublicKey.from_public_bytes(x_reply)) + kem.decaps(
            dk, ct
        )
    assert secret == expected


@pytest.mark.parametrize("size", [768, 1024])
def test_modulus_check_agrees_with_cryptography(size: int) -> None:
    """Our check refuses exactly what OpenSSL refuses, on keys with one coefficient pushed out."""
    from cryptography.hazmat.primitives.asymmetric import mlkem

    public_class = getattr(mlkem, f"MLKEM{size}PublicKey")
    params = PARAMS[size]
    ek, _ = KYBER_PY_MLKEM[size].keygen()
    for index in (0, 1, 2, 255, 256 * params.k - 1):
        for value in (3328, 3329, 4095):
            raw = bytearray(ek)
            pos, shift = 3 * (index // 2), 12 * (index % 2)
            pair = int.from_bytes(raw[pos : pos + 3], "little")
            pair = (pair & ~(0xFFF << shift)) | (value << shift)
            raw[pos : pos + 3] = pair.to_bytes(3, "little")
            try:
                public_class.from_public_bytes(bytes(raw)).encapsulate()
                openssl_ok = True
            except ValueError:
                openssl_ok = False
            assert passes_modulus_check(params, bytes(raw)) == openssl_ok == (value < 3329)
            if not openssl_ok:
                for backend in available_backends(params):
                    with pytest.raises(InvalidKeyShare, match="modulus check"):
                        MLKEMGroup(params, backend).encapsulate(bytes(raw))
