"""A visitor's raw HTTP/1.1 over TLS, from any loopback address.

The edge's checks are about bytes that well-behaved clients never send (``//path``, both
``Transfer-Encoding`` and ``Content-Length``, a 16 KB ``Host``), so these tests write requests by
hand. Linux routes all of 127.0.0.0/8 to the loopback interface, so binding the client socket to
127.0.0.2, 127.0.0.3, ... gives each test visitor an address of its own without a namespace.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

SERVER_NAME = "localhost"


def tls_context(ca_file: Path | str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


def request_bytes(
    method: str, path: str, headers: list[tuple[str, str]] = (), body: bytes = b""
) -> bytes:  # type: ignore[assignment]
    """An HTTP/1.1 request as written; ``Host: localhost`` unless ``headers`` has a Host."""
    lines = [f"{method} {path} HTTP/1.1"]
    if not any(k.lower() == "host" for k, _ in headers):
        lines.append(f"Host: {SERVER_NAME}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(
    port: int, ca_file: Path | str, raw: bytes, source: str = "127.0.0.1", timeout: float = 20
) -> Reply:
    """Send ``raw`` on a new TLS connection and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0)) as s:
        with tls_context(ca_file).wrap_socket(s, server_hostname=SERVER_NAME) as tls:
            tls.sendall(raw)
            response = http.client.HTTPResponse(tls)
            response.begin()
            body = response.read()
            return Reply(response.status, response.getheaders(), body)


async def open_visitor(
    port: int, ca_file: Path | str, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An asyncio TLS connection to the edge from ``source`` (for visitors that hold on)."""
    return await asyncio.open_connection(
        "127.0.0.1",
        port,
        ssl=tls_context(ca_file),
        server_hostname=SERVER_NAME,
        local_addr=(source, 0),
    )


async def read_status(reader: asyncio.StreamReader) -> int:
    """The status of the response that starts on ``reader``."""
    line = await reader.readline()
    return int(line.split()[1])
