"""Mutated registrations and control frames for the edge's connector listener (issue 14).

A seeded generator (the seed is printed, so a failure can be replayed) mutates valid
registration exchanges: JSON values of the wrong type or out of range, bit flips, truncation,
corrupted lengths and frame types, deep nesting, huge strings, frames out of order. Cases run a
few at a time, each on its own QUIC connection; after each batch a clean registration must still
succeed, and at the end nothing the edge logged may carry a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

from aioquic.buffer import encode_uint_var
from tunnel_rogue import (
    EdgeSide,
    Rogue,
    answer,
    clean_registration,
    connected,
    connector_listener,
    hello,
    rogue,
    send_raw,
)

from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.tunnel.wire import FrameType, encode_frame

BATCH = 500
CONCURRENCY = 64

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    10**400,
    1.5,
    -0.0,
    "",
    "x" * 5000,
    "\n\r\x00\x1b[31m",
    "\u2028",
    [],
    [1, [2, [3]]],
    {},
    {"type": "hello"},
    "00000000-0000-4000-8000-000000000000",
]
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[" * 200 + b"]" * 200, b"null"]


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + encode_uint_var(len(payload)) + payload


def _json_bytes(message: dict[str, Any], rng: random.Random) -> bytes:
    """``message`` encoded, sometimes with a raw token (NaN, deep nesting) spliced in."""
    data = json.dumps(message).encode()
    if rng.random() < 0.2 and message:
        key = rng.choice(list(message))
        token = rng.choice(RAW_TOKENS)
        data = data.replace(json.dumps(message[key]).encode(), token, 1)
    return data


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    choice = rng.randrange(6)
    if choice == 0 and out:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    elif choice == 1 and out:  # truncation
        del out[rng.randrange(len(out)) :]
    elif choice == 2:  # corrupted length: claim more or less than is there
        payload = bytes(out[2:]) if len(out) > 2 else b""
        claimed = rng.choice([0, 1, len(payload) + 1, 1 << 16, 1 << 20, (1 << 30) - 1])
        out = bytearray(bytes([out[0] if out else 5]) + encode_uint_var(claimed) + payload)
    elif choice == 3 and out:  # another frame type
        out[0] = rng.choice([0, 1, 2, 3, 4, 6, 7, 0x40, 0xFF])
    elif choice == 4:  # junk inserted
        i = rng.randrange(len(out) + 1)
        out[i:i] = os.urandom(rng.randint(1, 32))
    else:  # duplicated
        out = out + bytes(out)
    return bytes(out)


def mutated_exchange(edge: EdgeSide, rng: random.Random) -> tuple[list[bytes], bool]:
    """The frames of one case, and whether to answer the challenge with a correct proof."""
    sent = hello(edge)
    if rng.random() < 0.7:
        for _ in range(rng.randint(1, 3)):
            key = rng.choice([*sent, "type", "extra"])
            if rng.random() < 0.15:
                sent.pop(key, None)
            else:
                sent[key] = rng.choice(ODD_VALUES)
    first = _frame(FrameType.CONTROL, _json_bytes(sent, rng))
    if rng.random() < 0.4:
        first = _mutate_bytes(first, rng)
    frames = [first]
    if rng.random() < 0.3:  # something after the hello that is not an auth
        frames.append(_mutate_bytes(_frame(FrameType.CONTROL, b'{"type":"auth"}'), rng))
    return frames, rng.random() < 0.3


async def _case(edge: EdgeSide, frames: list[bytes], honest: bool) -> None:
    async with rogue(edge) as (conn, channel):
        for data in frames:
            send_raw(conn, channel, data)
        if honest:  # a correct proof for whatever hello was sent: gets furthest in
            with contextlib.suppress(Exception):
                frame = await asyncio.wait_for(channel.read(), 0.5)
                if frame is not None and frame[0] == FrameType.CONTROL:
                    challenge = json.loads(frame[1])
                    reply = answer(edge, challenge, hello(edge))
                    payload = json.dumps(reply).encode()
                    send_raw(conn, channel, encode_frame(FrameType.CONTROL, payload))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(conn.closed_event.wait(), 0.3)


async def fuzz_registrations(directory: Path, pki: DevPKI, cases: int) -> None:
    seed = int(os.environ.get("PQ_FUZZ_SEED", random.randrange(1 << 32)))
    print(f"registration fuzz: {cases} cases, PQ_FUZZ_SEED={seed}")
    rng = random.Random(seed)
    async with connector_listener(directory, pki) as edge:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def guarded(frames: list[bytes], honest: bool) -> None:
            async with gate:
                await _case(edge, frames, honest)

        done = 0
        while done < cases:
            batch = min(BATCH, cases - done)
            await asyncio.gather(*(guarded(*mutated_exchange(edge, rng)) for _ in range(batch)))
            done += batch
            registered = await clean_registration(edge, conn_index=done % 16)
            assert registered["type"] == "registered", registered
            assert not edge.log.tracebacks(), edge.log.tracebacks()[:3]
            edge.log.records.clear()  # bounded memory over a long run


async def fuzz_authenticated(directory: Path, pki: DevPKI, cases: int) -> None:
    from pq_quic_plugin.tunnel.connector.registration import Identity, register

    seed = int(os.environ.get("PQ_FUZZ_SEED", random.randrange(1 << 32)))
    print(f"authenticated fuzz: {cases} cases, PQ_FUZZ_SEED={seed}")
    rng = random.Random(seed)
    async with connector_listener(directory, pki) as edge:
        identity = Identity(edge.record.id, str(uuid.uuid4()), edge.auth_key, ("demo.example.com",))
        async with connected(edge, Rogue) as conn:
            await register(conn, identity, 0)
            control = conn.channels[0]
            for i in range(cases):
                message: dict[str, Any] = {"type": rng.choice(["drain", "hello", "x", None, 1])}
                message[rng.choice(["a", "type", "nonce"])] = rng.choice(ODD_VALUES)
                data = _mutate_bytes(_frame(FrameType.CONTROL, _json_bytes(message, rng)), rng)
                if rng.random() < 0.7:
                    # Control-stream junk must stay well-framed, or it ends the stream (fine,
                    # but then the rest of the run would test nothing): only whole frames.
                    data = _frame(FrameType.CONTROL, _json_bytes(message, rng))
                    send_raw(conn, control, data)
                else:  # a stream only the edge may open: reset, never the connection
                    send_raw(conn, conn.open_channel(), data, end=rng.random() < 0.5)
                if i % 50 == 0:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            assert not conn.closed, conn.terminated
            assert edge.registry.count() == 1
        assert not edge.log.tracebacks(), edge.log.tracebacks()[:3]
        assert (await clean_registration(edge, conn_index=1))["type"] == "registered"
