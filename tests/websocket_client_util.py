"""A blocking WebSocket client over TLS (HTTP/1.1 upgrade) built on wsproto, for tests."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)


def websocket_exchange(
    ip: str,
    port: int,
    host: str,
    path: str,
    cafile: Path,
    messages: list[str | bytes],
    timeout: float = 15,
) -> tuple[list[str | bytes], int | None]:
    """Connect, send each message, collect one echo per message, close. Returns the echoes and
    the code of the server's close (None if it did not close first)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((ip, port), timeout=timeout)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target=path)))
    received: list[str | bytes] = []
    accepted = False
    text_parts: list[str] = []
    byte_parts: list[bytes] = []
    try:
        while len(received) < len(messages):
            data = sock.recv(65536)
            if not data:
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = True
                    for message in messages:
                        sock.sendall(
                            ws.send(
                                TextMessage(message)
                                if isinstance(message, str)
                                else BytesMessage(message)
                            )
                        )
                elif isinstance(event, RejectConnection):
                    raise ConnectionError(f"websocket rejected with {event.status_code}")
                elif isinstance(event, TextMessage):
                    text_parts.append(event.data)
                    if event.message_finished:
                        received.append("".join(text_parts))
                        text_parts.clear()
                elif isinstance(event, BytesMessage):
                    byte_parts.append(bytes(event.data))
                    if event.message_finished:
                        received.append(b"".join(byte_parts))
                        byte_parts.clear()
                elif isinstance(event, CloseConnection):
                    return received, event.code
        if accepted:
            sock.sendall(ws.send(CloseConnection(code=1000)))
    finally:
        sock.close()
    return received, None
