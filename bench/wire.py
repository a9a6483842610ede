"""What post-quantum key exchange does on the wire: sizes, datagrams, amplification, round trips.

1. ClientHello / ServerHello sizes and Initial datagrams, read from the TLS bytes aioquic hands
   to its CRYPTO streams (sans-IO, one process), for stock aioquic, the default ``prefer``
   client, each post-quantum group alone and every group with a share.
2. Anti-amplification (RFC 9000 8.1): before the client's second flight the server may send at
   most 3x what it received. Measured with a small (ECDSA leaf) and two large (RSA-4096 leaf
   plus one or two CA certificates) chains.
3. Round trips to the first application byte, counted in the sans-IO loop (one round = one
   client flight and the server's answer).
4. Time to first byte over real UDP on 127.0.0.1 through a relay that delays every datagram
   (the kernel here has no netem): connect + one echo on a raw QUIC stream.

The pieces: :mod:`.tls_messages` splits the CRYPTO stream bytes into messages,
:mod:`.delay_relay` adds the delay, :mod:`.wire_report` prints and draws the result.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from .certs import CertChain, chain_der_bytes, dev_chain, rsa_chain
from .configs import aioquic_configs
from .delay_relay import DelayRelay
from .load import BackgroundCloses
from .machine import machine_info
from .processes import OtherLoad
from .report import begin
from .results import publish
from .sansio_pump import PairTrace, run_pair
from .stack_internals import aioquic_crypto_writes
from .stats import ratio, summarize
from .tls_messages import Sniffer
from .wire_report import plot, show

NAME = "wire"
DELAY_MS = 25.0  # one way, so RTT = 50 ms
SMALL, LARGE = "ECDSA leaf", "RSA-4096 leaf + 2 CAs"  # the TTFB's two chains


# --- variants ------------------------------------------------------------------------------


def _first(sizes: list[int]) -> int | None:
    return sizes[0] if sizes else None


def _size_variants() -> list[dict[str, Any]]:
    import pq_quic_plugin

    every = [g.name for g in pq_quic_plugin.available_groups()]
    variants: list[dict[str, Any]] = [
        dict(label="stock aioquic", client_policy=None, server_policy=None),
        dict(
            label="prefer (default: X25519MLKEM768 + x25519 shares)",
            client_policy="prefer",
            server_policy="prefer",
        ),
    ]
    for g in pq_quic_plugin.available_groups():
        if g.post_quantum:
            variants.append(
                dict(
                    label=f"{g.name} alone",
                    client_policy="prefer",
                    server_policy="prefer",
                    client_groups=[g.name],
                )
            )
    variants.append(
        dict(
            label=f"all {len(every)} groups, all with shares",
            client_policy="prefer",
            server_policy="prefer",
            client_groups=every,
            key_shares=every,
        )
    )
    return variants


PATH_VARIANTS: list[dict[str, Any]] = [
    dict(label="stock aioquic", client_policy=None, server_policy=None),
    dict(
        label="classical x25519",
        client_policy="prefer",
        server_policy="prefer",
        client_groups=["x25519"],
        server_groups=["x25519"],
    ),
    dict(label="X25519MLKEM768 (prefer default)", client_policy="prefer", server_policy="prefer"),
    dict(
        label="HRR path",
        client_policy="prefer",
        server_policy="prefer",
        client_groups=["X25519MLKEM768", "x25519"],
        key_shares=["x25519"],
    ),
]


def _configs(chain: CertChain, v: dict[str, Any]) -> tuple[Any, Any]:
    return aioquic_configs(
        chain,
        v["client_policy"],
        v["server_policy"],
        v.get("client_groups"),
        v.get("server_groups"),
        v.get("key_shares"),
    )


def _trace(chain: CertChain, v: dict[str, Any]) -> tuple[PairTrace, Sniffer, Sniffer]:
    from aioquic.quic.connection import QuicConnection

    client_cfg, server_cfg = _configs(chain, v)
    cs, ss = Sniffer(), Sniffer()
    trace = run_pair(
        QuicConnection,
        client_cfg,
        server_cfg,
        request=b"first request",
        on_client=aioquic_crypto_writes(cs.feed),
        on_server=aioquic_crypto_writes(ss.feed),
    )
    return trace, cs, ss


def _negotiated(trace: PairTrace) -> str | None:
    from pq_quic_plugin import negotiated_group

    group = negotiated_group(trace.server)
    return group.name if group is not None else "(stock aioquic)"


def sizes(chain: CertChain) -> list[dict[str, Any]]:
    rows = []
    for v in _size_variants():
        trace, cs, ss = _trace(chain, v)
        first = trace.rounds[0]
        hellos = cs.sizes("ClientHello")
        rows.append(
            {
                "variant": v["label"],
                "negotiated": _negotiated(trace),
                "client_hello_bytes": hellos[0],
                "client_hello_retry_bytes": hellos[1] if len(hellos) > 1 else None,
                "server_hello_bytes": _first(ss.sizes("ServerHello")),
                "hello_retry_request_bytes": _first(ss.sizes("HelloRetryRequest")),
                "client_initial_datagrams_first_flight": first.client_initials,
                "client_initial_datagrams_total": sum(r.client_initials for r in trace.rounds),
                "client_first_flight_bytes": sum(first.client_datagrams),
                "server_initial_datagrams_total": sum(r.server_initials for r in trace.rounds),
                "handshake_bytes_client_to_server": sum(
                    sum(r.client_datagrams) for r in trace.rounds
                ),
                "handshake_bytes_server_to_client": sum(
                    sum(r.server_datagrams) for r in trace.rounds
                ),
                "client_datagrams_total": sum(len(r.client_datagrams) for r in trace.rounds),
                "server_datagrams_total": sum(len(r.server_datagrams) for r in trace.rounds),
            }
        )
    return rows


def amplification(chains: list[CertChain]) -> list[dict[str, Any]]:
    """Did the server's first flight hit 3x what it had received (RFC 9000 8.1)?

    The server's answer to the client's hello (after the HelloRetryRequest, on the HRR path) is
    compared with 3x everything the client had sent by then. "blocked" means the client could
    not finish in that round: the server had to wait for more client bytes (one more RTT).
    """
    rows = []
    for chain in chains:
        for v in PATH_VARIANTS:
            trace, cs, ss = _trace(chain, v)
            hrr = bool(ss.sizes("HelloRetryRequest"))
            answer_round = 2 if hrr else 1  # the round whose server flight carries the chain
            received = sum(sum(r.client_datagrams) for r in trace.rounds[:answer_round])
            sent_before = sum(sum(r.server_datagrams) for r in trace.rounds[: answer_round - 1])
            flight = sum(trace.rounds[answer_round - 1].server_datagrams)
            blocked = (trace.client_complete_round or 0) > answer_round
            rows.append(
                {
                    "chain": chain.label,
                    "chain_der_bytes": chain_der_bytes(chain),
                    "variant": v["label"],
                    "negotiated": _negotiated(trace),
                    "certificate_message_bytes": _first(ss.sizes("Certificate")),
                    "certificate_verify_bytes": _first(ss.sizes("CertificateVerify")),
                    "server_hello_bytes": _first(ss.sizes("ServerHello")),
                    "client_bytes_before_server_flight": received,
                    "limit_3x": 3 * received,
                    "server_bytes_sent": sent_before + flight,
                    "server_flight_bytes": flight,
                    "server_flight_datagrams": len(trace.rounds[answer_round - 1].server_datagrams),
                    "blocked_by_amplification_limit": blocked,
                    "rounds_to_client_handshake_complete": trace.client_complete_round,
                    "round_trips_to_first_app_byte": trace.first_app_byte_round,
                }
            )
    return rows


# --- TTFB over a delayed path ---------------------------------------------------------------


async def _ttfb(chains: dict[str, CertChain], samples: int, delay: float) -> dict[str, Any]:
    from aioquic.asyncio import QuicConnectionProtocol, connect, serve
    from aioquic.quic import events

    from pq_quic_plugin.aioquic_binding.facade import server_port

    class Echo(QuicConnectionProtocol):
        def quic_event_received(self, event: events.QuicEvent) -> None:
            if isinstance(event, events.StreamDataReceived):
                self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
                self.transmit()

    variants = [(chain_key, v) for chain_key in chains for v in PATH_VARIANTS]
    setups = []
    for chain_key, v in variants:
        client_cfg, server_cfg = _configs(chains[chain_key], v)
        server = await serve("127.0.0.1", 0, configuration=server_cfg, create_protocol=Echo)
        relay = DelayRelay(("127.0.0.1", server_port(server)), delay)
        setups.append(
            dict(
                label=f"{v['label']} [{chain_key}]",
                chain=chain_key,
                variant=v["label"],
                client=client_cfg,
                server=server,
                relay=relay,
                times=[],
            )
        )
    closes = BackgroundCloses()

    async def once(setup: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        cm = connect("127.0.0.1", setup["relay"].port, configuration=setup["client"])
        client = await cm.__aenter__()
        try:
            reader, writer = await client.create_stream()
            writer.write(b"GET / first byte please")
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 10)
            elapsed = time.perf_counter() - t0
            assert data == b"GET / first byte please"
        finally:
            closes.close(cm)
        return elapsed * 1000

    try:
        for s in setups:  # warm-up, one each
            await once(s)
        for i in range(samples):
            order = setups[i % len(setups) :] + setups[: i % len(setups)]
            for s in order:
                s["times"].append(await once(s))
                await asyncio.sleep(0.005)
        await closes.wait()
    finally:
        for s in setups:
            s["relay"].close()
            s["server"].close()
    return {
        s["label"]: {
            "chain": s["chain"],
            "variant": s["variant"],
            "ttfb_ms": summarize(s["times"], 2),
        }
        for s in setups
    }


# --- run -----------------------------------------------------------------------------------


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    begin("wire: sizes, datagrams, amplification, round trips, TTFB under delay")
    samples = 2 if quick else 25
    with tempfile.TemporaryDirectory(prefix="pq-bench-") as tmp:
        small = dev_chain(Path(tmp))
        print("  generating RSA-4096 chains ...", flush=True)
        large = rsa_chain(Path(tmp), 4096, intermediates=1)
        larger = rsa_chain(Path(tmp), 4096, intermediates=2)
        size_rows = sizes(small)
        amp_rows = amplification([small, large, larger])
        print(
            f"  TTFB: {len(PATH_VARIANTS) * 2} variants x {samples} connections, "
            f"{DELAY_MS:.0f} ms one-way delay",
            flush=True,
        )
        # the TTFB's large chain is the one that exceeds the classical amplification budget
        with OtherLoad() as load:
            ttfb = asyncio.run(_ttfb({SMALL: small, LARGE: larger}, samples, DELAY_MS / 1000))
        chain_labels = {SMALL: small.label, LARGE: larger.label}

    base = next(
        v for v in ttfb.values() if v["variant"] == "classical x25519" and v["chain"] == SMALL
    )
    for v in ttfb.values():
        same_chain = next(
            x
            for x in ttfb.values()
            if x["variant"] == "classical x25519" and x["chain"] == v["chain"]
        )
        v["ratio_vs_classical_same_chain"] = ratio(
            v["ttfb_ms"]["median"], same_chain["ttfb_ms"]["median"]
        )
        v["ratio_vs_classical_small_chain"] = ratio(
            v["ttfb_ms"]["median"], base["ttfb_ms"]["median"]
        )
        v["extra_ms_vs_classical_same_chain"] = round(
            v["ttfb_ms"]["median"] - same_chain["ttfb_ms"]["median"], 2
        )
        v["ttfb_in_rtts"] = round(v["ttfb_ms"]["median"] / (2 * DELAY_MS), 2)

    result = {
        "benchmark": NAME,
        "quick": quick,
        "machine": machine_info(),
        "method": {
            "sizes": "TLS messages as aioquic writes them to its CRYPTO streams (4-byte "
            "handshake header included); datagram counts from the sans-IO loop",
            "certificate_small": small.label,
            "chains": chain_labels,
            "round": "one client flight and the server's answer (= one network round trip)",
            "ttfb": "connect() through a UDP relay delaying each datagram by "
            f"{DELAY_MS} ms each way, then one echo on a raw QUIC stream; wall clock",
            "ttfb_samples_per_variant": samples,
        },
        "sizes": size_rows,
        "amplification": amp_rows,
        "ttfb": ttfb,
        "one_way_delay_ms": DELAY_MS,
        "ttfb_other_processes_cpu_share": load.share,
    }
    return publish(result, out_dir, show, plot)
