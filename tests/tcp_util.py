"""Clients and probes for hypercorn-pq's TCP listener (HTTP/1.1, HTTP/2, WebSockets over TLS).

Every helper drives a real peer: curl (the system's, on OpenSSL 3.0 without ML-KEM, so a
classical client), httpx's async client on ``pq_quic_plugin.ssl_context`` (post-quantum), a
pyOpenSSL client that sends only an X25519 share (to provoke a HelloRetryRequest), wsproto over
asyncio streams, and tshark capturing the handshake on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from OpenSSL import SSL
from tls_util import is_hello_retry
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

import pq_quic_plugin
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.tls_binding import native

TESTS = Path(__file__).resolve().parent
TCP_APP_DIR = TESTS / "apps"  # tcp_app:app (origin_app plus /scope, /broken, /pid)
CURL = shutil.which("curl")
TSHARK = shutil.which("tshark")
X25519MLKEM768 = 0x11EC


def tls_args(pki: DevPKI, port: int) -> list[str]:
    return ["--certfile", str(pki.cert), "--keyfile", str(pki.key), "-b", f"127.0.0.1:{port}"]


def pq_client(pki: DevPKI, policy: str = "require", http2: bool = False, **kw: Any) -> Any:
    """httpx's async client over the post-quantum TCP layer (``verify`` takes the context)."""
    context = pq_quic_plugin.ssl_context(policy, server_side=False, cafile=pki.ca_cert)
    return httpx.AsyncClient(verify=context, http2=http2, **kw)


async def pq_get_json(pki: DevPKI, url: str, http2: bool = False, policy: str = "require") -> Any:
    async with pq_client(pki, policy, http2=http2, timeout=20) as client:
        resp = await client.get(url)
        resp.raise_for_status()
        assert resp.http_version == ("HTTP/2" if http2 else "HTTP/1.1"), resp.http_version
        return resp.json()


def curl(pki: DevPKI, url: str, *flags: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The system curl (OpenSSL 3.0: x25519, P-256, ...; no ML-KEM), verifying our CA."""
    if CURL is None:
        raise RuntimeError("curl is not installed: apt-get install curl")
    return subprocess.run(
        [CURL, "-sS", "--cacert", str(pki.ca_cert), "--max-time", str(timeout), *flags, url],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )


# ---------------------------------------------------------------- a client that gets an HRR


@dataclass
class HelloRetryResult:
    group: str | None
    hello_retry: bool
    scope: dict[str, Any]


def _pump(conn: SSL.Connection, sock: socket.socket) -> None:
    """Send whatever the client produced."""
    with contextlib.suppress(SSL.WantReadError):
        while True:
            sock.sendall(conn.bio_read(65536))


def hello_retry_client(
    pki: DevPKI, port: int, groups: str = "*x25519:X25519MLKEM768"
) -> HelloRetryResult:
    """pyOpenSSL on OpenSSL 3.5+ listing X25519MLKEM768 but sending only an X25519 key share
    (``*`` marks the shares), then ``GET /scope`` over HTTP/1.1 on the same connection.

    Watches the server's first flight for the HelloRetryRequest's magic random.
    """
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    assert native.set_groups(ctx, groups), groups
    ctx.set_verify(SSL.VERIFY_PEER)
    ctx.load_verify_locations(str(pki.ca_cert))
    ctx.set_alpn_protos([b"http/1.1"])
    conn = SSL.Connection(ctx, None)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    first_flight = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                _pump(conn, sock)
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection in the handshake") from None
                if len(first_flight) < 4096:
                    first_flight += data
                conn.bio_write(data)
        _pump(conn, sock)  # the client's Finished
        group = conn.get_group_name()
        conn.send(b"GET /scope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        _pump(conn, sock)
        response = b""
        while b"\r\n\r\n" not in response or not _complete(response):
            data = sock.recv(65536)
            if not data:
                break
            conn.bio_write(data)
            with contextlib.suppress(SSL.WantReadError, SSL.ZeroReturnError):
                while True:
                    response += conn.recv(65536)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return HelloRetryResult(group, is_hello_retry(first_flight), json.loads(body))


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


# ---------------------------------------------------------------- WebSocket over the PQ layer


async def websocket_echo(pki: DevPKI, port: int, path: str, text: str) -> str:
    """Open a WebSocket (HTTP/1.1 upgrade) over post-quantum TLS, send ``text``, return the echo."""
    context = pq_quic_plugin.ssl_context(
        "require", server_side=False, cafile=pki.ca_cert, alpn=["http/1.1"]
    )
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    assert pq_quic_plugin.negotiated_group(writer).name == "X25519MLKEM768"
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(ws.send(Request(host=f"localhost:{port}", target=path)))
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 15)
            if not data:
                raise ConnectionError("server closed the WebSocket connection")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    writer.write(ws.send(TextMessage(text)))
                elif isinstance(event, RejectConnection):
                    raise ConnectionError(f"WebSocket rejected with {event.status_code}")
                elif isinstance(event, CloseConnection):
                    raise ConnectionError(f"WebSocket closed with {event.code}")
                elif isinstance(event, TextMessage):
                    writer.write(ws.send(CloseConnection(code=1000)))
                    await writer.drain()
                    return event.data
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


# ---------------------------------------------------------------- tshark on loopback


@contextlib.contextmanager
def tshark_capture(capture_filter: str, path: Path, timeout: float = 20) -> Iterator[Path]:
    """Capture what ``capture_filter`` (``tcp port N``, ``udp port N``) selects on ``lo`` into
    ``path`` until the block ends."""
    if TSHARK is None:
        raise RuntimeError("tshark is not installed: apt-get install tshark")
    log = path.with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [TSHARK, "-i", "lo", "-f", capture_filter, "-w", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while "Capture started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tshark did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        time.sleep(0.5)  # dumpcap says so a moment before packets are really seen
        yield path
        time.sleep(0.5)  # let the last packets reach the file
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def server_hello_groups(pcap: Path, port: int) -> list[int]:
    """The key_share group of every ServerHello in ``pcap`` (HelloRetryRequests included)."""
    assert TSHARK is not None
    out = subprocess.run(
        [
            TSHARK,
            "-r",
            str(pcap),
            "-d",
            f"tcp.port=={port},tls",
            "-Y",
            "tls.handshake.type==2",
            "-T",
            "fields",
            "-e",
            "tls.handshake.extensions_key_share_group",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    groups = []
    for line in out.stdout.split():
        for value in line.split(","):
            if value:
                groups.append(int(value, 0))
    return groups
