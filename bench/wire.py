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
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .certs import CertChain, chain_der_bytes, dev_chain, rsa_chain
from .configs import aioquic_configs
from .load import BackgroundCloses
from .machine import machine_info
from .plots import machine_caption, pyplot, save_figure
from .processes import OtherLoad
from .report import begin, table
from .results import publish
from .sansio_pump import PairTrace, run_pair
from .stack_internals import aioquic_crypto_writes
from .stats import ratio, summarize

NAME = "wire"
DELAY_MS = 25.0  # one way, so RTT = 50 ms
SMALL, LARGE = "ECDSA leaf", "RSA-4096 leaf + 2 CAs"  # the TTFB's two chains
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
MESSAGE_NAMES = {
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    8: "EncryptedExtensions",
    11: "Certificate",
    15: "CertificateVerify",
    20: "Finished",
}


# --- TLS message sniffing ------------------------------------------------------------------


@dataclass
class Sniffer:
    """Splits the TLS bytes one side writes into its CRYPTO streams into handshake messages."""

    messages: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes incl. header)
    _buffers: dict[Any, bytes] = field(default_factory=dict)

    def feed(self, epoch: Any, data: bytes) -> None:
        buf = self._buffers.get(epoch, b"") + data
        while len(buf) >= 4:
            length = int.from_bytes(buf[1:4], "big")
            if len(buf) < 4 + length:
                break
            msg_type, body = buf[0], buf[4 : 4 + length]
            name = MESSAGE_NAMES.get(msg_type, f"type{msg_type}")
            if msg_type == 2 and body[2:34] == HRR_RANDOM:
                name = "HelloRetryRequest"
            self.messages.append((name, 4 + length))
            buf = buf[4 + length :]
        self._buffers[epoch] = buf

    def sizes(self, name: str) -> list[int]:
        return [size for n, size in self.messages if n == name]


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


# --- delayed UDP relay and TTFB ------------------------------------------------------------


class DelayRelay:
    """A UDP relay on 127.0.0.1 that delays every datagram, each way, by ``delay`` seconds.

    One upstream socket per client address, so the server sees distinct peers. This stands in
    for ``tc netem`` (not available in this kernel); scheduling jitter is about 1 ms.
    """

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self.forwarded = 0
        self._loop = asyncio.get_running_loop()
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self._front.setblocking(False)
        self.port = self._front.getsockname()[1]
        self._upstreams: dict[Any, socket.socket] = {}
        self._loop.add_reader(self._front.fileno(), self._from_client)

    def _send(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        with contextlib.suppress(OSError):
            sock.sendto(data, addr)
            self.forwarded += 1

    def _from_client(self) -> None:
        while True:
            try:
                data, addr = self._front.recvfrom(65536)
            except (BlockingIOError, OSError):
                return
            up = self._upstreams.get(addr)
            if up is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.bind(("127.0.0.1", 0))
                up.setblocking(False)
                self._upstreams[addr] = up
                self._loop.add_reader(up.fileno(), self._from_server, up, addr)
            self._loop.call_later(self.delay, self._send, up, data, self.target)

    def _from_server(self, up: socket.socket, client_addr: Any) -> None:
        while True:
            try:
                data, _ = up.recvfrom(65536)
            except (BlockingIOError, OSError):
                return
            self._loop.call_later(self.delay, self._send, self._front, data, client_addr)

    def close(self) -> None:
        for sock in [self._front, *self._upstreams.values()]:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            sock.close()


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
    return publish(result, out_dir, _print, plot)


def _print(result: dict[str, Any]) -> None:
    print(
        table(
            [
                "variant",
                "negotiated",
                "ClientHello B",
                "ServerHello B",
                "client Initial dgrams (1st flight)",
                "client->server B",
                "server->client B",
            ],
            [
                [
                    r["variant"],
                    r["negotiated"],
                    r["client_hello_bytes"],
                    r["server_hello_bytes"],
                    r["client_initial_datagrams_first_flight"],
                    r["handshake_bytes_client_to_server"],
                    r["handshake_bytes_server_to_client"],
                ]
                for r in result["sizes"]
            ],
        )
    )
    print()
    print(
        table(
            [
                "chain",
                "variant",
                "Certificate B",
                "client B in",
                "3x limit",
                "server B out",
                "blocked",
                "RTTs to 1st byte",
            ],
            [
                [
                    r["chain"],
                    r["variant"],
                    r["certificate_message_bytes"],
                    r["client_bytes_before_server_flight"],
                    r["limit_3x"],
                    r["server_bytes_sent"],
                    "yes" if r["blocked_by_amplification_limit"] else "no",
                    r["round_trips_to_first_app_byte"],
                ]
                for r in result["amplification"]
            ],
        )
    )
    print()
    rtt = 2 * result["one_way_delay_ms"]
    print(
        table(
            [
                "variant",
                "median ms",
                "p90 ms",
                "x vs classical (same chain)",
                "extra ms",
                f"RTTs of {rtt:.0f} ms",
            ],
            [
                [
                    k,
                    v["ttfb_ms"]["median"],
                    v["ttfb_ms"]["p90"],
                    v["ratio_vs_classical_same_chain"],
                    v["extra_ms_vs_classical_same_chain"],
                    v["ttfb_in_rtts"],
                ]
                for k, v in result["ttfb"].items()
            ],
        )
    )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(2, 2, figsize=(16, 12))

    ax = axes[0][0]
    rows = result["sizes"]
    y = list(range(len(rows)))
    vals = [r["client_hello_bytes"] for r in rows]
    ax.barh(y, vals, color=["#888888"] + ["#2a9d55"] * (len(rows) - 1))
    for yi, r in zip(y, rows, strict=True):
        n = r["client_initial_datagrams_first_flight"]
        ax.text(
            vals[yi],
            yi,
            f" {vals[yi]} B, {n} Initial datagram{'s' if n > 1 else ''}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(y, [r["variant"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(vals) * 1.4)
    ax.set_xlabel("ClientHello bytes (and the Initial datagrams the first flight needs)")
    ax.set_title("ClientHello size")

    ax = axes[0][1]
    c2s = [r["handshake_bytes_client_to_server"] for r in rows]
    s2c = [r["handshake_bytes_server_to_client"] for r in rows]
    h = 0.4
    ax.barh([v - h / 2 for v in y], c2s, h, color="#4c72b0", label="client -> server")
    ax.barh([v + h / 2 for v in y], s2c, h, color="#dd8452", label="server -> client")
    ax.set_yticks(y, [r["variant"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("UDP payload bytes: handshake + one small echo")
    ax.set_title("Bytes on the wire per connection")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1][0]
    amp = result["amplification"]
    labels = [f"{r['variant']} | {r['chain']}" for r in amp]
    y = list(range(len(amp)))
    ax.barh(
        y,
        [r["server_bytes_sent"] for r in amp],
        color=["#c44e52" if r["blocked_by_amplification_limit"] else "#4c72b0" for r in amp],
        label="server bytes before the client's next flight (red: stopped by the limit)",
    )
    ax.scatter(
        [r["limit_3x"] for r in amp],
        y,
        marker="|",
        s=250,
        color="black",
        zorder=3,
        label="limit: 3 x bytes received from the client",
    )
    for yi, r in zip(y, amp, strict=True):
        ax.text(
            r["limit_3x"],
            yi,
            f"  {r['round_trips_to_first_app_byte']} RTT to 1st byte",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(r["limit_3x"] for r in amp) * 1.3)
    ax.set_xlabel("bytes")
    ax.set_title("Anti-amplification limit (RFC 9000 8.1) before the client's 2nd flight")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1)

    ax = axes[1][1]
    tt = result["ttfb"]
    keys = list(tt)
    y = list(range(len(keys)))
    med = [tt[k]["ttfb_ms"]["median"] for k in keys]
    p90 = [tt[k]["ttfb_ms"]["p90"] for k in keys]
    ax.barh(
        y,
        med,
        color=[
            "#e07b39" if "HRR" in k else ("#2a9d55" if "MLKEM" in k else "#4c72b0") for k in keys
        ],
    )
    ax.errorbar(
        med,
        y,
        xerr=[[0] * len(y), [p - m for p, m in zip(p90, med, strict=True)]],
        fmt="none",
        ecolor="black",
        capsize=3,
        lw=1,
    )
    rtt = 2 * result["one_way_delay_ms"]
    for k in range(1, int(max(p90) // rtt) + 2):
        ax.axvline(k * rtt, color="#bbbbbb", ls=":", lw=1)
    for yi in y:
        ax.text(p90[yi] + 2, yi, f"{med[yi]:.0f} ms", va="center", fontsize=8)
    ax.set_xlim(0, max(p90) * 1.15)
    ax.set_yticks(y, keys, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"ms, median (bar to p90); dotted: multiples of the {rtt:.0f} ms RTT")
    ax.set_title(
        f"Time to first byte (connect + 1 echo), +{result['one_way_delay_ms']:.0f} ms each way"
    )
    save_figure(plt, fig, out_dir, NAME, machine_caption(result["machine"]))
