"""Shared pieces of the benchmarks: machine facts, statistics, output, certificates, sans-IO pump.

The sans-IO pump (:func:`run_pair`) drives a client and a server ``QuicConnection`` in one
process by handing datagrams across by hand, one *round* at a time: everything the client has
to send goes to the server, then everything the server has to send goes back. A round is
therefore one network round trip, which makes "round trips to first byte" countable
deterministically. It works with aioquic and with qh3, whose sans-IO classes share the API.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS_BENCH = ROOT / "docs" / "bench"

CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)


# --- machine and output --------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What every result records: the machine and the versions that produced it."""
    from pq_quic_plugin.groups.mlkem import mlkem_backends

    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": {
            name: _version(name)
            for name in (
                "aioquic", "cryptography", "pqcrypto", "qh3", "hypercorn", "pq-quic-plugin"
            )
        },
        "openssl": _openssl_version(),
        "mlkem_backends": mlkem_backends(),
        "loadavg_at_end": loadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _openssl_version() -> str | None:
    try:
        from cryptography.hazmat.backends.openssl import backend

        return str(backend.openssl_version_text())
    except Exception:  # noqa: BLE001 - informational only
        return None


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Share of all cores that other processes used while a benchmark ran (/proc/stat).

    Busy time of the whole machine minus this process's own CPU time, over wall time x cores.
    Near 0 on a quiet machine; a shared CI box or a concurrent test run shows up here.
    """

    def __enter__(self) -> OtherLoad:
        self._busy, self._own = system_busy_seconds(), time.process_time()
        self._wall = time.perf_counter()
        self.share = float("nan")
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self._wall
        other = system_busy_seconds() - self._busy - (time.process_time() - self._own)
        self.share = round(max(other, 0.0) / (wall * (os.cpu_count() or 1)), 3)
        print(f"  other processes used {100 * self.share:.0f}% of the cores meanwhile",
              flush=True)


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def output_dir(quick: bool, explicit: Path | None = None) -> Path:
    """docs/bench for a full run; a fresh temporary directory for ``--quick`` (never docs/)."""
    if explicit is not None:
        explicit.mkdir(parents=True, exist_ok=True)
        return explicit
    if quick:
        return Path(tempfile.mkdtemp(prefix="pq-bench-quick-"))
    DOCS_BENCH.mkdir(parents=True, exist_ok=True)
    return DOCS_BENCH


def write_json(out_dir: Path, name: str, data: dict[str, Any]) -> Path:
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"  wrote {_rel(path)}")
    return path


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (with a note) when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib is not installed (pip install '.[bench]'): no plot drawn")
        return None
    return plt


def save_figure(plt: Any, fig: Any, out_dir: Path, name: str, caption: str = "") -> Path:
    path = out_dir / f"{name}.png"
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.03 if caption else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  wrote {_rel(path)}")
    return path


def machine_caption(machine: dict[str, Any]) -> str:
    v = machine["versions"]
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores; Python {machine['python']}, "
        f"aioquic {v['aioquic']}, cryptography {v['cryptography']}, qh3 {v['qh3']}"
    )


# --- statistics ----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of already sorted values."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def summarize(samples: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    values = sorted(samples)
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits) if values else float("nan"),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "mean": round(statistics.fmean(values), digits) if values else float("nan"),
        "min": round(values[0], digits) if values else float("nan"),
        "max": round(values[-1], digits) if values else float("nan"),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


class gc_paused:  # noqa: N801 - context manager
    """Collect once, then keep the cyclic collector out of the timed region."""

    def __enter__(self) -> None:
        gc.collect()
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: Any) -> None:
        if self._was:
            gc.enable()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (printed to the console and pasted into docs/benchmarks.md)."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- load and processes --------------------------------------------------------------------


async def closed_loop(
    workers: Sequence[Callable[[], Awaitable[bool]]], duration: float, limit: int
) -> tuple[list[float], int, float]:
    """Run each worker's request back to back until ``duration`` s or ``limit`` requests.

    A closed loop: as many requests in flight as there are workers, a new one as soon as one
    finishes. A request that returns False or raises is an error, the run goes on. Returns the
    latencies in ms of the successful requests, the error count and the elapsed seconds.
    """
    latencies: list[float] = []
    errors = issued = 0
    deadline = time.perf_counter() + duration

    async def worker(request: Callable[[], Awaitable[bool]]) -> None:
        nonlocal errors, issued
        while time.perf_counter() < deadline and issued < limit:
            issued += 1
            t0 = time.perf_counter()
            try:
                ok = await request()
            except Exception:  # noqa: BLE001 - counted, the run goes on
                ok = False
            if ok:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in workers))
    return latencies, errors, time.perf_counter() - started


def load_summary(slices: Sequence[dict[str, Any]], cpu: Sequence[str]) -> dict[str, Any]:
    """Totals of closed-loop slices (``latencies``, ``errors``, ``elapsed``, CPU seconds under
    each key in ``cpu``): requests/s, latency percentiles, CPU ms per request."""
    latencies = [x for s in slices for x in s["latencies"]]
    n = len(latencies)
    elapsed = sum(s["elapsed"] for s in slices)
    return {
        "slices": len(slices),
        "requests_ok": n,
        "errors": sum(s["errors"] for s in slices),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(n / elapsed, 1) if elapsed else 0.0,
        "requests_per_s_each_slice": [round(len(s["latencies"]) / s["elapsed"], 1)
                                      for s in slices if s["elapsed"]],
        "latency_ms": summarize(latencies, 2),
        **{f"{key}_ms_per_request": round(sum(s[key] for s in slices) * 1000 / n, 3)
           if n else None for key in cpu},
    }


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, session id, utime + stime in clock ticks) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[0] is field 3 (state): ppid is field 4, session 6, utime 14, stime 15
        table[int(entry)] = (int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]))
    return table


def process_tree(roots: Iterable[int], table: dict[int, tuple[int, int, int]] | None = None,
                 ) -> list[int]:
    """The ``roots`` and all their living descendants (workers, sshd's per-connection child)."""
    table = proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds used so far by the processes below ``roots`` (exited children not counted)."""
    table = proc_table()
    return sum(table[pid][2] for pid in process_tree(roots, table)) / CLK_TCK


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of one process in MB (``VmHWM`` for the peak), from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


# --- certificates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """A server certificate chain on disk: ``cert`` (leaf first, then CAs), ``key``, ``ca``."""

    label: str
    cert: Path
    key: Path
    ca: Path


def dev_chain(directory: Path) -> Chain:
    """The project's dev PKI: ECDSA P-256 leaf (the server sends only the leaf)."""
    from pq_quic_plugin.devcert import make_dev_pki

    pki = make_dev_pki(directory / "ecdsa")
    return Chain("ECDSA P-256 leaf", pki.cert, pki.key, pki.ca_cert)


def rsa_chain(directory: Path, bits: int = 4096, intermediates: int = 1) -> Chain:
    """An RSA chain the server sends in full: leaf + ``intermediates`` CA certificates.

    The client trusts the topmost CA; it is also sent, as many misconfigured or cross-signed
    deployments do, which is what makes this the "large chain" case.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = directory / f"rsa{bits}x{intermediates + 1}"
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(_ip("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return b.sign(issuer_key, hashes.SHA256())

    keys = [rsa.generate_private_key(65537, bits) for _ in range(intermediates + 1)]
    certs: list[x509.Certificate] = []
    ca_names = [f"bench RSA CA {i}" for i in range(intermediates)]
    # topmost CA is self-signed; each following one is issued by the previous
    for i in range(intermediates):
        issuer = ca_names[i - 1] if i else ca_names[0]
        issuer_key = keys[i - 1] if i else keys[0]
        certs.append(build(ca_names[i], keys[i], issuer, issuer_key, ca=True))
    leaf = build("localhost", keys[-1], ca_names[-1], keys[-2], ca=False)
    pem = serialization.Encoding.PEM
    chain_pem = leaf.public_bytes(pem) + b"".join(c.public_bytes(pem) for c in reversed(certs))
    (directory / "cert.pem").write_bytes(chain_pem)
    (directory / "ca.pem").write_bytes(certs[0].public_bytes(pem))
    key_path = directory / "key.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            keys[-1].private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    label = f"RSA-{bits} leaf + {intermediates} CA cert{'s' if intermediates > 1 else ''}"
    return Chain(label, directory / "cert.pem", key_path, directory / "ca.pem")


def _ip(text: str) -> Any:
    import ipaddress

    return ipaddress.ip_address(text)


def chain_der_bytes(chain: Chain) -> int:
    """Total DER size of the certificates the server sends."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certs = x509.load_pem_x509_certificates(chain.cert.read_bytes())
    return sum(len(c.public_bytes(serialization.Encoding.DER)) for c in certs)


# --- aioquic configurations ----------------------------------------------------------------

ALPN = "pq-bench"


def aioquic_configs(
    chain: Chain,
    client_policy: str | None,
    server_policy: str | None,
    client_groups: Sequence[str] | None = None,
    server_groups: Sequence[str] | None = None,
    key_shares: Sequence[str] | None = None,
    alpn: str = ALPN,
) -> tuple[Any, Any]:
    """A (client, server) pair of aioquic configurations; ``None``/"off" policy = stock aioquic."""
    import ssl

    from aioquic.quic.configuration import QuicConfiguration

    from pq_quic_plugin import configure

    client = QuicConfiguration(is_client=True, alpn_protocols=[alpn], server_name="localhost")
    client.load_verify_locations(str(chain.ca))
    client.verify_mode = ssl.CERT_REQUIRED
    server = QuicConfiguration(is_client=False, alpn_protocols=[alpn])
    server.load_cert_chain(str(chain.cert), str(chain.key))
    if client_policy not in (None, "off"):
        configure(client, client_policy, groups=client_groups, key_shares=key_shares)
    if server_policy not in (None, "off"):
        configure(server, server_policy, groups=server_groups)
    return client, server


# --- the sans-IO pump ----------------------------------------------------------------------


def initial_dcid(datagram: bytes) -> bytes:
    """Destination connection ID of a long-header packet (what a server demultiplexes on)."""
    length = datagram[5]
    return datagram[6 : 6 + length]


def is_initial(datagram: bytes) -> bool:
    """First packet of the datagram is a QUIC v1 Initial."""
    first = datagram[0]
    return bool(first & 0x80) and (first & 0x30) >> 4 == 0


class HandshakeFailed(RuntimeError):
    pass


@dataclass
class Round:
    client_datagrams: list[int] = field(default_factory=list)
    server_datagrams: list[int] = field(default_factory=list)
    client_initials: int = 0
    server_initials: int = 0


@dataclass
class PairTrace:
    """What one sans-IO exchange did, round by round."""

    rounds: list[Round] = field(default_factory=list)
    client_cpu_ns: int = 0
    server_cpu_ns: int = 0
    client_complete_round: int | None = None
    server_complete_round: int | None = None
    first_app_byte_round: int | None = None
    timer_fires: int = 0
    client: Any = None
    server: Any = None

    @property
    def total_cpu_ns(self) -> int:
        return self.client_cpu_ns + self.server_cpu_ns


def run_pair(
    connection_class: type,
    client_config: Any,
    server_config: Any,
    request: bytes | None = None,
    on_client: Callable[[Any], None] | None = None,
    on_server: Callable[[Any], None] | None = None,
    max_rounds: int = 30,
) -> PairTrace:
    """Handshake (and optionally echo ``request`` on one stream) entirely in memory.

    Stops when both handshakes are complete (and the echo arrived, if asked) and a round
    passes with nothing to send. CPU time is measured separately for the client's and the
    server's calls (``time.process_time_ns``), so the pump's own bookkeeping is not counted.
    """
    clock = time.process_time_ns
    trace = PairTrace()
    now = 1000.0
    t0 = clock()
    client = connection_class(configuration=client_config)
    if on_client is not None:
        on_client(client)
    client.connect(SERVER_ADDR, now)
    trace.client_cpu_ns += clock() - t0
    server = None
    sent_request = False
    got_reply = request is None
    quiet = 0
    for index in range(1, max_rounds + 1):
        rnd = Round()
        # client -> server
        t0 = clock()
        c_out = client.datagrams_to_send(now)
        trace.client_cpu_ns += clock() - t0
        now += 0.0005
        for data, _ in c_out:
            rnd.client_datagrams.append(len(data))
            rnd.client_initials += is_initial(data)
            if server is None:
                t0 = clock()
                server = connection_class(
                    configuration=server_config,
                    original_destination_connection_id=initial_dcid(data),
                )
                trace.server_cpu_ns += clock() - t0
                if on_server is not None:
                    on_server(server)
            t0 = clock()
            server.receive_datagram(data, CLIENT_ADDR, now)
            trace.server_cpu_ns += clock() - t0
        if server is not None:
            t0 = clock()
            while (event := server.next_event()) is not None:
                kind = type(event).__name__
                if kind == "HandshakeCompleted" and trace.server_complete_round is None:
                    trace.server_complete_round = index
                elif kind == "StreamDataReceived":
                    server.send_stream_data(event.stream_id, event.data, event.end_stream)
                elif kind == "ConnectionTerminated":
                    raise HandshakeFailed(f"server: {event.error_code} {event.reason_phrase}")
            s_out = server.datagrams_to_send(now)
            trace.server_cpu_ns += clock() - t0
        else:
            s_out = []
        now += 0.0005
        # server -> client
        t0 = clock()
        for data, _ in s_out:
            rnd.server_datagrams.append(len(data))
            rnd.server_initials += is_initial(data)
            client.receive_datagram(data, SERVER_ADDR, now)
        while (event := client.next_event()) is not None:
            kind = type(event).__name__
            if kind == "HandshakeCompleted" and trace.client_complete_round is None:
                trace.client_complete_round = index
            elif kind == "StreamDataReceived" and event.data:
                got_reply = True
                if trace.first_app_byte_round is None:
                    trace.first_app_byte_round = index
            elif kind == "ConnectionTerminated":
                raise HandshakeFailed(f"client: {event.error_code} {event.reason_phrase}")
        if request is not None and not sent_request and trace.client_complete_round is not None:
            stream_id = client.get_next_available_stream_id()
            client.send_stream_data(stream_id, request, end_stream=True)
            sent_request = True
        trace.client_cpu_ns += clock() - t0
        trace.rounds.append(rnd)
        done = (
            trace.client_complete_round is not None
            and trace.server_complete_round is not None
            and got_reply
        )
        if not c_out and not s_out:
            if done:
                quiet += 1
                if quiet >= 1:
                    break
            else:
                # nothing in flight: only a timer can move things (never expected here)
                timers = [t for t in (client.get_timer(), server and server.get_timer()) if t]
                if not timers:
                    raise HandshakeFailed("stalled with no timer")
                now = max(now, min(timers))
                trace.timer_fires += 1
                t0 = clock()
                client.handle_timer(now)
                trace.client_cpu_ns += clock() - t0
                if server is not None:
                    t0 = clock()
                    server.handle_timer(now)
                    trace.server_cpu_ns += clock() - t0
    else:
        raise HandshakeFailed(f"no completion after {max_rounds} rounds")
    # drop the trailing empty round
    while trace.rounds and not trace.rounds[-1].client_datagrams and not (
        trace.rounds[-1].server_datagrams
    ):
        trace.rounds.pop()
    trace.client, trace.server = client, server
    return trace


def banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def python_executable() -> str:
    return sys.executable
