"""An origin that breaks off mid-body: the visitor must see an error, never a short body.

Real processes on loopback (edge, connector, and an origin that is a raw TCP server sending a
response head and part of the body, then closing). Whatever the visitor speaks to the edge, it
must learn at once that the body is incomplete: HTTP/3 and HTTP/2 streams are reset (stock
hypercorn leaves both open, so the visitor waits until a timeout), HTTP/1.1 closes the
connection short of the content-length. The logs say what happened without a traceback.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tunnel_chain import TUNNEL_HOST, running_chain, tunnel_host_rules

from pq_quic_plugin.http3 import HTTP3Error, client_configuration, open_session

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

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
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                    b"content-length: %d\r\n\r\n" % PROMISED + SENT
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("transport", ["quic", "http2"])
def test_origin_breaking_off_resets_the_visitor_stream(
    tmp_path: Path, broken_origin: int, transport: str
) -> None:
    """On either transport between edge and connector (``protocol``)."""
    with running_chain(tmp_path, connector=False, protocol=transport) as chain:
        config = chain.connector_config(
            "broken.yml",
            ingress=tunnel_host_rules(f"http://127.0.0.1:{broken_origin}"),
        )
        chain.connector = chain.start_connector(config=config)

        async def visit() -> tuple[int, int, BaseException | None]:
            config = client_configuration("require", cafile=str(chain.pki.ca_cert))
            async with open_session(chain.url, config) as session:
                status, _, body = await session.stream_request("GET", "/file")
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

        context = ssl.create_default_context(cafile=str(chain.pki.ca_cert))
        url = f"https://{TUNNEL_HOST}:{chain.public_port}/file"
        transport = httpx.HTTPTransport(verify=context, http2=True, retries=0)
        with httpx.Client(transport=transport, timeout=20) as h2_client:
            with (
                pytest.raises(httpx.RemoteProtocolError) as h2_error,
                h2_client.stream("GET", url) as resp,
            ):
                assert resp.http_version == "HTTP/2" and resp.status_code == 200
                for _ in resp.iter_bytes():
                    pass
        # A reset at once, not "Server disconnected" after hypercorn's keep-alive timeout.
        assert "StreamReset" in str(h2_error.value), h2_error.value

        context11 = ssl.create_default_context(cafile=str(chain.pki.ca_cert))  # no h2 ALPN
        conn = http.client.HTTPSConnection(
            "127.0.0.1", chain.public_port, context=context11, timeout=20
        )
        conn.request("GET", "/file", headers={"Host": TUNNEL_HOST})
        resp11 = conn.getresponse()
        assert resp11.status == 200
        with pytest.raises(http.client.IncompleteRead):
            resp11.read()
        conn.close()
        connector_log = chain.connector.log()
        assert "response cancelled after the head" in connector_log
        assert "broke off" in connector_log
        assert "Traceback" not in connector_log
        edge_log = chain.edge.log()
        assert "response aborted after the head" in edge_log
        assert "Traceback" not in edge_log
