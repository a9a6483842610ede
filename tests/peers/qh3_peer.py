"""qh3 (and niquests) as independent QUIC peers: a server in a child process and two clients.

Why these exist: qh3 is an aioquic fork whose TLS 1.3 handshake code was rewritten separately
and offers X25519MLKEM768 by default, so a handshake with it checks our wire format against an
implementation we did not write.

How the negotiated group is learned: qh3 exposes NO public attribute or event for it
(``HandshakeCompleted`` has only ``alpn_protocol``, ``early_data_accepted`` and
``session_resumed``; ``tls.Context`` keeps the ServerHello's group in no attribute). So
:func:`instrument` tees the raw TLS bytes of the Initial epoch's CRYPTO stream (the ClientHello
and ServerHello exactly as sent or received) and parses them with the small parser below, which
shares no code with qh3. It hooks the private ``QuicConnection._create_tls`` and the bridge's
``receive_crypto``/``next_crypto_data`` (qh3 2.x); if qh3 renames them the hook fails loudly.

How groups are restricted: qh3 has no public option either. A client's offer is
``tls.Context._supported_groups`` (set by :func:`instrument`); a server ignores its own list and
takes the first client key share it implements, with no HelloRetryRequest, so the child server
filters parsed ClientHello key shares (a process-wide patch, hence the child process).

Run the server by hand: ``python tests/peers/qh3_peer.py server --cert C --key K``; it prints
one JSON line per event on stdout and exits when stdin closes or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qh3 import tls as qh3_tls
from qh3.asyncio import QuicConnectionProtocol, connect, serve
from qh3.h3 import events as h3_events
from qh3.h3.connection import H3Connection
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection

ECHO_ALPN = "pq-test"
"""Raw QUIC ALPN: the server echoes each stream's data back and closes the stream."""
#: qh3 assumes 333 ms before its first RTT sample, so a handshake that fails waits out a 2 s
#: closing period; loopback answers in microseconds (tests/quic_util.py does the same for aioquic).
INITIAL_RTT = 0.01

GROUP_CODES = {
    "secp256r1": 0x0017,
    "secp384r1": 0x0018,
    "secp521r1": 0x0019,
    "x25519": 0x001D,
    "MLKEM512": 0x0200,
    "MLKEM768": 0x0201,
    "MLKEM1024": 0x0202,
    "X25519Kyber768Draft00": 0x6399,
    "SecP256r1MLKEM768": 0x11EB,
    "X25519MLKEM768": 0x11EC,
    "SecP384r1MLKEM1024": 0x11ED,
}
"""IANA TLS group names (as the project spells them) and code points."""
_GROUP_NAMES = {code: name for name, code in GROUP_CODES.items()}
# Groups qh3 2.x implements; anything else in a restriction would make it offer nothing.
_QH3_GROUPS = {"X25519MLKEM768", "x25519", "secp256r1", "secp384r1", "secp521r1"}
_HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


def group_name(code: int) -> str:
    """IANA name of a group code point; GREASE (RFC 8701) and unknown values stay visible."""
    if code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF:
        return f"GREASE(0x{code:04X})"
    return _GROUP_NAMES.get(code, f"0x{code:04X}")


def _group_codes(names: Sequence[str]) -> list[int]:
    """Code points for ``names``; refuses what qh3 cannot do instead of failing mid-handshake."""
    unknown = [n for n in names if n not in _QH3_GROUPS]
    if unknown or not names:
        raise ValueError(f"qh3 implements only {sorted(_QH3_GROUPS)}, got {list(names)}")
    return [GROUP_CODES[n] for n in names]


# --- wire observation ----------------------------------------------------------------------


@dataclass
class HelloRecord:
    """What one connection's ClientHello and ServerHello said on the wire (last ones seen)."""

    offered_key_shares: list[str] = field(default_factory=list)
    supported_groups: list[str] = field(default_factory=list)
    selected_group: str | None = None
    """The ServerHello's key_share group: the group that was negotiated."""
    hello_retry: bool = False


def _u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "big")


def _parse_hello(msg_type: int, body: bytes, record: HelloRecord) -> None:
    """Fill ``record`` from a ClientHello (1) or ServerHello (2) body (RFC 8446 section 4.1)."""
    pos = 34 + 1 + body[34]  # legacy_version, random, legacy_session_id
    if msg_type == 1:
        pos += 2 + _u16(body, pos)  # cipher_suites
        pos += 1 + body[pos]  # legacy_compression_methods
    else:
        pos += 3  # cipher_suite, legacy_compression_method
    end = pos + 2 + _u16(body, pos)
    pos += 2
    while pos + 4 <= end:
        ext_type, ext_len = _u16(body, pos), _u16(body, pos + 2)
        ext = body[pos + 4 : pos + 4 + ext_len]
        pos += 4 + ext_len
        if msg_type == 1 and ext_type == 10:  # supported_groups
            record.supported_groups = [group_name(_u16(ext, i)) for i in range(2, len(ext), 2)]
        elif msg_type == 1 and ext_type == 51:  # key_share: list of (group, key_exchange)
            shares, i = [], 2
            while i + 4 <= len(ext):
                shares.append(group_name(_u16(ext, i)))
                i += 4 + _u16(ext, i + 2)
            record.offered_key_shares = shares
        elif msg_type == 2 and ext_type == 51:  # key_share: one entry, or a group in an HRR
            if body[2:34] == _HRR_RANDOM:
                record.hello_retry = True
            else:
                record.selected_group = group_name(_u16(ext, 0))


class _HelloSniffer:
    """Reassembles one direction's Initial CRYPTO stream into TLS handshake messages."""

    def __init__(self, record: HelloRecord) -> None:
        self._record = record
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[1:4], "big")
            if len(self._buffer) < 4 + length:
                return
            msg_type, body = self._buffer[0], self._buffer[4 : 4 + length]
            self._buffer = self._buffer[4 + length :]
            if msg_type in (1, 2):
                _parse_hello(msg_type, body, self._record)


def instrument(quic: QuicConnection, groups: Sequence[str] | None = None) -> HelloRecord:
    """Observe the hellos of ``quic`` (and, for a client, offer only ``groups``, in order).

    Call before the first datagram (a client: before ``connect``; a server: in the protocol's
    constructor). The returned record fills in as the handshake runs.
    """
    record = HelloRecord()
    codes = _group_codes(groups) if groups is not None else None
    original = quic._create_tls

    def create_tls(remote_source_cid: bytes | None) -> Any:
        bridge = original(remote_source_cid)  # also re-run after Retry / version negotiation
        if codes is not None and quic.configuration.is_client:
            bridge.tls._supported_groups = list(codes)
        inbound, outbound = _HelloSniffer(record), _HelloSniffer(record)
        receive, next_data = bridge.receive_crypto, bridge.next_crypto_data

        def receive_crypto(epoch: qh3_tls.Epoch, data: bytes, *args: Any, **kw: Any) -> None:
            if epoch == qh3_tls.Epoch.INITIAL:
                inbound.feed(data)
            receive(epoch, data, *args, **kw)

        def next_crypto_data() -> Any:
            crypto = next_data()
            if crypto is not None and crypto.epoch == qh3_tls.Epoch.INITIAL:
                outbound.feed(crypto.data)
            return crypto

        bridge.receive_crypto = receive_crypto  # type: ignore[method-assign]
        bridge.next_crypto_data = next_crypto_data  # type: ignore[method-assign]
        return bridge

    quic._create_tls = create_tls  # type: ignore[method-assign]
    return record


def _restrict_server_key_shares(names: Sequence[str]) -> None:
    """Make this process's qh3 servers pick only among ``names`` (process-wide patch).

    qh3's server takes the first ClientHello key share it implements and never sends a
    HelloRetryRequest, so a client without a share for an allowed group gets handshake_failure.
    The transcript hash uses the raw bytes, so filtering the parsed list is safe.
    """
    allowed = set(_group_codes(names))
    original = qh3_tls.pull_client_hello

    def pull_client_hello(buf: Any) -> Any:
        hello = original(buf)
        if hello.key_share is not None:
            hello.key_share = [share for share in hello.key_share if share[0] in allowed]
        return hello

    qh3_tls.pull_client_hello = pull_client_hello


# --- server (runs in the child process) ----------------------------------------------------


# qh3's server creates the private key object of the one group it selects (and no other), so
# which of these is set is qh3's own (private) view of the negotiated group: a cross-check.
_QH3_SERVER_KEYS = {
    "_x25519_kyber_768_private_key": "X25519MLKEM768",
    "_x25519_private_key": "x25519",
    "_ec_p256_private_key": "secp256r1",
    "_ec_p384_private_key": "secp384r1",
    "_ec_p521_private_key": "secp521r1",
}


def _qh3_server_key_exchange(quic: QuicConnection) -> list[str]:
    context = quic.tls
    return [
        name for attr, name in _QH3_SERVER_KEYS.items() if getattr(context, attr, None) is not None
    ]


def _emit(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


class _ServerProtocol(QuicConnectionProtocol):
    """Echoes raw ``pq-test`` streams; answers any HTTP/3 request with what it negotiated."""

    def __init__(self, quic: QuicConnection, **kwargs: Any) -> None:
        super().__init__(quic, **kwargs)
        self._hello = instrument(quic)
        self._h3: H3Connection | None = None
        self._summary: dict[str, Any] = {}

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            cipher = self._quic.get_cipher()
            self._summary = {
                "alpn": event.alpn_protocol,
                "cipher_suite": cipher.name if cipher is not None else None,
                "qh3_key_exchange": _qh3_server_key_exchange(self._quic),
                **asdict(self._hello),
            }
            _emit("handshake", **self._summary)
            if event.alpn_protocol == "h3":
                self._h3 = H3Connection(self._quic)
        elif isinstance(event, events.ConnectionTerminated) and not self._summary:
            _emit(
                "failed",
                error_code=event.error_code,
                reason=event.reason_phrase,
                **asdict(self._hello),
            )
        elif isinstance(event, events.StreamDataReceived):
            if self._h3 is None:
                self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
            else:
                for h3_event in self._h3.handle_event(event):
                    if isinstance(h3_event, h3_events.HeadersReceived):
                        self._answer(h3_event)
            self.transmit()

    def _answer(self, request: h3_events.HeadersReceived) -> None:
        assert self._h3 is not None
        path = dict(request.headers).get(b":path", b"").decode()
        body = json.dumps({"server": "qh3", "path": path, **self._summary}).encode() + b"\n"
        self._h3.send_headers(
            request.stream_id,
            [
                (b":status", b"200"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        )
        self._h3.send_data(request.stream_id, body, end_stream=True)


async def _serve_until_stdin_closes(args: argparse.Namespace) -> None:
    # qh3's H3Connection always announces H3_DATAGRAM, which RFC 9297 only allows together
    # with the max_datagram_frame_size transport parameter: without it clients close (0x109).
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=["h3", ECHO_ALPN],
        max_datagram_frame_size=65536,
        initial_rtt=INITIAL_RTT,
    )
    configuration.load_cert_chain(args.cert, args.key)
    server = await serve(
        args.host, args.port, configuration=configuration, create_protocol=_ServerProtocol
    )
    assert server._transport is not None
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Stdin EOF means the parent is gone (even after SIGKILL): never outlive it.
    threading.Thread(
        target=lambda: (sys.stdin.buffer.read(), loop.call_soon_threadsafe(stop.set)),
        daemon=True,
    ).start()
    _emit("ready", port=server._transport.get_extra_info("sockname")[1])
    await stop.wait()
    server.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of the child process: ``server --cert C --key K [--groups a,b]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--groups", help="comma-separated groups the server may select")
    args = parser.parse_args(argv)
    if args.groups:
        _restrict_server_key_shares(args.groups.split(","))
    asyncio.run(_serve_until_stdin_closes(args))


# --- server handle (parent process) --------------------------------------------------------


class Qh3Server:
    """A qh3 server in a child process, as a context manager.

    A child process, because restricting a qh3 server's groups needs a process-wide patch and
    because a crash or hang there cannot take the test process with it. Each handshake (or
    handshake failure) yields a record: ``{"event": "handshake"|"failed", "alpn",
    "selected_group", "offered_key_shares", "supported_groups", ...}``.
    """

    def __init__(
        self,
        cert: Path,
        key: Path,
        groups: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
    ) -> None:
        if groups is not None:
            _group_codes(groups)  # fail here, not in the child
        self.host = host
        self.port = 0
        self._command = [
            sys.executable,
            "-u",
            str(Path(__file__).resolve()),
            "server",
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--host",
            host,
        ]
        if groups is not None:
            self._command += ["--groups", ",".join(groups)]
        self._startup_timeout = startup_timeout
        self._records: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready = threading.Event()
        self._stderr = tempfile.TemporaryFile()
        self._process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Qh3Server:
        self._process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.pid = self._process.pid
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        if not self._ready.wait(self._startup_timeout):
            self.__exit__()
            raise RuntimeError("qh3 server did not start (see its stderr above)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if not self._ready.is_set() or exc and exc[0] is not None:
            sys.stderr.write(self.stderr())  # the child's traceback, next to the failure
        self._stderr.close()

    def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "ready":
                self.port = int(record["port"])
                self._ready.set()
            else:
                self._records.put(record)

    def next_record(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next connection record, in the order the server finished (or failed) them."""
        try:
            return self._records.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no qh3 server record within {timeout}s: {self.stderr()}") from None

    def stderr(self) -> str:
        """What the child wrote to stderr so far (tracebacks end up here)."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        """Stop the child: close its stdin, then SIGTERM, then SIGKILL; always reaps it."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        for stop in (None, process.terminate, process.kill):
            if stop is not None:
                stop()
            try:
                process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._reader is not None:
            self._reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


# --- qh3 client ----------------------------------------------------------------------------


@dataclass
class Qh3Result:
    """What a qh3 client learned from one connection."""

    alpn: str | None
    selected_group: str | None
    offered_key_shares: list[str]
    supported_groups: list[str]
    response: bytes
    """The echoed bytes (raw ALPN) or the HTTP/3 response body (``h3``)."""
    status: int | None = None
    """HTTP/3 status code, ``None`` for raw QUIC."""
    cipher_suite: str | None = None


class Qh3HandshakeError(ConnectionError):
    """The qh3 connection closed before its handshake completed; carries the close reason."""

    def __init__(
        self, message: str, hello: HelloRecord, terminated: events.ConnectionTerminated | None
    ) -> None:
        super().__init__(message)
        self.hello = hello
        self.error_code = terminated.error_code if terminated is not None else None
        self.reason = terminated.reason_phrase if terminated is not None else None


class _ClientProtocol(QuicConnectionProtocol):
    """Sends one request (``ping`` or ``GET /``) after the handshake and keeps the answer."""

    def __init__(
        self, quic: QuicConnection, groups: Sequence[str] | None, authority: str, **kwargs: Any
    ) -> None:
        super().__init__(quic, **kwargs)
        self.hello = instrument(quic, groups)
        self.terminated: events.ConnectionTerminated | None = None
        # Resolves to (status, body), or to None when the connection closes first.
        self.answer: asyncio.Future[tuple[int | None, bytes] | None] = self._loop.create_future()
        self._authority = authority
        self._h3: H3Connection | None = None
        self._stream_id = -1
        self._status: int | None = None
        self._body = b""

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self._stream_id = self._quic.get_next_available_stream_id()
            if event.alpn_protocol == "h3":
                self._h3 = H3Connection(self._quic)
                self._h3.send_headers(
                    self._stream_id,
                    [
                        (b":method", b"GET"),
                        (b":scheme", b"https"),
                        (b":authority", self._authority.encode()),
                        (b":path", b"/"),
                    ],
                    end_stream=True,
                )
            else:
                self._quic.send_stream_data(self._stream_id, b"ping", end_stream=True)
            self.transmit()
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            if not self.answer.done():
                self.answer.set_result(None)
        elif isinstance(event, events.StreamDataReceived) and self._h3 is None:
            if event.stream_id == self._stream_id:
                self._collect(event.data, event.end_stream)
        elif isinstance(event, events.StreamDataReceived) and self._h3 is not None:
            for h3_event in self._h3.handle_event(event):
                if getattr(h3_event, "stream_id", None) != self._stream_id:
                    continue
                if isinstance(h3_event, h3_events.HeadersReceived):
                    self._status = int(dict(h3_event.headers)[b":status"])
                    self._collect(b"", h3_event.stream_ended)
                elif isinstance(h3_event, h3_events.DataReceived):
                    self._collect(h3_event.data, h3_event.stream_ended)

    def _collect(self, data: bytes, ended: bool) -> None:
        self._body += data
        if ended and not self.answer.done():
            self.answer.set_result((self._status, self._body))


async def qh3_handshake_async(
    host: str,
    port: int,
    alpn: str,
    cafile: str | Path,
    server_name: str = "localhost",
    groups: Sequence[str] | None = None,
    timeout: float = 10.0,
) -> Qh3Result:
    """Connect with qh3, send ``ping`` (or ``GET /`` when ``alpn == "h3"``), read the answer.

    ``groups`` restricts (and orders) qh3's offer, e.g. ``["x25519"]``; ``None`` keeps qh3's
    default offer (GREASE, X25519MLKEM768 + x25519 shares, secp256r1/384r1 without shares).
    """
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=[alpn],
        cafile=str(cafile),
        server_name=server_name,
        offer_ec_key_shares=any(g.startswith("secp") for g in groups or ()),
        initial_rtt=INITIAL_RTT,
    )
    made: list[_ClientProtocol] = []

    def create_protocol(quic: QuicConnection, **kwargs: Any) -> _ClientProtocol:
        made.append(_ClientProtocol(quic, groups, server_name, **kwargs))
        return made[0]

    async def run() -> Qh3Result:
        try:
            async with connect(
                host, port, configuration=configuration, create_protocol=create_protocol
            ) as protocol:
                answer = await made[0].answer
                if answer is None:
                    raise ConnectionError("closed before the answer")
                status, body = answer
                cipher = protocol._quic.get_cipher()
        except ConnectionError as exc:
            protocol_made = made[0] if made else None
            terminated = protocol_made.terminated if protocol_made else None
            detail = (
                f"error_code=0x{terminated.error_code:X} reason={terminated.reason_phrase!r}"
                if terminated is not None
                else repr(exc)
            )
            if protocol_made is None or not protocol_made._connected:
                raise Qh3HandshakeError(
                    f"qh3 handshake with {host}:{port} failed: {detail}",
                    protocol_made.hello if protocol_made else HelloRecord(),
                    terminated,
                ) from exc
            raise ConnectionError(f"qh3 connection closed after handshake: {detail}") from exc
        hello = made[0].hello
        return Qh3Result(
            alpn=protocol._quic.tls.alpn_negotiated if protocol._quic.tls else None,
            selected_group=hello.selected_group,
            offered_key_shares=hello.offered_key_shares,
            supported_groups=hello.supported_groups,
            response=body,
            status=status,
            cipher_suite=cipher.name if cipher is not None else None,
        )

    return await asyncio.wait_for(run(), timeout)


def qh3_handshake(
    host: str,
    port: int,
    alpn: str,
    cafile: str | Path,
    server_name: str = "localhost",
    groups: Sequence[str] | None = None,
    timeout: float = 10.0,
) -> Qh3Result:
    """Blocking :func:`qh3_handshake_async` on a private loop in a worker thread.

    The worker thread makes it callable from anywhere, even under a running loop; a server on
    that same loop would then starve, so use the async variant in that case.
    """
    return _run_in_thread(
        lambda: asyncio.run(
            qh3_handshake_async(host, port, alpn, cafile, server_name, groups, timeout)
        )
    )


def _run_in_thread(call: Callable[[], Any]) -> Any:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


# --- niquests client -----------------------------------------------------------------------


@dataclass
class HttpResult:
    """One niquests response: status, body and the HTTP version actually used."""

    status: int
    body: bytes
    http_version: str
    """As urllib3-future's ``ConnectionInfo`` reports it, e.g. ``"HTTP/3.0"``."""


def niquests_h3_get(url: str, cafile: str | Path, timeout: float = 10.0) -> HttpResult:
    """GET ``url`` with niquests over HTTP/3 only, trusting ``cafile``.

    ``disable_http1=True, disable_http2=True`` makes urllib3-future open QUIC straight away
    (no TCP request, no Alt-Svc discovery) and never fall back to TCP, so a QUIC failure is an
    error rather than a silent HTTP/2 success.
    """
    import niquests  # local: optional dependency, only the tests that use it need it

    with niquests.Session(disable_http1=True, disable_http2=True, retries=0) as session:
        response = session.get(url, verify=str(cafile), timeout=timeout)
        info = response.conn_info
        version = info.http_version.value if info and info.http_version else "unknown"
        return HttpResult(
            status=response.status_code or 0, body=response.content or b"", http_version=version
        )


if __name__ == "__main__":
    main()
