"""PostQuantumMiddleware with WebSockets, lifespan and the tunnel's hops header."""

from __future__ import annotations

import json

import pytest
from asgi_util import (
    CLASSICAL,
    PQ,
    TCP,
    Recorder,
    hop,
    make_scope,
    run,
)

from pq_quic_plugin.asgi.middleware import (
    HOPS_HEADER,
    PostQuantumMiddleware,
    connection_facts,
)

# ---------------------------------------------------------------------- websocket, lifespan


def test_websocket_under_require_is_closed_before_the_app_runs() -> None:
    app = Recorder()
    ex = run(
        PostQuantumMiddleware(app, require=True),
        make_scope(CLASSICAL, "websocket"),
        [{"type": "websocket.connect"}],
    )
    assert not app.called
    assert ex.sent == [{"type": "websocket.close", "code": 1008}]
    ex = run(
        PostQuantumMiddleware(app, require=True),
        make_scope(TCP, "websocket"),
        [{"type": "websocket.connect"}],
    )
    assert ex.sent == [{"type": "websocket.close", "code": 1008}] and not app.called


def test_websocket_denial_response_when_the_server_supports_it() -> None:
    app = Recorder()
    scope = make_scope(CLASSICAL, "websocket", extensions={"websocket.http.response": {}})
    ex = run(PostQuantumMiddleware(app, require=True), scope, [{"type": "websocket.connect"}])
    assert not app.called
    assert [m["type"] for m in ex.sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert ex.status == 403 and b"x25519" in ex.body


def test_websocket_over_post_quantum_reaches_the_app_unlabelled() -> None:
    app = Recorder()
    ex = run(
        PostQuantumMiddleware(app, require=True),
        make_scope(PQ, "websocket"),
        [{"type": "websocket.connect"}],
    )
    assert app.called
    assert ex.sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1000}]


def test_lifespan_passes_straight_through() -> None:
    app = Recorder()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    ex = run(PostQuantumMiddleware(app, require=True), scope, [{"type": "lifespan.startup"}])
    assert app.scopes == [scope] and app.scopes[0] is scope
    assert ex.sent == [{"type": "lifespan.startup.complete"}]


def test_invalid_arguments_are_rejected_early() -> None:
    with pytest.raises(ValueError):
        PostQuantumMiddleware(Recorder(), header_name="bad name")
    with pytest.raises(ValueError):
        PostQuantumMiddleware(Recorder(), alt_svc='h3=":443"\r\nset-cookie: x=1')


# ---------------------------------------------------------------------- tunnel hops header


def _hops_header(*pq: bool) -> tuple[bytes, bytes]:
    hops = [
        hop(name, p)
        for name, p in zip(("visitor-edge", "edge-connector", "connector-origin"), pq, strict=False)
    ]
    return HOPS_HEADER.encode(), json.dumps(hops).encode()


def test_hops_header_from_the_trusted_connector_reaches_the_scope() -> None:
    app = Recorder()
    scope = make_scope(PQ, client=("127.0.0.1", 40000), headers=[_hops_header(True, True, True)])
    ex = run(PostQuantumMiddleware(app, require=True), scope)
    assert ex.status == 200
    seen = app.scopes[0]
    assert [h["hop"] for h in connection_facts(seen).hops] == [
        "visitor-edge",
        "edge-connector",
        "connector-origin",
    ]
    assert "hops" not in scope["extensions"]["pq_quic"]  # the server's dicts are not mutated
    ex = run(
        PostQuantumMiddleware(Recorder(), require=True),
        make_scope(PQ, client=("::1", 40000), headers=[_hops_header(True, False, True)]),
    )
    assert ex.status == 403 and "edge-connector hop negotiated x25519" in ex.text


def test_hops_header_from_anyone_else_is_dropped() -> None:
    app = Recorder()
    run(PostQuantumMiddleware(app), make_scope(PQ, headers=[_hops_header(True)]))
    seen = app.scopes[0]
    assert connection_facts(seen).hops == ()
    assert all(k != HOPS_HEADER.encode() for k, _ in seen["headers"])


@pytest.mark.parametrize(
    "headers",
    [
        [(HOPS_HEADER.encode(), b"not json")],
        [(HOPS_HEADER.encode(), b'{"hop": "visitor-edge"}')],
        [_hops_header(True), _hops_header(False)],
    ],
)
def test_malformed_or_repeated_hops_headers_are_dropped(headers: list) -> None:
    app = Recorder()
    run(PostQuantumMiddleware(app), make_scope(PQ, client=("127.0.0.1", 1), headers=headers))
    assert connection_facts(app.scopes[0]).hops == ()
    assert all(k != HOPS_HEADER.encode() for k, _ in app.scopes[0]["headers"])


def test_hops_reported_by_the_server_win_over_the_header() -> None:
    app = Recorder()
    scope = make_scope(
        PQ,
        client=("127.0.0.1", 1),
        hops=[hop("visitor-edge", False)],
        headers=[_hops_header(True, True, True)],
    )
    ex = run(PostQuantumMiddleware(app, require=True), scope)
    assert ex.status == 403 and not app.called
