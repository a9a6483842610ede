"""The listeners the ClientHello fuzz test attacks, and the loop that attacks one of them.

Every listener is a real process on 127.0.0.1 whose output goes to a log file:

* hypercorn-pq's HTTP/3 listener, asyncio and trio workers (:func:`hypercorn_listener`);
* a ``configure()``\\ d ``aioquic.asyncio.serve`` server (:func:`aioquic_listener`,
  ``tests/fuzz_aioquic_server.py``);
* the pq-tunnel edge's connector listener (aioquic ``serve()``) and its public HTTP/3 listener
  (hypercorn), both in one edge process (:func:`edge_listeners`).

:func:`run_fuzz` sends the cases as Initial datagrams in batches; after every batch the
listener must still complete a clean handshake (a real client, post-quantum), and the process
must still be alive. It returns a :class:`Report` with what happened, memory included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from fuzz_clienthello_mutations import Target, cases, tls_cases
from fuzz_clienthello_wire import initial_datagrams
from quic_util import PING, client_configuration, echo_once
from servers import EXAMPLE_APP_DIR, free_port, hypercorn_pq, stop
from tunnel_chain import start_edge, write_edge_config

from pq_quic_plugin import configure
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.http3 import fetch
from pq_quic_plugin.tunnel.wire import ALPN as TUNNEL_ALPN
from tools.processes import Process, start
from tools.readiness import quic_answers, wait_ready

TESTS = Path(__file__).resolve().parent
AIOQUIC_SERVER = TESTS / "fuzz_aioquic_server.py"
AIOQUIC_ALPN = "pq-fuzz"
#: Cases per listener in the suite; ``PQ_FUZZ_CASES`` sets it (the long form: 100000).
DEFAULT_CASES = 600
BATCH = 250
#: How long to wait for the first answer to a case before sending the next one.
ANSWER_WAIT = 0.25


def cases_per_listener() -> int:
    return int(os.environ.get("PQ_FUZZ_CASES", DEFAULT_CASES))


def seed() -> int:
    return int(os.environ.get("PQ_FUZZ_SEED", "14"))


@dataclass
class Listener:
    """One QUIC listener under attack: where, in which process, and how to check it is alive."""

    name: str
    port: int
    process: Process
    target: Target
    clean_handshake: Callable[[], None]
    """Raises unless a real client completes a handshake (and a request, where there is one)."""


# --------------------------------------------------------------------------- clean handshakes


def _h3_request(pki: DevPKI, port: int) -> Callable[[], None]:
    def check() -> None:
        url = f"https://localhost:{port}/"
        response = asyncio.run(fetch(url, "prefer", cafile=str(pki.ca_cert), timeout=10))
        assert response.status > 0

    return check


def _handshake_only(pki: DevPKI, port: int, alpn: str) -> Callable[[], None]:
    def check() -> None:
        config = QuicConfiguration(is_client=True, alpn_protocols=[alpn], server_name="localhost")
        config.load_verify_locations(str(pki.ca_cert))
        config.verify_mode = ssl.CERT_REQUIRED
        configure(config, "prefer")

        async def handshake() -> None:
            async with connect("127.0.0.1", port, configuration=config, wait_connected=True):
                pass

        asyncio.run(asyncio.wait_for(handshake(), 10))

    return check


def _echo(pki: DevPKI, port: int) -> Callable[[], None]:
    def check() -> None:
        config = configure(client_configuration(pki, AIOQUIC_ALPN), "prefer")
        outcome = asyncio.run(asyncio.wait_for(echo_once(port, config), 10))
        assert outcome.echo == PING and outcome.post_quantum, outcome

    return check


# --------------------------------------------------------------------------------- listeners


@contextlib.contextmanager
def hypercorn_listener(
    pki: DevPKI,
    log_dir: Path,
    worker: str,
    app: str = "app:app",
    cwd: Path = EXAMPLE_APP_DIR,
) -> Iterator[Listener]:
    port = free_port()
    args = ["--pq", "-k", worker, "--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    args += ["-b", f"127.0.0.1:{port}", app]
    with hypercorn_pq(args, log_dir, port, cwd=cwd) as proc:
        yield Listener(f"hypercorn-pq {worker}", port, proc, Target("h3"), _h3_request(pki, port))


@contextlib.contextmanager
def aioquic_listener(pki: DevPKI, log_dir: Path, broken_group: bool = False) -> Iterator[Listener]:
    port = free_port()
    cmd = [sys.executable, str(AIOQUIC_SERVER), str(port), str(pki.cert), str(pki.key)]
    if broken_group:
        cmd.append("--broken-group")
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = start(cmd, log_dir / f"aioquic-{time.monotonic_ns()}.log", cwd=TESTS.parent)
    try:
        wait_ready(proc, lambda: quic_answers("127.0.0.1", port), f"udp 127.0.0.1:{port}")
        yield Listener("aioquic serve()", port, proc, Target(AIOQUIC_ALPN), _echo(pki, port))
    finally:
        stop(proc.proc)


@contextlib.contextmanager
def edge_listeners(pki: DevPKI, directory: Path) -> Iterator[tuple[Listener, Listener]]:
    """The edge's public HTTP/3 listener and its connector listener (one process)."""
    directory.mkdir(parents=True, exist_ok=True)
    public, connectors, metrics = free_port(), free_port(), free_port()
    config = write_edge_config(directory, pki, public, connectors, metrics)
    edge = start_edge(config, directory / "edge.log", cwd=directory)
    try:
        yield (
            Listener("edge public", public, edge, Target("h3"), _h3_request(pki, public)),
            Listener(
                "edge connector listener",
                connectors,
                edge,
                Target(TUNNEL_ALPN),
                _handshake_only(pki, connectors, TUNNEL_ALPN),
            ),
        )
    finally:
        stop(edge.proc)


# -------------------------------------------------------------------------------- measuring


def rss_kb(process: Process) -> int:
    """Resident memory of the process and every process of its group (hypercorn's workers)."""
    pgid = process.proc.pid
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


@dataclass
class Report:
    listener: str
    cases: int = 0
    answered: int = 0
    batches: int = 0
    clean_handshakes: int = 0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"{self.listener}: {self.cases} cases in {self.seconds:.1f}s, "
            f"{self.answered} answered, {self.clean_handshakes} clean handshakes after batches, "
            f"RSS {self.rss_before_kb / 1024:.0f} -> {self.rss_after_kb / 1024:.0f} MB; "
            f"unanswered by kind: {dict(self.unanswered.most_common(8))}"
        )


class Blaster:
    """Sends each case as a new connection's Initial datagrams and waits for the first answer.

    Answers are told apart by their destination connection ID, which is the case's SCID.
    """

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.answered: set[bytes] = set()
        self.sent: dict[bytes, str] = {}

    def close(self) -> None:
        self.sock.close()

    def _note(self, datagram: bytes) -> None:
        # A long header: flags, version (4), DCID length, DCID; our SCIDs are 8 bytes.
        if len(datagram) > 14 and datagram[0] & 0x80 and datagram[5] == 8:
            self.answered.add(datagram[6:14])

    def _drain(self, scid: bytes, wait: float) -> None:
        """Read answers until this case has one (then only what is queued) or ``wait`` ends."""
        deadline = time.monotonic() + wait
        while True:
            timeout = 0.0 if scid in self.answered else deadline - time.monotonic()
            if timeout < 0:
                return
            self.sock.settimeout(timeout)  # 0: non-blocking
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, TimeoutError):
                return
            self._note(data)

    def send(self, kind: str, scid: bytes, crypto_data: bytes, dcid: bytes | None = None) -> None:
        """A new connection (``dcid`` None), or the same datagrams again for ``dcid``."""
        self.sent[scid] = kind
        dcid = dcid or os.urandom(8)
        for i, datagram in enumerate(initial_datagrams(dcid, scid, crypto_data)):
            if i and i % 8 == 0:
                time.sleep(0.002)  # hypercorn's asyncio queue holds 10 datagrams
            self.sock.sendto(datagram, self.address)
        self._drain(scid, ANSWER_WAIT)

    def unanswered(self, wait: float = 1.0) -> list[str]:
        """The kinds of the cases no answer came for, after a last ``wait`` for stragglers."""
        self._drain(b"", wait)
        return [kind for scid, kind in self.sent.items() if scid not in self.answered]


def run_fuzz(listener: Listener, count: int, rng: random.Random) -> Report:
    """Send ``count`` cases; after every :data:`BATCH`, the process must be alive and a clean
    handshake must succeed (AssertionError naming the batch and its last cases otherwise)."""
    report = Report(listener.name)
    listener.clean_handshake()
    report.rss_before_kb = rss_kb(listener.process)
    started = time.monotonic()
    blaster = Blaster(listener.port)
    recent: list[str] = []
    try:
        for kind, scid, data in cases(rng, listener.target, count):
            blaster.send(kind, scid, data)
            report.cases += 1
            report.kinds[kind.split("-")[0]] += 1
            recent = [*recent[-9:], kind]
            if report.cases % BATCH == 0 or report.cases == count:
                report.batches += 1
                _after_batch(listener, report, recent)
        unanswered = blaster.unanswered()
        report.answered = report.cases - len(unanswered)
        report.unanswered.update(kind.split("-")[0] for kind in unanswered)
    finally:
        blaster.close()
    report.seconds = time.monotonic() - started
    report.rss_after_kb = rss_kb(listener.process)
    return report


def _after_batch(listener: Listener, report: Report, recent: list[str]) -> None:
    where = f"{listener.name}, after case {report.cases} (last kinds: {recent})"
    assert not listener.process.exited(), (
        f"{where}: the process exited; its log ends:\n{listener.process.log_tail()}"
    )
    try:
        listener.clean_handshake()
    except Exception as exc:  # noqa: BLE001 - reported with its context
        raise AssertionError(
            f"{where}: a clean handshake failed ({type(exc).__name__}: {exc}); "
            f"log ends:\n{listener.process.log_tail()}"
        ) from exc
    report.clean_handshakes += 1


# ------------------------------------------------------------------------------ TLS over TCP


def tls_records(handshake: bytes) -> bytes:
    """``handshake`` in TLS handshake records of at most 16 KB each."""
    out = bytearray()
    for offset in range(0, max(len(handshake), 1), 16384):
        chunk = handshake[offset : offset + 16384]
        out += b"\x16\x03\x01" + len(chunk).to_bytes(2, "big") + chunk
    return bytes(out)


def tcp_case(port: int, handshake: bytes, wait: float = 2.0) -> bool:
    """Send one ClientHello over a new TCP connection, then end our side; whether the server
    answered or closed in ``wait`` seconds (it must not keep a half-closed stranger)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        try:
            sock.sendall(tls_records(handshake))
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            return False
    return True


def run_tcp_fuzz(
    listener: Listener, count: int, rng: random.Random, clean_request: Callable[[], None]
) -> Report:
    """:func:`run_fuzz` for the TCP listener on the same port (pyOpenSSL parses there)."""
    report = Report(f"{listener.name} TCP")
    clean_request()
    report.rss_before_kb = rss_kb(listener.process)
    started = time.monotonic()
    recent: list[str] = []
    for kind, data in tls_cases(rng, count):
        report.cases += 1
        report.kinds[kind] += 1
        if tcp_case(listener.port, data):
            report.answered += 1
        else:
            report.unanswered[kind] += 1
        recent = [*recent[-9:], kind]
        if report.cases % BATCH == 0 or report.cases == count:
            report.batches += 1
            where = f"{report.listener}, after case {report.cases} (last kinds: {recent})"
            assert not listener.process.exited(), f"{where}: the process exited"
            clean_request()
            report.clean_handshakes += 1
    report.seconds = time.monotonic() - started
    report.rss_after_kb = rss_kb(listener.process)
    return report
