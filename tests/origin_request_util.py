"""Small real origins for the ``originRequest`` tests, in the test's own event loop.

:class:`RecordingOrigin` is an HTTP/1.1 server (h11) on 127.0.0.1 or on a Unix socket, in the
clear or over Python's TLS, that answers every request with what it saw (the ``Host``, the
framing headers, the body's length) and counts the connections it accepted and saw closed, so a
test can tell what each ``originRequest`` key changed on the wire. It also records the TLS server
name (SNI) and the ALPN protocol each TLS connection chose. ``/slow`` answers after 0.3 s, so
requests overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from pq_quic_plugin.tunnel.origin import OriginClient, OriginRequest, OriginResponse


@dataclass
class Seen:
    """One request as the origin read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingOrigin:
    """An HTTP/1.1 origin that remembers what reached it (see the module docstring)."""

    opened: int = 0
    closed: int = 0
    requests: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    alpn: list[str | None] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None

    async def start_tcp(self, tls: ssl.SSLContext | None = None) -> int:
        if tls is not None:
            tls.sni_callback = self._sni
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=tls)
        return int(self.server.sockets[0].getsockname()[1])

    async def start_unix(self, path: Path, tls: ssl.SSLContext | None = None) -> None:
        if tls is not None:
            tls.sni_callback = self._sni
        self.server = await asyncio.start_unix_server(self._handle, str(path), ssl=tls)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    def _sni(self, sslobj: Any, name: str | None, context: Any) -> None:
        self.sni.append(name)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        tls = writer.get_extra_info("ssl_object")
        if tls is not None:
            self.alpn.append(tls.selected_alpn_protocol())
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._one(conn, reader, writer):
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed += 1
            writer.close()

    async def _one(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        request, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed
                return False
        assert request is not None
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        seen = Seen(request.method.decode(), request.target.decode(), headers, body)
        self.requests.append(seen)
        if seen.target.startswith("/slow"):
            await asyncio.sleep(0.3)
        reply = json.dumps({"headers": headers, "body_length": len(body)}).encode()
        head = [("content-type", "application/json"), ("content-length", str(len(reply)))]
        writer.write(conn.send(h11.Response(status_code=200, headers=head)))
        writer.write(conn.send(h11.Data(data=reply)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


def tls_server_context(
    cert: Path, key: Path, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext:
    """A server context from Python's ``ssl``: the system's OpenSSL, classical key exchange."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(list(alpn))
    return context


async def silent_tcp_server() -> tuple[asyncio.AbstractServer, int]:
    """Accepts TCP connections and never sends a byte (no TLS handshake, no HTTP answer)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@contextlib.contextmanager
def full_backlog() -> Any:
    """A listening socket whose accept queue is full: a new connection attempt gets no answer
    at all (its SYN is dropped), as from an overloaded or firewalled origin."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def body_of(response: OriginResponse) -> bytes:
    return b"".join([chunk async for chunk in response.body])


async def get_json(client: OriginClient, request: OriginRequest) -> dict[str, Any]:
    response = await client.request(request)
    assert response.status == 200
    data: dict[str, Any] = json.loads(await body_of(response))
    data["hop"] = response.hop
    return data


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
