"""The connector's origin client opening WebSockets to real origins on loopback."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from origin_support import (
    APPS,
    Origins,
    expected_hop,
    origin_error,
    run,
)

from pq_quic_plugin.tunnel.origin import (
    OriginClient,
    OriginRequest,
)
from tools.loopback import free_port

pytest_plugins = ["origin_fixtures"]  # the session-wide ``origins`` fixture
pytestmark = pytest.mark.slow  # three origin servers as processes


# ---------------------------------------------------------------------------- WebSocket


@pytest.mark.parametrize(
    "kind, policy", [("http", "prefer"), ("h2", "prefer"), ("h2", "require"), ("h3", "require")]
)
def test_websocket_echo(origins: Origins, kind: str, policy: str) -> None:
    """``https://`` WebSockets go over post-quantum TLS on TCP (wss), whatever the rule's
    origin protocol; the hop says so."""

    async def go(client: OriginClient) -> dict[str, Any]:
        ws = await client.websocket(
            origins.request(kind, "/ws", body=None, headers=[("Host", "visitor.example")]),
            ["chat", "other"],
        )
        out: dict[str, Any] = {"status": ws.status, "subprotocol": ws.subprotocol, "hop": ws.hop}
        await ws.send("hello")
        out["text"] = await ws.receive()
        await ws.send(b"\x00\x01" * 50_000)
        out["bytes"] = await ws.receive()
        await ws.send("close:4001")
        out["after_close"] = await ws.receive()
        out["again"] = await ws.receive()
        out["close_code"] = ws.close_code
        await ws.send("ignored after the close")
        await ws.close()
        return out

    out = run(go, policy=policy)
    assert out["status"] == 101 and out["subprotocol"] == "chat"
    assert out["text"] == "hello" and out["bytes"] == b"\x00\x01" * 50_000
    assert out["after_close"] is None and out["again"] is None
    assert out["close_code"] == 4001
    assert out["hop"] == expected_hop("http" if kind == "http" else "h1tls")


def test_websocket_under_require_refuses_a_classical_origin(origins: Origins) -> None:
    request = origins.request("h2", "/ws", body=None, url=origins.stdlib_tls)

    error = run(lambda client: origin_error(client.websocket(request)), policy="require")
    assert error.status == 502 and origins.stdlib_tls in error.reason
    assert "post-quantum" in error.reason


def test_websocket_client_close_and_refusal(origins: Origins) -> None:
    async def go(client: OriginClient) -> tuple[int | None, Any, int, Any]:
        ws = await client.websocket(origins.request("http", "/ws", body=None))
        await ws.send("ping")
        assert await ws.receive() == "ping"
        await ws.close(1000)
        closed = (ws.close_code, await ws.receive())
        refused = await client.websocket(origins.request("http", "/elsewhere", body=None))
        return closed[0], closed[1], refused.status, await refused.receive()

    code, after, refused_status, refused_message = run(go)
    assert code == 1000 and after is None
    assert refused_status == 403 and refused_message is None


def test_websocket_refused_connection_is_502() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    request = OriginRequest(url, path="/ws", headers=[("Host", "v")])

    error = run(lambda client: origin_error(client.websocket(request)))
    assert error.status == 502 and url in error.reason


def test_the_app_is_importable_by_hypercorn() -> None:
    """Guard: hypercorn finds the test app from tests/apps (the fixture depends on it)."""
    result = subprocess.run(
        [sys.executable, "-c", "import origin_app; print(origin_app.app)"],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
