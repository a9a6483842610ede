"""Key-exchange groups against the wire-format table, with real cryptography and no mocks.

Independent implementations (kyber-py) are in test_groups_crosscheck.py; here the components are
run by hand on slices of hybrid shares, which pins the concatenation order.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from pq_quic_plugin.groups import Group, HybridGroup, InvalidKeyShare, builtin_groups
from pq_quic_plugin.groups.ecdh import X25519Group, secp256r1, secp384r1
from pq_quic_plugin.groups.kyber import KyberGroup, kyber_final_key
from pq_quic_plugin.groups.mlkem import (
    BACKEND_ENV,
    ML_KEM_512,
    ML_KEM_768,
    ML_KEM_1024,
    PARAMS,
    MLKEMBackendError,
    MLKEMGroup,
    MLKEMParams,
    available_backends,
    mlkem_backends,
    passes_modulus_check,
)

# name: (codepoint, client share, server share, shared secret, post-quantum), from the notes.
TABLE: dict[str, tuple[int, int, int, int, bool]] = {
    "X25519MLKEM768": (0x11EC, 1216, 1120, 64, True),
    "SecP256r1MLKEM768": (0x11EB, 65 + 1184, 65 + 1088, 64, True),
    "SecP384r1MLKEM1024": (0x11ED, 97 + 1568, 97 + 1568, 80, True),
    "X25519Kyber768Draft00": (0x6399, 32 + 1184, 32 + 1088, 64, True),
    "X25519Kyber768Draft00Old": (0xFE31, 32 + 1184, 32 + 1088, 64, True),
    "X25519Kyber512Draft00": (0xFE30, 32 + 800, 32 + 768, 64, True),
    "MLKEM1024": (0x0202, 1568, 1568, 32, True),
    "MLKEM768": (0x0201, 1184, 1088, 32, True),
    "MLKEM512": (0x0200, 800, 768, 32, True),
    "x25519": (0x001D, 32, 32, 32, False),
    "secp256r1": (0x0017, 65, 65, 32, False),
    "secp384r1": (0x0018, 97, 97, 48, False),
}
ORDER = list(TABLE)

# Where the ML-KEM / Kyber encapsulation key sits inside each group's client share.
EK_OFFSET = {
    "X25519MLKEM768": 0,
    "SecP256r1MLKEM768": 65,
    "SecP384r1MLKEM1024": 97,
    "X25519Kyber768Draft00": 32,
    "X25519Kyber768Draft00Old": 32,
    "X25519Kyber512Draft00": 32,
    "MLKEM1024": 0,
    "MLKEM768": 0,
    "MLKEM512": 0,
}
EK_PARAMS = {
    "X25519MLKEM768": ML_KEM_768,
    "SecP256r1MLKEM768": ML_KEM_768,
    "SecP384r1MLKEM1024": ML_KEM_1024,
    "X25519Kyber768Draft00": ML_KEM_768,
    "X25519Kyber768Draft00Old": ML_KEM_768,
    "X25519Kyber512Draft00": ML_KEM_512,
    "MLKEM1024": ML_KEM_1024,
    "MLKEM768": ML_KEM_768,
    "MLKEM512": ML_KEM_512,
}
BACKENDS = sorted({b for p in PARAMS.values() for b in available_backends(p)})

GROUPS = {g.name: g for g in builtin_groups()}


def group(name: str) -> Group:
    return GROUPS[name]


def set_coefficient(ek: bytes, index: int, value: int) -> bytes:
    """Overwrite the ``index``-th 12-bit coefficient of an encoded ML-KEM key."""
    raw = bytearray(ek)
    pos = 3 * (index // 2)
    pair = int.from_bytes(raw[pos : pos + 3], "little")
    shift = 12 * (index % 2)
    pair = (pair & ~(0xFFF << shift)) | (value << shift)
    raw[pos : pos + 3] = pair.to_bytes(3, "little")
    return bytes(raw)


def naive_modulus_check(params: MLKEMParams, ek: bytes) -> bool:
    for pos in range(0, 384 * params.k, 3):
        b0, b1, b2 = ek[pos : pos + 3]
        if (b0 | (b1 & 0x0F) << 8) >= 3329 or (b1 >> 4 | b2 << 4) >= 3329:
            return False
    return True


# --- the table ---------------------------------------------------------------------------------


def test_builtin_order_names_and_codepoints() -> None:
    groups = builtin_groups()
    assert [g.name for g in groups] == ORDER
    assert [g.codepoint for g in groups] == [TABLE[n][0] for n in ORDER]
    assert len({g.name.lower() for g in groups}) == len(groups)
    assert len({g.codepoint for g in groups}) == len(groups)
    assert all(isinstance(g, Group) for g in groups)


@pytest.mark.parametrize("name", ORDER)
def test_round_trip_and_sizes(name: str) -> None:
    g = group(name)
    codepoint, share_len, reply_len, secret_len, pq = TABLE[name]
    assert (g.codepoint, g.post_quantum) == (codepoint, pq)
    assert (g.share_size, g.reply_size) == (share_len, reply_len)  # type: ignore[attr-defined]
    for _ in range(3):
        state, share = g.generate()
        secret, reply = g.encapsulate(share)
        assert (len(share), len(reply), len(secret)) == (share_len, reply_len, secret_len)
        assert g.decapsulate(state, reply) == secret
    # Fresh randomness every time.
    assert g.generate()[1] != g.generate()[1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("params", list(PARAMS.values()), ids=lambda p: p.name)
@pytest.mark.parametrize("kind", [MLKEMGroup, KyberGroup])
def test_kem_round_trip_on_every_backend(
    kind: Callable[..., MLKEMGroup], params: MLKEMParams, backend: str
) -> None:
    if backend not in available_backends(params):
        pytest.skip(f"{backend} has no ML-KEM-{params.size}")
    g = kind(params, backend)
    assert g.backend_name == backend
    state, ek = g.generate()
    secret, ct = g.encapsulate(ek)
    assert (len(ek), len(ct), len(secret)) == (params.ek_size, params.ct_size, 32)
    assert g.decapsulate(state, ct) == secret


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ORDER)
@pytest.mark.parametrize("delta", [-1, 1, "empty"])
def test_wrong_length_share_and_reply(name: str, delta: int | str) -> None:
    g = group(name)
    state, share = g.generate()
    _, reply = g.encapsulate(share)
    bad_share = b"" if delta == "empty" else (share + bytes(2))[: len(share) + int(delta)]
    bad_reply = b"" if delta == "empty" else (reply + bytes(2))[: len(reply) + int(delta)]
    with pytest.raises(InvalidKeyShare, match=name):
        g.encapsulate(bad_share)
    with pytest.raises(InvalidKeyShare, match=name):
        g.decapsulate(state, bad_reply)


def test_length_messages_are_clear() -> None:
    with pytest.raises(InvalidKeyShare, match=r"^secp256r1 key share is 64 bytes, expected 65$"):
        secp256r1().encapsulate(bytes(64))
    with pytest.raises(InvalidKeyShare, match=r"MLKEM768 ciphertext is 1087 bytes, expected 1088"):
        MLKEMGroup(ML_KEM_768).decapsulate(MLKEMGroup(ML_KEM_768).generate()[0], bytes(1087))
    with pytest.raises(
        InvalidKeyShare,
        match=r"^X25519MLKEM768 key share is 1215 bytes, expected 1216 "
        r"\(MLKEM768 1184 \+ x25519 32\)$",
    ):
        group("X25519MLKEM768").encapsulate(bytes(1215))


def _off_curve(size: int) -> bytes:
    return b"\x04" + b"\x01" * (size - 1)


# (group, offset of the classical part in share and reply, bad classical part, expected message)
BAD_CLASSICAL = [
    ("x25519", 0, 0, bytes(32), "low-order"),
    ("secp256r1", 0, 0, _off_curve(65), "not a point on the curve"),
    ("secp256r1", 0, 0, b"\x02" + bytes(64), "not an uncompressed point"),
    ("secp384r1", 0, 0, _off_curve(97), "not a point on the curve"),
    ("X25519MLKEM768", 1184, 1088, bytes(32), "low-order"),
    ("X25519MLKEM768", 1184, 1088, b"\x01" + bytes(31), "low-order"),
    ("SecP256r1MLKEM768", 0, 0, _off_curve(65), "not a point on the curve"),
    ("SecP384r1MLKEM1024", 0, 0, _off_curve(97), "not a point on the curve"),
    ("X25519Kyber768Draft00", 0, 0, bytes(32), "low-order"),
    ("X25519Kyber768Draft00Old", 0, 0, bytes(32), "low-order"),
    ("X25519Kyber512Draft00", 0, 0, bytes(32), "low-order"),
]


@pytest.mark.parametrize(("name", "share_at", "reply_at", "bad", "message"), BAD_CLASSICAL)
def test_invalid_curve_point(name: str, share_at: int, reply_at: int, bad: bytes, message: str):
    g = group(name)
    state, share = g.generate()
    _, reply = g.encapsulate(share)
    bad_share = share[:share_at] + bad + share[share_at + len(bad) :]
    bad_reply = reply[:reply_at] + bad + reply[reply_at + len(bad) :]
    assert len(bad_share) == len(share) and len(bad_reply) == len(reply)
    with pytest.raises(InvalidKeyShare, match=message) as info:
        g.encapsulate(bad_share)
    assert name in str(info.value)
    with pytest.raises(InvalidKeyShare, match=message):
        g.decapsulate(state, bad_reply)


def groups_pinned_to(backend: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Group]:
    monkeypatch.setenv(BACKEND_ENV, backend)
    return {g.name: g for g in builtin_groups()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(EK_OFFSET))
@pytest.mark.parametrize("index,value", [(0, 3329), (1, 4095), (-1, 3329), (-2, 3500)])
def test_modulus_check_rejects_bad_key(
    name: str, backend: str, index: int, value: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = groups_pinned_to(backend, monkeypatch)
    if name not in pinned:
        pytest.skip(f"{name} is not available with {backend}")
    g = pinned[name]
    params = EK_PARAMS[name]
    at = EK_OFFSET[name]
    _, share = g.generate()
    ek = share[at : at + params.ek_size]
    bad_ek = set_coefficient(ek, index % (256 * params.k), value)
    assert naive_modulus_check(params, ek) and not naive_modulus_check(params, bad_ek)
    bad_share = share[:at] + bad_ek + share[at + params.ek_size :]
    with pytest.raises(InvalidKeyShare, match="fails the FIPS 203 modulus check") as info:
        g.encapsulate(bad_share)
    assert name in str(info.value)
    # The largest legal coefficient is still accepted.
    ok_share = (
        share[:at]
        + set_coefficient(ek, index % (256 * params.k), 3328)
        + share[at + params.ek_size :]
    )
    g.encapsulate(ok_share)


def test_modulus_message() -> None:
    g = MLKEMGroup(ML_KEM_768)
    bad = set_coefficient(g.generate()[1], 5, 3329)
    with pytest.raises(
        InvalidKeyShare, match=r"^MLKEM768 encapsulation key fails the FIPS 203 modulus check$"
    ):
        g.encapsulate(bad)


@pytest.mark.parametrize("params", list(PARAMS.values()), ids=lambda p: p.name)
def test_fast_modulus_check_matches_naive(params: MLKEMParams) -> None:
    rng = random.Random(params.size)
    for _ in range(300):
        # Coefficients mostly legal, a few at or around the boundary.
        coefficients = [
            rng.choice((rng.randrange(3329), 3328, 3329, 4095)) for _ in range(256 * params.k)
        ]
        if rng.random() < 0.5:
            coefficients = [c if c < 3329 else rng.randrange(3329) for c in coefficients]
            if rng.random() < 0.5:
                coefficients[rng.randrange(len(coefficients))] = rng.randrange(3329, 4096)
        body = bytearray()
        for a, b in zip(coefficients[::2], coefficients[1::2], strict=True):
            body += (a | b << 12).to_bytes(3, "little")
        ek = bytes(body) + os.urandom(32)
        assert passes_modulus_check(params, ek) == naive_modulus_check(params, ek)


# --- hybrid order ------------------------------------------------------------------------------


def components(name: str) -> tuple[Group, Group]:
    g = group(name)
    assert isinstance(g, HybridGroup)
    return g.first, g.second


HYBRID_ORDER = {
    "X25519MLKEM768": ("MLKEM768", "x25519"),
    "SecP256r1MLKEM768": ("secp256r1", "MLKEM768"),
    "SecP384r1MLKEM1024": ("secp384r1", "MLKEM1024"),
    "X25519Kyber768Draft00": ("x25519", "Kyber768"),
    "X25519Kyber768Draft00Old": ("x25519", "Kyber768"),
    "X25519Kyber512Draft00": ("x25519", "Kyber512"),
}


def fresh_component(name: str) -> Group:
    """A separate instance, so the hand-run side shares no object with the hybrid."""
    factories: dict[str, Callable[[], Group]] = {
        "x25519": X25519Group,
        "secp256r1": secp256r1,
        "secp384r1": secp384r1,
        "MLKEM768": lambda: MLKEMGroup(ML_KEM_768),
        "MLKEM1024": lambda: MLKEMGroup(ML_KEM_1024),
        "Kyber768": lambda: KyberGroup(ML_KEM_768),
        "Kyber512": lambda: KyberGroup(ML_KEM_512),
    }
    return factories[name]()


@pytest.mark.parametrize("name", list(HYBRID_ORDER))
def test_hybrid_component_order(name: str) -> None:
    g = group(name)
    first_name, second_name = HYBRID_ORDER[name]
    assert tuple(c.name for c in components(name)) == (first_name, second_name)
    first, second = fresh_component(first_name), fresh_component(second_name)
    cut_share = first.share_size  # type: ignore[attr-defined]
    cut_reply = first.reply_size  # type: ignore[attr-defined]

    # Client share from the hybrid; server side run by hand on the slices.
    state, share = g.generate()
    s1, r1 = first.encapsulate(share[:cut_share])
    s2, r2 = second.encapsulate(share[cut_share:])
    assert g.decapsulate(state, r1 + r2) == s1 + s2

    # Client share built by hand; server side is the hybrid; client finishes by hand.
    st1, k1 = first.generate()
    st2, k2 = second.generate()
    secret, reply = g.encapsulate(k1 + k2)
    assert secret == first.decapsulate(st1, reply[:cut_reply]) + second.decapsulate(
        st2, reply[cut_reply:]
    )


def test_x25519mlkem768_share_layout() -> None:
    """The first 1184 bytes are the ML-KEM key, the last 32 the X25519 key (and not the reverse)."""
    g = group("X25519MLKEM768")
    state, share = g.generate()
    mlkem, x25519 = MLKEMGroup(ML_KEM_768), X25519Group()
    ss_kem, ct = mlkem.encapsulate(share[:1184])
    ss_x, pub = x25519.encapsulate(share[-32:])
    assert g.decapsulate(state, ct + pub) == ss_kem + ss_x
    # The swapped order is the right length but yields another key (ML-KEM's implicit rejection).
    try:
        swapped = g.decapsulate(state, pub + ct)
    except InvalidKeyShare:  # the X25519 slice happened to be a low-order point
        swapped = b""
    assert swapped != ss_kem + ss_x


def test_kyber_secret_differs_from_mlkem() -> None:
    kem = MLKEMGroup(ML_KEM_768)
    kyber = KyberGroup(ML_KEM_768)
    state, ek = kem.generate()
    ss, ct = kem.encapsulate(ek)
    assert kyber.decapsulate(state, ct) == kyber_final_key(ss, ct) != ss


def test_hybrid_needs_component_sizes() -> None:
    class Bare:
        codepoint, name, post_quantum = 1, "bare", False

    with pytest.raises(TypeError, match="bare"):
        HybridGroup("x", 2, X25519Group(), Bare())  # type: ignore[arg-type]


# --- backend selection -------------------------------------------------------------------------


def test_default_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    chosen = mlkem_backends()
    assert set(chosen) == {"MLKEM512", "MLKEM768", "MLKEM1024"}
    for params in PARAMS.values():
        assert chosen[params.name] == available_backends(params)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_backend(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    groups = groups_pinned_to(backend, monkeypatch)
    chosen = mlkem_backends()
    for params in PARAMS.values():
        usable = backend in available_backends(params)
        assert chosen[params.name] == (backend if usable else None)
        assert (params.name in groups) == usable
        if not usable:
            with pytest.raises(MLKEMBackendError, match=backend):
                MLKEMGroup(params)
    for g in groups.values():
        for part in (g.first, g.second) if isinstance(g, HybridGroup) else (g,):
            if isinstance(part, MLKEMGroup | KyberGroup):
                assert part.backend_name == backend
    assert "x25519" in groups


def test_unknown_backend_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "openssl")
    with pytest.raises(MLKEMBackendError, match="PQ_QUIC_MLKEM_BACKEND='openssl'"):
        builtin_groups()
    with pytest.raises(MLKEMBackendError):
        MLKEMGroup(ML_KEM_768, "liboqs")
