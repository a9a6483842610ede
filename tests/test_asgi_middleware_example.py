"""The example app (examples/asgi_app) driven with plain ASGI scopes and callables (Starlette's
TestClient needs httpx, which is optional here).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

import pytest
from asgi_util import (
    CLASSICAL,
    EXAMPLE_APP,
    PQ,
    TCP,
    TCP_CLASSICAL,
    TCP_PQ,
    Message,
    hop,
    make_scope,
    run,
)

# ---------------------------------------------------------------------- the example app


def load_example(monkeypatch: pytest.MonkeyPatch, require: bool = False) -> ModuleType:
    if require:
        monkeypatch.setenv("PQ_DEMO_REQUIRE", "1")
    else:
        monkeypatch.delenv("PQ_DEMO_REQUIRE", raising=False)
    name = f"example_asgi_app_{'require' if require else 'plain'}"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Any:
    return load_example(monkeypatch).app


def test_example_page_over_post_quantum_http3(example: Any) -> None:
    ex = run(example, make_scope(PQ))
    assert ex.status == 200 and (ex.header("content-type") or "").startswith("text/html")
    page = ex.text
    assert "<title>" in page and "HTTP/3" in page and "X25519MLKEM768" in page
    assert "post-quantum" in page and "not post-quantum" not in page
    assert ex.header("pq-key-exchange") == "X25519MLKEM768; post-quantum"


def test_example_page_over_classical_quic_and_tcp(example: Any) -> None:
    page = run(example, make_scope(CLASSICAL)).text
    assert "not post-quantum" in page and "x25519" in page
    page = run(example, make_scope(TCP)).text
    assert "not post-quantum (group unknown on TCP)" in page and "HTTP/2" in page
    page = run(example, make_scope(TCP, http_version="1.1")).text
    assert "HTTP/1.1" in page


def test_example_page_shows_the_tcp_group_like_the_quic_one(example: Any) -> None:
    ex = run(example, make_scope(TCP_PQ, http_version="2"))
    page = ex.text
    assert "X25519MLKEM768" in page and "(0x11EC)" in page and "HTTP/2" in page
    assert "post-quantum" in page and "not post-quantum" not in page
    assert "cannot choose or report" not in page
    assert ex.header("pq-key-exchange") == "X25519MLKEM768; post-quantum"
    page = run(example, make_scope(TCP_CLASSICAL, http_version="1.1")).text
    assert "x25519" in page and "not post-quantum" in page and "HTTP/1.1" in page


def test_example_page_lists_the_hops(example: Any) -> None:
    hops = [hop("visitor-edge", True), hop("edge-connector", True), hop("connector-origin", True)]
    page = run(example, make_scope(PQ, hops=hops)).text
    assert "post-quantum on every hop" in page and "not post-quantum" not in page
    assert page.count("X25519MLKEM768") >= 4 and "edge-connector" in page
    hops[2] = hop("connector-origin", False, "tcp")
    page = run(example, make_scope(PQ, hops=hops)).text
    assert "not post-quantum" in page and "post-quantum on every hop" not in page


def test_example_api_connection(example: Any) -> None:
    ex = run(example, make_scope(PQ, path="/api/connection"))
    data = json.loads(ex.body)
    assert {
        "http_version",
        "transport",
        "group",
        "codepoint",
        "post_quantum",
        "group_known",
        "hops",
        "all_hops_post_quantum",
    } <= set(data)
    assert (data["http_version"], data["transport"], data["group"], data["codepoint"]) == (
        "3",
        "quic",
        "X25519MLKEM768",
        4588,
    )
    assert data["post_quantum"] is True and data["all_hops_post_quantum"] is True
    tcp = json.loads(run(example, make_scope(TCP, path="/api/connection")).body)
    assert tcp["transport"] == "tcp" and tcp["group"] is None and tcp["post_quantum"] is False


def test_example_echo_streams_the_body_back(example: Any) -> None:
    chunks = [bytes([i]) * 10_000 for i in range(5)]
    incoming: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < 4} for i, c in enumerate(chunks)
    ]
    ex = run(example, make_scope(PQ, method="POST", path="/echo"), incoming)
    assert ex.status == 200 and ex.body == b"".join(chunks)
    assert len([m for m in ex.sent if m["type"] == "http.response.body"]) > 1  # streamed


def test_example_bytes_and_pid(example: Any) -> None:
    ex = run(example, make_scope(PQ, path="/bytes/200000"))
    assert ex.status == 200 and len(ex.body) == 200_000 and ex.header("content-length") == "200000"
    assert ex.body[:256] == bytes(range(256))
    assert run(example, make_scope(PQ, path="/bytes/0")).body == b""
    import os

    assert json.loads(run(example, make_scope(PQ, path="/pid")).body) == {"pid": os.getpid()}


def test_example_websocket_echo(example: Any) -> None:
    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hello"},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    ex = run(example, make_scope(PQ, "websocket", path="/ws"), incoming)
    assert ex.sent[0]["type"] == "websocket.accept"
    assert [m.get("text") or m.get("bytes") for m in ex.sent[1:]] == ["hello", b"\x00\x01"]


def test_example_require_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_example(monkeypatch, require=True).app
    assert run(app, make_scope(PQ)).status == 200
    tcp = run(app, make_scope(TCP, path="/api/connection"))
    assert tcp.status == 403 and tcp.header("alt-svc") and '"group"' not in tcp.text
    quic = run(app, make_scope(CLASSICAL))
    assert quic.status == 403 and "x25519" in quic.text
    ws = run(app, make_scope(CLASSICAL, "websocket", path="/ws"), [{"type": "websocket.connect"}])
    assert ws.sent == [{"type": "websocket.close", "code": 1008}]


def test_example_through_starlettes_test_client(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")
    from starlette.testclient import TestClient

    app = load_example(monkeypatch).app
    with TestClient(app) as client:  # plain http, no pq_quic: unknown, not post-quantum
        page = client.get("/")
        assert page.status_code == 200 and "not post-quantum" in page.text
        assert page.headers["pq-key-exchange"] == "unknown; tcp"
        assert client.post("/echo", content=b"abc").content == b"abc"
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
