"""PostQuantumMiddleware and the scope reader, driven with plain ASGI scopes and callables.

A unit test: the scopes below are exactly what hypercorn-pq promises (see docs/hypercorn.md);
the end-to-end runs through real hypercorn-pq processes live elsewhere. The example app is
driven the same way (Starlette's TestClient needs httpx, which is optional here).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pq_quic_plugin.asgi.middleware import (
    HOPS_HEADER,
    PostQuantumMiddleware,
    connection_facts,
    header_value,
)
from pq_quic_plugin.asgi.scope import ConnectionFacts

Message = dict[str, Any]
App = Callable[[Any, Any, Any], Awaitable[None]]

EXAMPLE_APP = Path(__file__).resolve().parent.parent / "examples" / "asgi_app" / "app.py"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
TLS = {
    "server_cert": CERT,
    "tls_version": 0x0304,
    "cipher_suite": 0x1302,
    "client_cert_chain": [],
    "client_cert_name": None,
    "client_cert_error": None,
}
PQ = {
    "transport": "quic",
    "group": "X25519MLKEM768",
    "codepoint": 4588,
    "post_quantum": True,
    "group_known": True,
}
CLASSICAL = {
    "transport": "quic",
    "group": "x25519",
    "codepoint": 0x1D,
    "post_quantum": False,
    "group_known": True,
}
TCP = {
    "transport": "tcp",
    "group": None,
    "codepoint": None,
    "post_quantum": False,
    "group_known": False,
    "note": "key-exchange group unknown on TCP",
}
#: hypercorn-pq's TCP listener with --pq: the post-quantum layer reports the group.
TCP_PQ = {**PQ, "transport": "tcp"}
TCP_CLASSICAL = {**CLASSICAL, "transport": "tcp"}
ABSENT = None  # stock hypercorn, plain http: no pq_quic at all


def make_scope(
    pq: dict | None = PQ,
    kind: str = "http",
    *,
    http_version: str | None = None,
    method: str = "GET",
    path: str = "/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    client: tuple[str, int] | None = ("198.51.100.7", 50123),
    server: tuple[str, int | None] | None = ("127.0.0.1", 8443),
    hops: list[dict] | None = None,
    tls: bool = True,
    extensions: dict | None = None,
) -> dict[str, Any]:
    if http_version is None:
        http_version = "3" if pq is not None and pq.get("transport") == "quic" else "2"
    ext: dict[str, Any] = dict(extensions or {})
    if tls and pq is not None:
        ext["tls"] = dict(TLS)
    if pq is not None:
        ext["pq_quic"] = dict(pq)
        if hops is not None:
            ext["pq_quic"]["hops"] = hops
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "scheme": ("https" if tls else "http") if kind == "http" else ("wss" if tls else "ws"),
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost:8443"), *headers],
        "client": client,
        "server": server,
        "extensions": ext,
    }
    if kind == "http":
        scope["method"] = method
    return scope


def hop(name: str, post_quantum: bool, transport: str = "quic") -> dict[str, Any]:
    return {
        "hop": name,
        "transport": transport,
        "post_quantum": post_quantum,
        "group": "X25519MLKEM768" if post_quantum else "x25519",
    }


class Exchange:
    """One ASGI call: scripted incoming messages, recorded outgoing ones."""

    def __init__(self, incoming: Iterable[Message] = ()) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []
        self.received = 0
        self.done = asyncio.Event()

    async def receive(self) -> Message:
        self.received += 1
        if self.incoming:
            return self.incoming.pop(0)
        await self.done.wait()  # like a server: nothing more until the response is over
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] in (
            "http.response.body",
            "websocket.http.response.body",
        ) and not message.get("more_body"):
            self.done.set()
        if message["type"] == "websocket.close":
            self.done.set()

    # ---- reading the result
    @property
    def start(self) -> Message:
        return next(m for m in self.sent if m["type"].endswith("http.response.start"))

    @property
    def status(self) -> int:
        return int(self.start["status"])

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.start["headers"] if bytes(k).lower() == name.encode()]
        return bytes(values[-1]).decode() if values else None

    def headers(self, name: str) -> list[str]:
        return [
            bytes(v).decode() for k, v in self.start["headers"] if bytes(k).lower() == name.encode()
        ]

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.sent if m["type"].endswith("http.response.body")
        )

    @property
    def text(self) -> str:
        return self.body.decode()


def run(app: App, scope: dict[str, Any], incoming: Iterable[Message] | None = None) -> Exchange:
    if incoming is None:  # what a server delivers for a request without a body
        incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    exchange = Exchange(incoming)

    async def go() -> None:
        await asyncio.wait_for(app(scope, exchange.receive, exchange.send), 5)

    asyncio.run(go())
    return exchange


class Recorder:
    """An ASGI app that records its calls and streams ``a``, ``b``, ``c`` (with trailers)."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            await send({"type": "lifespan.startup.complete"})
            return
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "trailers": True,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-sum", b"abc")],
                "more_trailers": False,
            }
        )

    @property
    def called(self) -> bool:
        return bool(self.scopes)


# ---------------------------------------------------------------------- scope reader


def test_facts_from_the_quic_contract() -> None:
    facts = connection_facts(make_scope(PQ))
    assert (facts.transport, facts.http_version, facts.protocol) == ("quic", "3", "HTTP/3")
    assert (facts.group, facts.codepoint) == ("X25519MLKEM768", 4588)
    assert facts.post_quantum and facts.group_known and facts.all_hops_post_quantum
    assert facts.tls_version == "TLSv1.3"
    assert (facts.cipher_suite, facts.cipher_suite_name) == (0x1302, "TLS_AES_256_GCM_SHA384")
    assert facts.hops == () and facts.secure and facts.verdict == "post-quantum"


def test_facts_from_the_tcp_contract() -> None:
    facts = connection_facts(make_scope(TCP, http_version="1.1"))
    assert (facts.transport, facts.protocol, facts.group) == ("tcp", "HTTP/1.1", None)
    assert not facts.post_quantum and not facts.group_known and not facts.all_hops_post_quantum
    assert facts.verdict == "not post-quantum (group unknown on TCP)"
    assert facts.note == "key-exchange group unknown on TCP"


@pytest.mark.parametrize(
    "scope",
    [
        {"type": "http"},
        {"type": "lifespan"},
        {"type": "http", "extensions": None, "http_version": None},
        {"type": "http", "extensions": {"pq_quic": None, "tls": None}},
        {"type": "http", "extensions": {"pq_quic": "yes", "tls": ["TLSv1.3"]}},
        {
            "type": "http",
            "extensions": {
                "pq_quic": {
                    "hops": "all of them",
                    "codepoint": "4588",
                    "group": 4588,
                    "post_quantum": 1,
                }
            },
        },
        {"type": "websocket", "extensions": {"pq_quic": {"hops": [None, 3, {"hop": "x"}]}}},
    ],
)
def test_facts_never_raise_and_fail_closed(scope: dict) -> None:
    facts = connection_facts(scope)
    assert facts.post_quantum is False and facts.all_hops_post_quantum is False
    assert facts.group is None and facts.codepoint is None
    assert all(h["post_quantum"] is False for h in facts.hops)
    json.dumps(facts.as_dict())  # always serialisable


def test_facts_without_pq_quic_are_unknown_and_not_post_quantum() -> None:
    plain = connection_facts(make_scope(ABSENT, http_version="1.1", tls=False))
    assert (plain.transport, plain.group, plain.group_known) == ("tcp", None, False)
    assert not plain.post_quantum and not plain.secure and plain.tls_version is None
    h3 = connection_facts({"type": "http", "http_version": "3"})
    assert h3.transport == "quic" and not h3.post_quantum


def test_post_quantum_must_be_literally_true() -> None:
    facts = connection_facts(make_scope({**PQ, "post_quantum": "true"}))
    assert facts.post_quantum is False


def test_all_hops_post_quantum_needs_every_hop_and_this_connection() -> None:
    good = [hop("visitor-edge", True), hop("edge-connector", True), hop("connector-origin", True)]
    assert connection_facts(make_scope(PQ, hops=good)).all_hops_post_quantum
    assert connection_facts(make_scope(PQ, hops=good)).verdict == "post-quantum on every hop"
    bad = [*good[:2], hop("connector-origin", False, "tcp")]
    facts = connection_facts(make_scope(PQ, hops=bad))
    assert not facts.all_hops_post_quantum
    assert [h["hop"] for h in facts.classical_hops] == ["connector-origin"]
    assert not connection_facts(make_scope(CLASSICAL, hops=good)).all_hops_post_quantum


def test_facts_are_frozen_and_copied_out_of_the_scope() -> None:
    hops = [hop("visitor-edge", True)]
    facts = connection_facts(make_scope(PQ, hops=hops))
    hops[0]["post_quantum"] = False
    assert facts.all_hops_post_quantum
    with pytest.raises(AttributeError):
        facts.group = "x25519"  # type: ignore[misc]
    assert isinstance(facts, ConnectionFacts)


# ---------------------------------------------------------------------- header


@pytest.mark.parametrize(
    "pq, expected",
    [
        (PQ, "X25519MLKEM768; post-quantum"),
        (CLASSICAL, "x25519; classical"),
        (TCP, "unknown; tcp"),
        (TCP_PQ, "X25519MLKEM768; post-quantum"),
        (TCP_CLASSICAL, "x25519; classical"),
    ],
)
def test_header_names_the_group(pq: dict, expected: str) -> None:
    app = Recorder()
    ex = run(PostQuantumMiddleware(app), make_scope(pq))
    assert ex.status == 200 and ex.header("pq-key-exchange") == expected
    assert ex.header("content-type") == "text/plain"


def test_header_on_a_stock_server_scope_and_custom_name() -> None:
    ex = run(
        PostQuantumMiddleware(Recorder(), header_name="X-Key-Exchange"),
        make_scope(ABSENT, http_version="1.1", tls=False),
    )
    assert ex.header("x-key-exchange") == "unknown; tcp" and ex.header("pq-key-exchange") is None


def test_header_replaces_an_app_supplied_one_and_can_be_turned_off() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(b"pq-key-exchange", b"lies")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    assert run(PostQuantumMiddleware(app), make_scope(CLASSICAL)).headers("pq-key-exchange") == [
        "x25519; classical"
    ]
    assert run(PostQuantumMiddleware(app, header=False), make_scope(CLASSICAL)).headers(
        "pq-key-exchange"
    ) == ["lies"]


def test_header_value_behind_the_tunnel() -> None:
    facts = connection_facts(make_scope(PQ, hops=[hop("visitor-edge", False)]))
    assert header_value(facts) == "X25519MLKEM768; post-quantum; all-hops=classical"


def test_streaming_body_trailers_and_request_body_are_untouched() -> None:
    app = Recorder()
    incoming = [
        {"type": "http.request", "body": b"up", "more_body": True},
        {"type": "http.request", "body": b"load", "more_body": False},
    ]
    ex = run(PostQuantumMiddleware(app, require=True), make_scope(PQ, method="POST"), incoming)
    assert app.bodies == [b"upload"]
    assert [m["type"] for m in ex.sent] == ["http.response.start"] + ["http.response.body"] * 4 + [
        "http.response.trailers"
    ]
    assert [m.get("body") for m in ex.sent[1:5]] == [b"a", b"b", b"c", b""]
    assert [m.get("more_body") for m in ex.sent[1:5]] == [True, True, True, False]
    assert ex.start["trailers"] is True
    assert ex.sent[-1]["headers"] == [(b"x-sum", b"abc")]


def test_the_apps_message_dict_is_not_mutated() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"x"})

    run(PostQuantumMiddleware(app), make_scope(PQ))
    assert start["headers"] == [(b"a", b"1")]


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
