"""An origin that breaks off mid-body: the visitor must see an error, never a short body.

Real processes on loopback (edge, connector, and an origin that is a raw TCP server sending a
response head and part of the body, then closing). Over HTTP/3 the visitor's stream must be
reset (stock hypercorn would leave it open until the idle timeout); the logs must say what
happened without a traceback.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tunnel_chain import TUNNEL_HOST, running_chain

from pq_quic_plugin.http3_client import HTTP3Error, client_configuration, open_session

PROMISED = 1_000_000
SENT = b"0123456789" * 1000


@pytest.fixture
def broken_origin() -> Iterator[int]:
    """HTTP/1.1 origin: answers 200 with content-length PROMISED, sends SENT, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                             b"content-length: %d\r\n\r\n" % PROMISED + SENT)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_origin_breaking_off_resets_the_visitor_stream(tmp_path: Path, broken_origin: int) -> None:
    with running_chain(tmp_path, connector=False) as chain:
        config = chain.connector_config("broken.yml", ingress=[
            {"hostname": TUNNEL_HOST, "service": f"http://127.0.0.1:{broken_origin}"},
            {"service": "http_status:404"},
        ])
        chain.connector = chain.start_connector(config=config)

        async def visit() -> tuple[int, int, BaseException | None]:
            config = client_configuration("require", cafile=str(chain.pki.ca_cert))
            async with open_session(chain.url, config) as session:
                status, _, body = await session.stream("GET", "/file")
                received, error = 0, None
                try:
                    async for chunk in body:
                        received += len(chunk)
                except HTTP3Error as exc:
                    error = exc
                return status, received, error

        status, received, error = asyncio.run(asyncio.wait_for(visit(), 20))
        assert status == 200
        assert received <= len(SENT)
        assert isinstance(error, HTTP3Error) and "reset" in str(error)
        connector_log = chain.connector.log()
        assert "response cancelled after the head" in connector_log
        assert "broke off" in connector_log
        assert "Traceback" not in connector_log
        edge_log = chain.edge.log()
        assert "response aborted after the head" in edge_log
        assert "Traceback" not in edge_log
