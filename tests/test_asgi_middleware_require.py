"""PostQuantumMiddleware in require mode: what is refused, how, and what it costs the
connection, on plain ASGI scopes.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgi_util import (
    ABSENT,
    CLASSICAL,
    PQ,
    TCP,
    TCP_CLASSICAL,
    TCP_PQ,
    Message,
    Recorder,
    hop,
    make_scope,
    run,
)

from pq_quic_plugin.asgi.middleware import (
    PostQuantumMiddleware,
)

# ---------------------------------------------------------------------- require


def test_require_refuses_tcp_with_an_explanation_page_and_alt_svc() -> None:
    app = Recorder()
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(TCP))
    assert not app.called
    assert ex.status == 403
    assert ex.header("alt-svc") == 'h3=":8443"; ma=3600'
    assert ex.header("content-type") == "text/html; charset=utf-8"
    assert ex.header("cache-control") == "no-store"
    assert ex.header("content-length") == str(len(ex.body))
    assert ex.header("pq-key-exchange") == "unknown; tcp"
    page = ex.text
    assert page.startswith("<!doctype html>") and "<title>" in page
    assert "HTTP/3" in page and "X25519MLKEM768" in page and "post-quantum" in page
    assert "HTTP/2 over TCP" in page and "Chrome" in page and "Firefox" in page
    assert '"group"' not in page  # never the app's JSON
    assert ex.header("connection") is None  # the (empty) body was drained: keep-alive is fine


def test_require_tcp_alt_svc_argument_and_port_fallbacks() -> None:
    ex = run(
        PostQuantumMiddleware(Recorder(), require=True, alt_svc='h3=":443"; ma=86400'),
        make_scope(TCP),
    )
    assert ex.header("alt-svc") == 'h3=":443"; ma=86400'
    no_server = make_scope(TCP, server=None, headers=[])
    no_server["headers"] = [(b"host", b"example.test:9443")]
    assert (
        run(PostQuantumMiddleware(Recorder(), require=True), no_server).header("alt-svc")
        == 'h3=":9443"; ma=3600'
    )
    no_server["headers"] = [(b"host", b"example.test")]
    assert (
        run(PostQuantumMiddleware(Recorder(), require=True), no_server).header("alt-svc")
        == 'h3=":443"; ma=3600'
    )


def test_require_refuses_a_stock_server_scope_and_plain_http() -> None:
    app = Recorder()
    ex = run(
        PostQuantumMiddleware(app, require=True), make_scope(ABSENT, http_version="1.1", tls=False)
    )
    assert not app.called and ex.status == 403 and ex.header("alt-svc")
    assert "HTTP/1.1 over TCP without TLS" in ex.text


def _upload(chunks: int, size: int = 100 * 1024) -> list[Message]:
    return [
        {"type": "http.request", "body": b"x" * size, "more_body": i < chunks - 1}
        for i in range(chunks)
    ]


def test_require_drains_a_small_upload_and_keeps_the_connection() -> None:
    app = Recorder()
    scope = make_scope(
        TCP, http_version="1.1", method="POST", headers=[(b"content-length", b"204800")]
    )
    ex = run(PostQuantumMiddleware(app, require=True), scope, _upload(2))
    assert not app.called and ex.status == 403
    assert ex.incoming == [] and ex.header("connection") is None


def test_require_stops_reading_a_large_upload_and_closes_http11() -> None:
    app = Recorder()
    scope = make_scope(
        TCP, http_version="1.1", method="POST", headers=[(b"content-length", b"1024000")]
    )
    ex = run(PostQuantumMiddleware(app, require=True), scope, _upload(10))
    assert not app.called and ex.status == 403
    assert ex.received == 3 and len(ex.incoming) == 7  # 300 KiB read (limit 256 KiB), no more
    assert ex.header("connection") == "close"
    # HTTP/2 and HTTP/3 have no Connection header (it is forbidden there)
    ex = run(
        PostQuantumMiddleware(app, require=True), make_scope(CLASSICAL, method="POST"), _upload(10)
    )
    assert ex.status == 403 and ex.received == 3 and ex.header("connection") is None


def test_require_sends_nothing_to_a_client_that_went_away() -> None:
    app = Recorder()
    incoming = [*_upload(2)[:1], {"type": "http.disconnect"}]
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(TCP, method="POST"), incoming)
    assert not app.called and ex.sent == []


def test_require_survives_a_connection_closed_under_it() -> None:
    async def broken_send(message: Message) -> None:
        raise ConnectionResetError("peer went away")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(
        PostQuantumMiddleware(Recorder(), require=True)(make_scope(TCP), receive, broken_send)
    )


def test_require_head_gets_headers_without_a_body() -> None:
    ex = run(PostQuantumMiddleware(Recorder(), require=True), make_scope(TCP, method="HEAD"))
    assert ex.status == 403 and ex.body == b"" and int(ex.header("content-length") or 0) > 0


def test_require_refuses_classical_quic_with_403_naming_the_group() -> None:
    app = Recorder()
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(CLASSICAL))
    assert not app.called and ex.status == 403
    assert "negotiated x25519, which is not post-quantum" in ex.text
    assert ex.header("alt-svc") is None  # already on HTTP/3: retrying elsewhere cannot help
    assert ex.header("pq-key-exchange") == "x25519; classical"


def test_require_on_tcp_with_a_reported_group() -> None:
    """hypercorn-pq --pq prefer serves classical TCP clients; an app that requires post-quantum
    itself refuses them naming the group, and serves post-quantum TCP like HTTP/3."""
    app = Recorder()
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(TCP_CLASSICAL, http_version="2"))
    assert not app.called and ex.status == 403
    assert "negotiated x25519, which is not post-quantum" in ex.text
    assert "HTTPS (HTTP/1.1, HTTP/2) and HTTP/3" in ex.text
    assert ex.header("alt-svc") is None  # HTTP/3 would not help: the client lacks ML-KEM
    ok = run(PostQuantumMiddleware(app, require=True), make_scope(TCP_PQ, http_version="2"))
    assert app.called and ok.status == 200
    assert ok.header("pq-key-exchange") == "X25519MLKEM768; post-quantum"


def test_require_refuses_quic_with_an_unknown_group() -> None:
    unknown = {
        "transport": "quic",
        "group": None,
        "codepoint": None,
        "post_quantum": False,
        "group_known": False,
    }
    ex = run(PostQuantumMiddleware(Recorder(), require=True), make_scope(unknown))
    assert ex.status == 403 and "unknown" in ex.text and ex.header("alt-svc") is None


def test_require_passes_post_quantum_quic() -> None:
    app = Recorder()
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(PQ))
    assert app.called and ex.status == 200 and ex.body == b"abc"
    assert ex.header("pq-key-exchange") == "X25519MLKEM768; post-quantum"


def test_require_refuses_when_one_hop_is_classical() -> None:
    hops = [hop("visitor-edge", True), hop("edge-connector", False), hop("connector-origin", True)]
    app = Recorder()
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(PQ, hops=hops))
    assert not app.called and ex.status == 403
    assert "edge-connector hop negotiated x25519, which is not post-quantum" in ex.text
    assert ex.header("alt-svc") is None


def test_require_passes_when_every_hop_is_post_quantum() -> None:
    hops = [hop("visitor-edge", True), hop("edge-connector", True), hop("connector-origin", True)]
    app = Recorder()
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(PQ, hops=hops))
    assert app.called and ex.status == 200
    assert ex.header("pq-key-exchange") == "X25519MLKEM768; post-quantum; all-hops=post-quantum"


def test_require_logs_the_refusal_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pq_quic_plugin.asgi")
    scope = make_scope(
        CLASSICAL,
        path="/reset/s3cr3t-token",
        headers=[(b"authorization", b"Bearer s3cr3t-token"), (b"cookie", b"session=s3cr3t-token")],
    )
    run(PostQuantumMiddleware(Recorder(), require=True), scope)
    records = [r for r in caplog.records if r.name == "pq_quic_plugin.asgi"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert "198.51.100.7" in line and "transport=quic" in line and "group=x25519" in line
    assert "s3cr3t" not in line
