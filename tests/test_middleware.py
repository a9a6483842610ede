"""PostQuantumMiddleware driven with ASGI messages (its end-to-end use is in
test_hypercorn_pq.py and the tunnel tests); here the edge cases: websockets, lifespan,
streaming, hop headers from trusted and untrusted clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pq_quic_plugin.asgi import HOPS_HEADER, PostQuantumMiddleware

PQ = {"transport": "quic", "group": "X25519MLKEM768", "codepoint": 0x11EC,
      "post_quantum": True, "group_known": True}
CLASSICAL = {"transport": "quic", "group": "x25519", "codepoint": 0x1D,
             "post_quantum": False, "group_known": True}
TCP = {"transport": "tcp", "group": None, "codepoint": None, "post_quantum": False,
       "group_known": False}


def scope(kind: str = "http", pq: dict | None = PQ, headers=(), client="127.0.0.1"):  # type: ignore[no-untyped-def]
    s: dict[str, Any] = {"type": kind, "path": "/", "http_version": "3" if pq is PQ else "2",
                         "headers": list(headers), "client": (client, 5000),
                         "server": ("127.0.0.1", 8443), "extensions": {}}
    if pq is not None:
        s["extensions"]["pq_quic"] = dict(pq)
    return s


def run(mw: PostQuantumMiddleware, sc: dict, incoming: list[dict]) -> tuple[list[dict], list]:
    sent: list[dict] = []
    seen: list = []
    queue = list(incoming)

    async def receive() -> dict:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def go() -> None:
        await mw(sc, receive, send)

    asyncio.run(go())
    return sent, seen


def app_recording(seen: list):  # type: ignore[no-untyped-def]
    async def app(sc, receive, send):  # type: ignore[no-untyped-def]
        seen.append(sc)
        if sc["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            return message
        if sc["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


def test_header_names_the_group_and_streaming_is_untouched() -> None:
    seen: list = []
    sent, _ = run(PostQuantumMiddleware(app_recording(seen)), scope(), [])
    start = sent[0]
    assert (b"pq-key-exchange", b"X25519MLKEM768; post-quantum") in start["headers"]
    assert [m.get("body") for m in sent[1:]] == [b"a", b"b", b"c", b""]


def test_require_refuses_tcp_with_421_alt_svc_and_never_calls_the_app() -> None:
    seen: list = []
    sent, _ = run(PostQuantumMiddleware(app_recording(seen), require=True), scope(pq=TCP), [])
    assert seen == []
    assert sent[0]["status"] == 421
    assert (b"alt-svc", b'h3=":8443"; ma=3600') in sent[0]["headers"]
    assert b"Post-quantum connection required" in sent[1]["body"]


def test_require_refuses_classical_quic_with_403_naming_the_group() -> None:
    seen: list = []
    sent, _ = run(PostQuantumMiddleware(app_recording(seen), require=True),
                  scope(pq=CLASSICAL), [])
    assert seen == [] and sent[0]["status"] == 403 and b"x25519" in sent[1]["body"]


def test_require_passes_post_quantum() -> None:
    seen: list = []
    sent, _ = run(PostQuantumMiddleware(app_recording(seen), require=True), scope(), [])
    assert len(seen) == 1 and sent[0]["status"] == 200


def test_websocket_under_require_is_closed_before_the_app_runs() -> None:
    seen: list = []
    sent, _ = run(PostQuantumMiddleware(app_recording(seen), require=True),
                  scope("websocket", pq=CLASSICAL), [{"type": "websocket.connect"}])
    assert seen == [] and sent == [{"type": "websocket.close", "code": 1008}]
    sent, _ = run(PostQuantumMiddleware(app_recording(seen), require=True),
                  scope("websocket"), [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.accept"}]


def test_lifespan_passes_through() -> None:
    seen: list = []
    sent, _ = run(PostQuantumMiddleware(app_recording(seen), require=True),
                  {"type": "lifespan"}, [{"type": "lifespan.startup"}])
    assert sent == [{"type": "lifespan.startup.complete"}] and seen[0]["type"] == "lifespan"


def _hops(*pq: bool) -> tuple[bytes, bytes]:
    hops = [{"hop": f"h{i}", "group": "X25519MLKEM768" if p else "x25519", "post_quantum": p}
            for i, p in enumerate(pq)]
    return (HOPS_HEADER.encode(), json.dumps(hops).encode())


def test_hops_from_the_trusted_connector_reach_the_scope_and_a_classical_hop_is_refused() -> None:
    seen: list = []
    sent, _ = run(PostQuantumMiddleware(app_recording(seen), require=True),
                  scope(headers=[_hops(True, True)]), [])
    assert sent[0]["status"] == 200
    assert [h["hop"] for h in seen[0]["extensions"]["pq_quic"]["hops"]] == ["h0", "h1"]
    assert all(k != HOPS_HEADER.encode() for k, _ in seen[0]["headers"])
    sent, _ = run(PostQuantumMiddleware(app_recording([]), require=True),
                  scope(headers=[_hops(True, False)]), [])
    assert sent[0]["status"] == 403 and b"h1 hop negotiated x25519" in sent[1]["body"]


def test_hops_header_from_an_untrusted_client_is_dropped() -> None:
    seen: list = []
    run(PostQuantumMiddleware(app_recording(seen)),
        scope(headers=[_hops(True)], client="203.0.113.9"), [])
    assert "hops" not in seen[0]["extensions"]["pq_quic"]
    assert all(k != HOPS_HEADER.encode() for k, _ in seen[0]["headers"])
