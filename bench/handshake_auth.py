"""Authentication cost: ML-DSA-44/65/87 against ECDSA P-256, on QUIC and on TCP.

Key exchange is X25519MLKEM768 in every variant; only the server's certificate (a CA and a
localhost leaf from ``devcert``, both signed with the same algorithm; the leaf alone is sent)
changes. For each transport, in memory, both sides in this process:

* **CPU** per full handshake, client and server apart (QUIC: aioquic through the binding,
  :mod:`.sansio_pump`; TCP: OpenSSL through ``ssl_context``, :mod:`.tls_pump`), round-robin
  so drift hits every variant alike;
* **bytes on the wire** each way (UDP payloads for QUIC, TLS records for TCP);
* **round trips** until the client's handshake completes, and on QUIC what the server sent in
  its first round against what RFC 9000 8.1 lets it send before it has validated the client's
  address (3x what it received): ML-DSA certificates do not fit, and the server waits for the
  client's next packet to send the rest (one more round trip, nothing lost).

Ratios are against ECDSA P-256 on the same transport.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from typing import Any

from .handshake_cpu import gc_paused
from .machine import machine_info
from .plots import machine_caption, pyplot, save_figure
from .report import begin, table
from .results import publish
from .sansio_pump import run_pair
from .stats import ratio, summarize
from .tls_pump import SERVER_NAME, run_tls_pair

NAME = "handshake_auth"
SIGNATURES = ("ecdsa-p256", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
LABELS = {
    "ecdsa-p256": "ECDSA P-256",
    "ml-dsa-44": "ML-DSA-44",
    "ml-dsa-65": "ML-DSA-65",
    "ml-dsa-87": "ML-DSA-87",
}
BASELINE = "ecdsa-p256"
AMPLIFICATION = 3  # RFC 9000 8.1


def _pkis(directory: Path) -> dict[str, Any]:
    from pq_quic_plugin.devcert import make_dev_pki

    return {sig: make_dev_pki(directory, sig=sig) for sig in SIGNATURES}


# --- QUIC ------------------------------------------------------------------------------------


def _quic_pair(pki: Any) -> tuple[Any, Any]:
    from aioquic.quic.configuration import QuicConfiguration

    import pq_quic_plugin

    client = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="localhost")
    client.load_verify_locations(str(pki.ca_cert))
    pq_quic_plugin.configure(client)
    pq_quic_plugin.configure_auth(client, "prefer")
    server = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    server.load_cert_chain(str(pki.cert), str(pki.key))
    pq_quic_plugin.configure(server)
    pq_quic_plugin.configure_auth(server, "prefer")
    return client, server


def _quic_once(pki: Any) -> dict[str, Any]:
    from aioquic.quic.connection import QuicConnection

    import pq_quic_plugin

    client, server = _quic_pair(pki)
    trace = run_pair(QuicConnection, client, server)
    scheme = pq_quic_plugin.negotiated_signature_scheme(trace.client)
    first = trace.rounds[0]
    received, sent = sum(first.client_datagrams), sum(first.server_datagrams)
    complete = trace.client_complete_round or 0  # rounds are numbered from 1: round trips
    return {
        "client_ns": trace.client_cpu_ns,
        "server_ns": trace.server_cpu_ns,
        "scheme": scheme.name if scheme else None,
        "post_quantum_auth": pq_quic_plugin.post_quantum_auth(trace.client),
        "client_bytes": sum(sum(r.client_datagrams) for r in trace.rounds),
        "server_bytes": sum(sum(r.server_datagrams) for r in trace.rounds),
        "round_trips": complete,
        "first_round_received": received,
        "first_round_sent": sent,
        "amplification_limit": AMPLIFICATION * received,
        # the server's flight did not all fit: the client needed another round trip
        "limited": complete > 1 and sent <= AMPLIFICATION * received,
    }


# --- TCP -------------------------------------------------------------------------------------


def _tcp_contexts(pki: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from pq_quic_plugin import ssl_context

    server = ssl_context("prefer", server_side=True, certfile=pki.cert, keyfile=pki.key)
    client = ssl_context("prefer", server_side=False, cafile=pki.ca_cert)
    return server, client


def _tcp_bytes(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> dict[str, int]:
    """Bytes each way and flights until the client's handshake is done (one extra run)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=SERVER_NAME)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    sent = {"client": 0, "server": 0}
    flights = 0
    client_done = server_done = False
    while not (client_done and server_done) and flights < 10:
        for side, tls in (("client", client), ("server", server)):
            try:
                tls.do_handshake()
                if side == "client":
                    client_done = True
                else:
                    server_done = True
            except ssl.SSLWantReadError:
                pass
        if c_out.pending:
            data = c_out.read()
            sent["client"] += len(data)
            s_in.write(data)
        if s_out.pending:
            data = s_out.read()
            sent["server"] += len(data)
            c_in.write(data)
            flights += 1
    return {"client_bytes": sent["client"], "server_bytes": sent["server"]}


def _tcp_once(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> dict[str, Any]:
    import pq_quic_plugin

    pair = run_tls_pair(server_ctx, client_ctx)
    scheme = pq_quic_plugin.negotiated_signature_scheme(pair.client)
    return {
        "client_ns": pair.client_ns,
        "server_ns": pair.server_ns,
        "scheme": scheme.name if scheme else None,
        "post_quantum_auth": pq_quic_plugin.post_quantum_auth(pair.client),
    }


# --- the run ---------------------------------------------------------------------------------


def _measure(quick: bool, pkis: dict[str, Any]) -> dict[str, Any]:
    rounds = 3 if quick else 200
    warmup = 1 if quick else 10
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        t: {s: {"client": [], "server": []} for s in SIGNATURES} for t in ("quic", "tcp")
    }
    facts: dict[str, dict[str, dict[str, Any]]] = {"quic": {}, "tcp": {}}
    tcp_ctx = {sig: _tcp_contexts(pkis[sig]) for sig in SIGNATURES}
    for sig in SIGNATURES:  # warm up, and keep one exchange's facts
        for _ in range(warmup):
            quic = _quic_once(pkis[sig])
            tcp = _tcp_once(*tcp_ctx[sig])
        facts["quic"][sig] = {k: v for k, v in quic.items() if not k.endswith("_ns")}
        facts["tcp"][sig] = {
            **{k: v for k, v in tcp.items() if not k.endswith("_ns")},
            **_tcp_bytes(*tcp_ctx[sig]),
            "round_trips": 1,
        }
    with gc_paused():
        for _ in range(rounds):
            for sig in SIGNATURES:
                quic = _quic_once(pkis[sig])
                tcp = _tcp_once(*tcp_ctx[sig])
                for transport, one in (("quic", quic), ("tcp", tcp)):
                    samples[transport][sig]["client"].append(one["client_ns"] / 1e6)
                    samples[transport][sig]["server"].append(one["server_ns"] / 1e6)
    result: dict[str, Any] = {}
    for transport in ("quic", "tcp"):
        rows = {}
        for sig in SIGNATURES:
            client = summarize(samples[transport][sig]["client"])
            server = summarize(samples[transport][sig]["server"])
            rows[sig] = {"client_ms": client, "server_ms": server, **facts[transport][sig]}
        base = rows[BASELINE]
        for sig in SIGNATURES:
            rows[sig]["server_cpu_ratio"] = ratio(
                rows[sig]["server_ms"]["median"], base["server_ms"]["median"]
            )
            rows[sig]["client_cpu_ratio"] = ratio(
                rows[sig]["client_ms"]["median"], base["client_ms"]["median"]
            )
            rows[sig]["server_bytes_ratio"] = ratio(rows[sig]["server_bytes"], base["server_bytes"])
        result[transport] = rows
    return result


def run(quick: bool, out: Path) -> dict[str, Any]:
    begin("handshake authentication: ML-DSA-44/65/87 vs ECDSA P-256 (QUIC and TCP, in memory)")
    with tempfile.TemporaryDirectory(prefix="pq-bench-auth-") as tmp:
        pkis = _pkis(Path(tmp))
        measured = _measure(quick, pkis)
    result = {"benchmark": NAME, "quick": quick, "machine": machine_info(), **measured}
    return publish(result, out, show, plot)


def show(result: dict[str, Any]) -> None:
    for transport, title in (("quic", "QUIC (aioquic + binding)"), ("tcp", "TCP (OpenSSL 4)")):
        rows = []
        for sig in SIGNATURES:
            r = result[transport][sig]
            rows.append(
                [
                    LABELS[sig],
                    r["scheme"],
                    r["server_ms"]["median"],
                    r["server_cpu_ratio"],
                    r["client_ms"]["median"],
                    r["client_cpu_ratio"],
                    r["server_bytes"],
                    r["server_bytes_ratio"],
                    r["client_bytes"],
                    r["round_trips"],
                ]
            )
        print(f"\n{title}")
        print(
            table(
                [
                    "certificate",
                    "scheme",
                    "server ms",
                    "x",
                    "client ms",
                    "x",
                    "server bytes",
                    "x",
                    "client bytes",
                    "round trips",
                ],
                rows,
            )
        )
    print("\nQUIC first round (RFC 9000 8.1: at most 3x received before address validation)")
    rows = [
        [
            LABELS[sig],
            result["quic"][sig]["first_round_received"],
            result["quic"][sig]["amplification_limit"],
            result["quic"][sig]["first_round_sent"],
            "yes" if result["quic"][sig]["limited"] else "no",
        ]
        for sig in SIGNATURES
    ]
    print(table(["certificate", "received", "limit", "sent", "at the limit"], rows))


def plot(result: dict[str, Any], out: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = [LABELS[s] for s in SIGNATURES]
    for ax, transport in zip(axes, ("quic", "tcp"), strict=True):
        server = [result[transport][s]["server_ms"]["median"] for s in SIGNATURES]
        client = [result[transport][s]["client_ms"]["median"] for s in SIGNATURES]
        xs = range(len(SIGNATURES))
        ax.bar([x - 0.2 for x in xs], server, 0.4, label="server")
        ax.bar([x + 0.2 for x in xs], client, 0.4, label="client")
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("CPU ms per handshake (median)")
        ax.set_title(transport.upper())
        ax.legend()
    fig.suptitle("Handshake CPU by server certificate (X25519MLKEM768 key exchange)")
    save_figure(plt, fig, out, NAME, machine_caption(result["machine"]))
