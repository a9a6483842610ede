"""A qh3 server as an independent QUIC peer, in a child process, and its parent-side handle.

The child process runs this file as a script (qh3 group restriction is a process-wide patch, see
qh3_wire.py). Run the server by hand: ``python tests/peers/qh3_server.py server --cert C --key K``;
it prints one JSON line per event on stdout and exits when stdin closes or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qh3.asyncio import QuicConnectionProtocol, serve
from qh3.h3 import events as h3_events
from qh3.h3.connection import H3Connection
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection

if __package__ in (None, ""):  # run as a script (by Qh3Server): make ``peers`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers.qh3_wire import (  # noqa: E402
    ECHO_ALPN,
    INITIAL_RTT,
    group_codes,
    instrument,
    restrict_server_key_shares,
)

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
        restrict_server_key_shares(args.groups.split(","))
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
            group_codes(groups)  # fail here, not in the child
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


if __name__ == "__main__":
    main()
