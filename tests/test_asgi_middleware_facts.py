"""The scope reader (connection_facts) and the header PostQuantumMiddleware adds, on plain
ASGI scopes shaped as hypercorn-pq promises (docs/hypercorn.md).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgi_util import (
    ABSENT,
    CLASSICAL,
    PQ,
    TCP,
    TCP_CLASSICAL,
    TCP_PQ,
    Recorder,
    hop,
    make_scope,
    run,
)

from pq_quic_plugin.asgi.middleware import (
    PostQuantumMiddleware,
    connection_facts,
    header_value,
)
from pq_quic_plugin.asgi.scope import ConnectionFacts

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
