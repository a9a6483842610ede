"""Mutated ClientHellos: what the fuzz test throws at each listener.

:func:`cases` yields ``(kind, crypto_data)`` pairs from a seeded ``random.Random``, so a failing
run is reproduced by its seed. Every case starts from a well-formed hello for the listener
(:func:`fuzz_clienthello_wire.baseline`) and then breaks it in one or two of these ways:

* bytes: bit flips, bytes set to 0x00/0xFF/random, truncation (with and without a handshake
  length that matches), trailing garbage;
* structure: every length field (handshake, session id, cipher suites, compression, the
  extension block, each extension and its inner list) set to 0, 1, its maximum or off by one;
  extensions duplicated, dropped, reordered, added with unknown types and large bodies;
* groups: huge supported_groups lists (110 to 32,000 entries, none accepted), odd byte counts,
  empty lists, GREASE, duplicates, only unknown groups with or without shares;
* key shares: for every registered group, shares of the wrong length (0, 1, one short, one long,
  doubled) and of the right length but invalid (all zero, all 0xFF); duplicate entries, shares
  for groups not listed, a hundred entries;
* fields: session ids and cipher suites of odd sizes, non-null compression, no TLS 1.3, empty
  or huge (5,000 unknown) signature algorithm lists, odd ALPN and server names, transport
  parameters missing, garbled or duplicated, PSK and early-data extensions with garbage;
* the HelloRetryRequest path: a hello that earns a retry, followed in the same CRYPTO stream by
  a mutated second hello.

The first cases of every run walk the key-share table for every group once, so even a short
run covers each group; the rest are drawn at random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from fuzz_clienthello_wire import (
    ALPN,
    KEY_SHARE,
    PSK_KEY_EXCHANGE_MODES,
    QUIC_TRANSPORT_PARAMETERS,
    SERVER_NAME,
    SIGNATURE_ALGORITHMS,
    SUPPORTED_GROUPS,
    SUPPORTED_VERSIONS,
    Hello,
    alpn_body,
    baseline,
    key_share_body,
    key_share_for,
    opaque8,
    opaque16,
    server_name_body,
    u16,
    u16_list,
    unknown_groups,
)

from pq_quic_plugin.plugins import registry

X25519 = 0x001D
X25519MLKEM768 = 0x11EC
PRE_SHARED_KEY = 41
EARLY_DATA = 42
GREASE = [0x0A0A, 0x1A1A, 0xFAFA]

#: ``(kind, source connection ID, crypto data)``: the hello names the SCID in its transport
#: parameters, so the Initial packets that carry it must use the same one.
Case = tuple[str, bytes, bytes]


@dataclass(frozen=True)
class Target:
    """What a listener accepts: its ALPN, and the groups a clean hello offers and shares."""

    alpn: str
    groups: tuple[int, ...] = (X25519MLKEM768, X25519)
    shares: tuple[int, ...] = (X25519MLKEM768, X25519)

    def hello(self, scid: bytes) -> Hello:
        return baseline(scid, self.alpn, list(self.groups), list(self.shares))


def every_group() -> list[int]:
    return [g.codepoint for g in registry()]


def _share_lengths(codepoint: int) -> list[tuple[str, bytes]]:
    """Shares of ``codepoint``'s group that are wrong: by length, and by content."""
    good = key_share_for(codepoint)
    n = len(good)
    return [
        ("empty", b""),
        ("one-byte", b"\x04"),
        ("short", good[:-1]),
        ("long", good + b"\x00"),
        ("double", good + good),
        ("zeros", bytes(n)),
        ("ones", b"\xff" * n),
    ]


def key_share_table(rng: random.Random, target: Target) -> Iterator[Case]:
    """For every registered group, each wrong share in :func:`_share_lengths`, with that group
    listed first so that a server which accepts it must look at the share."""
    for cp in every_group():
        for label, share in _share_lengths(cp):
            scid = rng.randbytes(8)
            hello = target.hello(scid)
            hello = hello.with_extension(SUPPORTED_GROUPS, u16_list([cp, *target.groups]))
            hello = hello.with_extension(KEY_SHARE, key_share_body([(cp, share)]))
            yield f"keyshare-{cp:04x}-{label}", scid, hello.encode()[0]


# ------------------------------------------------------------------------- byte mutations


def bitflip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def byteset(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.choice([0x00, 0xFF, rng.randrange(256)])
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    cut = rng.randrange(1, len(data))
    out = bytearray(data[:cut])
    if cut >= 4 and rng.random() < 0.5:  # a complete message that ends early
        out[1:4] = (cut - 4).to_bytes(3, "big")
    return bytes(out)


def trailing(rng: random.Random, data: bytes) -> bytes:
    extra = rng.randbytes(rng.choice([1, 7, 300]))
    if rng.random() < 0.5:  # inside the message: its length covers the garbage
        body_len = len(data) - 4 + len(extra)
        return data[:1] + body_len.to_bytes(3, "big") + data[4:] + extra
    return data + extra  # after it: a second, garbage handshake message


def corrupt_length(rng: random.Random, data: bytes, lengths: list[tuple[int, int]]) -> bytes:
    offset, size = rng.choice(lengths)
    if offset + size > len(data):
        return bitflip(rng, data)
    current = int.from_bytes(data[offset : offset + size], "big")
    top = (1 << (8 * size)) - 1
    value = rng.choice([0, 1, top, current + 1, current - 1, rng.randrange(top + 1)])
    value = max(0, min(top, value))
    return data[:offset] + value.to_bytes(size, "big") + data[offset + size :]


# ------------------------------------------------------------------ structural mutations


def dup_extension(rng: random.Random, hello: Hello) -> Hello:
    exts = list(hello.extensions)
    for _ in range(rng.randint(1, 3)):
        exts.insert(rng.randrange(len(exts) + 1), rng.choice(hello.extensions))
    return replace(hello, extensions=exts)


def drop_extension(rng: random.Random, hello: Hello) -> Hello:
    exts = list(hello.extensions)
    for _ in range(rng.randint(1, min(3, len(exts)))):
        exts.pop(rng.randrange(len(exts)))
    return replace(hello, extensions=exts)


def shuffle_extensions(rng: random.Random, hello: Hello) -> Hello:
    exts = list(hello.extensions)
    rng.shuffle(exts)
    return replace(hello, extensions=exts)


def unknown_extension(rng: random.Random, hello: Hello) -> Hello:
    ext_type = rng.choice([0xFFFF, 0x1234, rng.choice(GREASE), 0x0017, 0x0023, 0x002C])
    body = rng.randbytes(rng.choice([0, 1, 33, 1000, 4000]))
    exts = list(hello.extensions)
    exts.insert(rng.randrange(len(exts) + 1), (ext_type, body))
    return replace(hello, extensions=exts)


def odd_groups(rng: random.Random, hello: Hello) -> Hello:
    known = every_group()
    choice = rng.randrange(9)
    if choice == 0:  # many groups, none accepted: the refusal must still fit one packet
        count = rng.choice([110, 300, 1000, 5000])
        body = u16_list(unknown_groups(count))
        hello = hello.with_extension(KEY_SHARE, key_share_body([(0x2000, b"x" * 32)]))
    elif choice == 1:
        body = b"\x00\x03" + b"\x11\xec\x00"  # an odd byte count
    elif choice == 2:
        body = u16_list([])
    elif choice == 3:
        body = u16_list(GREASE)
    elif choice == 4:
        body = u16_list([X25519MLKEM768] * 50 + [X25519] * 50)
    elif choice == 5:
        body = u16_list(known + GREASE)
    elif choice == 6:
        body = u16_list([0])
    elif choice == 7:  # groups we do not know, and shares for them
        unknown = [0x7000 + i for i in range(5)]
        body = u16_list(unknown)
        hello = hello.with_extension(
            KEY_SHARE, key_share_body([(cp, rng.randbytes(32)) for cp in unknown])
        )
    else:  # listed but unshared, so the server may ask for a retry
        body = u16_list(rng.sample(known, k=min(4, len(known))))
    return hello.with_extension(SUPPORTED_GROUPS, body)


def huge_groups(rng: random.Random, hello: Hello) -> Hello:
    """The largest list a ClientHello can carry (~64 KB), none accepted."""
    count = rng.choice([16000, 32000])
    hello = hello.with_extension(KEY_SHARE, key_share_body([(0x2000, b"x" * 32)]))
    return hello.with_extension(SUPPORTED_GROUPS, u16_list(unknown_groups(count)))


def odd_key_shares(rng: random.Random, hello: Hello) -> Hello:
    known = every_group()
    cp = rng.choice(known)
    share = key_share_for(cp)
    choice = rng.randrange(5)
    if choice == 0:
        entries = [(cp, share), (cp, share)]  # two shares for one group
    elif choice == 1:
        entries = [(0x7000 + i, rng.randbytes(16)) for i in range(100)]
    elif choice == 2:  # a share for a group the client does not list
        hello = hello.with_extension(SUPPORTED_GROUPS, u16_list([X25519]))
        entries = [(cp, share)]
    elif choice == 3:
        entries = []
    else:
        entries = [(cp, rng.randbytes(rng.choice([0, 1, 31, 65, 1000, 2000])))]
    return hello.with_extension(KEY_SHARE, key_share_body(entries))


def odd_field(rng: random.Random, hello: Hello) -> Hello:
    choice = rng.randrange(15)
    if choice == 13:  # thousands of signature schemes, none known: the refusal stays short
        schemes = [0x0900 + i for i in range(rng.choice([100, 5000]))]
        return hello.with_extension(SIGNATURE_ALGORITHMS, u16_list(schemes))
    if choice == 0:
        return replace(hello, session_id=rng.randbytes(rng.choice([1, 32, 33, 255])))
    if choice == 1:
        return replace(hello, cipher_suites=rng.choice([u16_list([]), b"\x00\x03\x13\x01\x00"]))
    if choice == 2:
        return replace(hello, compression=rng.choice([b"\x01\x01", b"\x00", b"\x02\x00\x01"]))
    if choice == 3:
        return hello.with_extension(SUPPORTED_VERSIONS, opaque8(u16(0x0303)))
    if choice == 4:
        return hello.with_extension(SIGNATURE_ALGORITHMS, u16_list([]))
    if choice == 5:
        name = rng.choice([b"", b"\xff\xfe", b"x" * 300, b"a.b\x00c", "\u00e9".encode()])
        return hello.with_extension(SERVER_NAME, server_name_body(name))
    if choice == 6:
        protocols = rng.choice([[], [""], ["x" * 255], ["h3"] * 200])
        return hello.with_extension(ALPN, alpn_body(protocols))
    if choice == 7:
        return hello.with_extension(ALPN, opaque16(b"\x03\xff\xfe\xfd"))
    if choice == 8:
        return hello.with_extension(QUIC_TRANSPORT_PARAMETERS, rng.randbytes(rng.randrange(40)))
    if choice == 9:  # a transport parameter twice
        params = dict(hello.extensions).get(QUIC_TRANSPORT_PARAMETERS, b"")
        return hello.with_extension(QUIC_TRANSPORT_PARAMETERS, params + b"\x04\x01\x05")
    if choice == 10:
        return hello.with_extension(PSK_KEY_EXCHANGE_MODES, opaque8(b""))
    if choice == 11:  # a pre_shared_key with garbage identities and binders
        garbage = opaque16(opaque16(rng.randbytes(20)) + b"\x00\x00\x00\x00") + opaque16(b"")
        exts = list(hello.extensions) + [(EARLY_DATA, b""), (PRE_SHARED_KEY, garbage)]
        return replace(hello, extensions=exts)
    if choice == 12:  # pre_shared_key, but not last
        exts = [(PRE_SHARED_KEY, rng.randbytes(30)), *hello.extensions]
        return replace(hello, extensions=exts)
    return hello.with_extension(SERVER_NAME, opaque16(b"\x01" + opaque16(b"localhost")))


STRUCTURAL: list[Callable[[random.Random, Hello], Hello]] = [
    dup_extension,
    drop_extension,
    shuffle_extensions,
    unknown_extension,
    odd_groups,
    odd_key_shares,
    odd_field,
]


def _bytes_of(rng: random.Random, hello: Hello) -> tuple[str, bytes]:
    """Encode ``hello``, and half of the time also break its bytes."""
    data, lengths = hello.encode()
    choice = rng.randrange(10)
    if choice < 5:
        return "", data
    if choice == 5:
        return "+bitflip", bitflip(rng, data)
    if choice == 6:
        return "+byteset", byteset(rng, data)
    if choice == 7:
        return "+truncate", truncate(rng, data)
    if choice == 8:
        return "+trailing", trailing(rng, data)
    return "+length", corrupt_length(rng, data, lengths)


def one_case(rng: random.Random, target: Target) -> Case:
    """One random case for ``target``."""
    scid = rng.randbytes(8)
    kind, data = _one_hello(rng, target.hello(scid))
    return kind, scid, data


def _one_hello(rng: random.Random, hello: Hello) -> tuple[str, bytes]:
    roll = rng.random()
    if roll < 0.02:
        return "valid", hello.encode()[0]
    if roll < 0.03:
        return "huge-groups", huge_groups(rng, hello).encode()[0]
    if roll < 0.10:  # a hello that earns a HelloRetryRequest, then a mutated second one
        first = hello.with_extension(KEY_SHARE, key_share_body([(X25519, key_share_for(X25519))]))
        first = first.with_extension(SUPPORTED_GROUPS, u16_list([X25519MLKEM768, X25519]))
        second = rng.choice(STRUCTURAL)(rng, hello)
        label, data = _bytes_of(rng, second)
        return "retry" + label, first.encode()[0] + data
    if roll < 0.35:  # bytes only
        data, lengths = hello.encode()
        mutate = rng.choice(["bitflip", "byteset", "truncate", "trailing", "length"])
        if mutate == "length":
            return "length", corrupt_length(rng, data, lengths)
        return mutate, {"bitflip": bitflip, "byteset": byteset, "truncate": truncate}.get(
            mutate, trailing
        )(rng, data)
    mutation = rng.choice(STRUCTURAL)
    hello = mutation(rng, hello)
    if rng.random() < 0.3:
        hello = rng.choice(STRUCTURAL)(rng, hello)
    label, data = _bytes_of(rng, hello)
    return mutation.__name__ + label, data


def tls_cases(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` random cases for TLS over TCP: the same mutations of a hello without QUIC's
    transport parameters, offering HTTP/2 and HTTP/1.1."""
    for _ in range(count):
        hello = baseline(b"", "h2", [X25519MLKEM768, X25519], [X25519MLKEM768, X25519])
        hello = replace(
            hello,
            extensions=[e for e in hello.extensions if e[0] != QUIC_TRANSPORT_PARAMETERS],
        ).with_extension(ALPN, alpn_body(["h2", "http/1.1"]))
        yield _one_hello(rng, hello)


def cases(rng: random.Random, target: Target, count: int) -> Iterator[Case]:
    """``count`` cases: the key-share table first (at most a quarter of them), then random
    ones."""
    produced = 0
    for case in key_share_table(rng, target):
        if produced >= count // 4:
            break
        yield case
        produced += 1
    while produced < count:
        yield one_case(rng, target)
        produced += 1
