"""The connector's origin client when things go wrong: every failure is a 502/504 naming the
origin, and the client stays usable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from origin_support import (
    KINDS,
    MB,
    TCP_TLS,
    Origins,
    Produced,
    expected_hop,
    nothing,
    origin_error,
    raw_origin,
    read_all,
    run,
    tls_origin,
)

from pq_quic_plugin.tunnel.origin import (
    OriginClient,
    OriginError,
    OriginRequest,
    OriginResponse,
)
from tools.loopback import free_port

pytest_plugins = ["origin_fixtures"]  # the session-wide ``origins`` fixture
pytestmark = pytest.mark.slow  # three origin servers as processes


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_origin_refusing_tcp_is_502_naming_the_origin(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}"

    request = OriginRequest(url, "GET", "/", [("Host", "v")], nothing())

    error = run(lambda client: origin_error(client.request(request)))
    assert error.status == 502
    assert url in error.reason and "refused" in error.reason


def test_https_origin_not_answering_quic_is_504_naming_the_origin() -> None:
    url = f"https://127.0.0.1:{free_port()}"
    request = OriginRequest(url, "GET", "/", [("Host", "v")], nothing(), protocol="http3")

    error = run(lambda client: origin_error(client.request(request)), connect_timeout=1.0)
    assert error.status == 504
    assert url in error.reason and "QUIC handshake" in error.reason


@pytest.mark.parametrize("kind", KINDS)
def test_slow_origin_is_504(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[OriginError, int]:
        error = await origin_error(
            client.request(origins.request(kind, "/slow?delay=10", timeout=1))
        )
        after = await client.request(origins.request(kind))
        await read_all(after)
        return error, after.status

    error, status = run(go)
    assert error.status == 504 and origins.url(kind) in error.reason
    assert status == 200


@pytest.mark.parametrize("kind", ["http", *TCP_TLS])
def test_origin_that_stops_reading_the_upload_holds_it_back(origins: Origins, kind: str) -> None:
    body = Produced(512 * MB)

    request = origins.request(kind, "/stall", "POST", body=body, timeout=2)

    error = run(lambda client: origin_error(client.request(request)))
    assert error.status == 504 and "stopped reading the request body" in error.reason
    assert body.taken < 256 * MB, f"{body.taken} bytes taken from the visitor"


def test_malformed_response_is_502_naming_the_origin() -> None:
    async def go(client: OriginClient) -> tuple[str, OriginError]:
        server, url = await raw_origin(b"HELLO THERE\r\n\r\n")
        async with server:
            error = await origin_error(
                client.request(OriginRequest(url, "GET", "/x", [("Host", "v")], nothing()))
            )
        return url, error

    url, error = run(go)
    assert error.status == 502 and url in error.reason and "no valid response" in error.reason


def test_body_broken_off_by_the_origin_raises_from_the_iterator() -> None:
    async def go(client: OriginClient) -> tuple[str, int, bytes, OriginError]:
        server, url = await raw_origin(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        received = b""
        async with server:
            response = await client.request(
                OriginRequest(url, "GET", "/x", [("Host", "v")], nothing())
            )
            with pytest.raises(OriginError) as caught:
                async for chunk in response.body:
                    received += chunk
        return url, response.status, received, caught.value

    url, status, received, error = run(go)
    assert status == 200 and received == b"0123456789"
    assert error.status == 502 and url in error.reason and "broke off" in error.reason


def test_unknown_policy_fails_at_once() -> None:
    with pytest.raises(ValueError, match="policy"):
        OriginClient("sometimes")


def test_auto_speaks_http1_to_an_origin_without_h2_and_http2_says_why_not(pki: Any) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def go(client: OriginClient) -> tuple[str, OriginResponse, bytes, OriginError]:
        server, url = await tls_origin(pki, ["http/1.1"], reply)
        kw: dict[str, Any] = {"ca_file": str(pki.ca_cert), "server_name": "localhost"}
        async with server:
            response = await client.request(
                OriginRequest(url, "GET", "/", [("Host", "v")], nothing(), **kw)
            )
            body = await read_all(response)
            error = await origin_error(
                client.request(
                    OriginRequest(
                        url, "GET", "/", [("Host", "v")], nothing(), protocol="http2", **kw
                    )
                )
            )
            await client.aclose()  # its kept-alive connection goes before the server does
        return url, response, body, error

    url, response, body, error = run(go)
    assert response.status == 200 and body == b"ok"
    assert response.hop == expected_hop("h1tls", "x25519")
    assert error.status == 502 and url in error.reason
    assert "does not offer HTTP/2" in error.reason


def test_an_origin_protocol_the_service_cannot_speak_is_refused() -> None:
    async def go(client: OriginClient) -> list[OriginError]:
        errors = []
        for url, protocol in [("http://127.0.0.1:1", "http2"), ("http://127.0.0.1:1", "http3")]:
            errors.append(await origin_error(client.request(OriginRequest(url, protocol=protocol))))
        return errors

    for error in run(go):
        assert error.status == 502 and "needs an https:// service" in error.reason


def test_certificate_for_another_name_is_502_naming_the_origin(origins: Origins) -> None:
    request = origins.request("h2", server_name="other.example")

    error = run(lambda client: origin_error(client.request(request)))
    assert error.status == 502 and origins.https in error.reason
    assert "did not verify" in error.reason and "other.example" in error.reason


def test_body_failure_from_the_visitor_propagates_unchanged(origins: Origins) -> None:
    class VisitorGone(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise VisitorGone("visitor reset the stream")

    async def go(client: OriginClient, kind: str) -> None:
        with pytest.raises(VisitorGone):
            response = await client.request(origins.request(kind, "/sha256", "POST", body=broken))
            await read_all(response)
        after = await client.request(origins.request(kind))
        await read_all(after)
        assert after.status == 200

    for kind in KINDS:
        run(lambda client, kind=kind: go(client, kind))  # type: ignore[misc]
