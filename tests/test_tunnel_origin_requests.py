"""The connector's origin client: what a request and its hop look like at the origin.

Real origins on loopback (see origin_support.py); HEAD and the post-quantum policies too.
"""

from __future__ import annotations

import json

import pytest
from origin_support import (
    HTTP_VERSION,
    KINDS,
    PQ,
    Origins,
    chunks,
    expected_hop,
    nothing,
    origin_error,
    read_all,
    run,
)

from pq_quic_plugin.tunnel.headers import forwardable
from pq_quic_plugin.tunnel.origin import (
    OriginClient,
    OriginHop,
    OriginResponse,
    join_path,
)

pytest_plugins = ["origin_fixtures"]  # the session-wide ``origins`` fixture
pytestmark = pytest.mark.slow  # three origin servers as processes


# ---------------------------------------------------------------------------- small pieces


def test_join_path_keeps_the_query_and_the_base() -> None:
    assert join_path("", "/x?y=1") == "/x?y=1"
    assert join_path("/base", "/x?y=1") == "/base/x?y=1"
    assert join_path("/base/", "/") == "/base/"
    assert join_path("/base", "x") == "/base/x"
    assert join_path("", "") == "/"


def test_forwardable_drops_hop_by_hop_headers() -> None:
    headers = [
        ("Host", "a.example"),
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "5"),
        ("X-Secret", "1"),
        ("Proxy-Authorization", "x"),
        ("Proxy-Foo", "y"),
        ("TE", "trailers"),
        ("Trailer", "x"),
        ("Upgrade", "h2c"),
        ("Transfer-Encoding", "chunked"),
        (":path", "/"),
        ("X-Kept", "2"),
    ]
    assert forwardable(headers) == [("Host", "a.example"), ("TE", "trailers"), ("X-Kept", "2")]
    assert forwardable([("te", "gzip")]) == []


def test_hop_as_dict_is_what_the_origin_middleware_reads() -> None:
    assert expected_hop("h3").as_dict() == {
        "hop": "connector-origin",
        "transport": "quic",
        "group": PQ,
        "post_quantum": True,
        "signature_scheme": "ECDSA-P256-SHA256",
        "post_quantum_auth": False,
        "http_version": "3",
    }
    assert expected_hop("h2").as_dict() == {
        "hop": "connector-origin",
        "transport": "tcp",
        "group": PQ,
        "post_quantum": True,
        "signature_scheme": "ECDSA-P256-SHA256",
        "post_quantum_auth": False,
        "http_version": "2",
        "tls": True,
    }
    assert expected_hop("http").as_dict() == {
        "hop": "connector-origin",
        "transport": "tcp",
        "group": None,
        "post_quantum": False,
        "signature_scheme": None,
        "post_quantum_auth": False,
        "http_version": "1.1",
    }


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize("kind", KINDS)
def test_get_keeps_host_and_strips_hop_by_hop(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[OriginResponse, dict]:
        response = await client.request(
            origins.request(
                kind,
                "/headers?x=1&y=2",
                url=origins.url(kind) + "/base",
                headers=[
                    ("Host", "visitor.example"),
                    ("Connection", "X-Drop"),
                    ("X-Drop", "1"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authorization", "Basic eA=="),
                    ("Upgrade", "websocket"),
                    ("X-Custom", "kept"),
                ],
            )
        )
        return response, json.loads(await read_all(response))

    response, seen = run(go)
    assert response.status == 200
    assert ("x-origin", "origin-app") in response.headers
    assert not any(k.lower() in ("connection", "transfer-encoding") for k, _ in response.headers)
    assert seen["path"] == "/base/headers" and seen["query"] == "x=1&y=2"
    assert seen["method"] == "GET"
    received = {k: v for k, v in seen["headers"]}
    assert received["host"] == "visitor.example"
    assert received["x-custom"] == "kept"
    for name in ("x-drop", "keep-alive", "proxy-authorization", "upgrade", "connection"):
        assert name not in received, name
    assert "transfer-encoding" not in received and "content-length" not in received
    assert seen["http_version"] == HTTP_VERSION[kind]
    assert response.hop == expected_hop(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_post_bodies_with_and_without_length(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> list[dict]:
        seen = []
        for headers, body in [
            ([("Host", "v")], chunks(b"hello ", b"", b"world")),  # streamed, no length
            ([("Host", "v"), ("Content-Length", "5")], chunks(b"he", b"llo")),
            ([("Host", "v")], nothing()),  # a POST without a body
        ]:
            response = await client.request(
                origins.request(kind, "/headers", "POST", body=body, headers=headers)
            )
            assert response.status == 200
            seen.append(json.loads(await read_all(response)))
        return seen

    streamed, with_length, empty = run(go)
    assert streamed["body_length"] == 11 and with_length["body_length"] == 5
    assert empty["body_length"] == 0
    if HTTP_VERSION[kind] == "1.1":
        assert ["transfer-encoding", "chunked"] in streamed["headers"]
        assert ["content-length", "5"] in with_length["headers"]
        assert ["content-length", "0"] in empty["headers"]


@pytest.mark.parametrize("kind", ["h2", "h3"])
def test_hops_callback_tells_the_origin_the_negotiated_group(origins: Origins, kind: str) -> None:
    def with_hops(hop: OriginHop) -> list[tuple[str, str]]:
        hops = [
            {
                "hop": "edge-connector",
                "transport": "quic",
                "group": "X25519MLKEM768",
                "post_quantum": True,
            },
            hop.as_dict(),
        ]
        return [("Host", "v"), ("pq-tunnel-hops", json.dumps(hops))]

    async def go(client: OriginClient) -> dict:
        response = await client.request(origins.request(kind, headers_for=with_hops))
        return json.loads(await read_all(response))

    seen = run(go)
    hops = json.loads(dict(seen["headers"])["pq-tunnel-hops"])
    assert hops[-1] == expected_hop(kind).as_dict()


@pytest.mark.parametrize("kind", ["h1tls", "h2", "h3"])
@pytest.mark.parametrize("policy", ["prefer", "require"])
def test_the_origin_hop_is_post_quantum_under_both_policies(
    origins: Origins, kind: str, policy: str
) -> None:
    async def go(client: OriginClient) -> tuple[OriginResponse, dict]:
        response = await client.request(origins.request(kind))
        return response, json.loads(await read_all(response))

    response, seen = run(go, policy=policy)
    assert response.status == 200 and seen["http_version"] == HTTP_VERSION[kind]
    assert response.hop == expected_hop(kind)


@pytest.mark.parametrize(
    "kind, origin", [("h3", "classical"), ("h2", "classical"), ("h2", "stdlib_tls")]
)
def test_require_policy_refuses_a_classical_origin(
    origins: Origins, kind: str, origin: str
) -> None:
    """No request reaches an origin that cannot do post-quantum key exchange, and the 502 says
    why: over QUIC the origin's choice, over TCP an alert (OpenSSL with a classical group list)
    or a dropped connection (Python's ssl, which cannot parse an offer of ML-KEM only)."""
    url = getattr(origins, origin)

    request = origins.request(kind, url=url)

    error = run(lambda client: origin_error(client.request(request)), policy="require")
    assert error.status == 502
    assert url in error.reason and "post-quantum" in error.reason
    if kind == "h3":
        assert "x25519" in error.reason
    else:
        assert (
            "TLS handshake" in error.reason and "No classical connection was made" in error.reason
        )


@pytest.mark.parametrize(
    "kind, origin", [("h3", "classical"), ("h2", "classical"), ("h2", "stdlib_tls")]
)
def test_prefer_policy_reports_a_classical_origin_honestly(
    origins: Origins, kind: str, origin: str
) -> None:
    async def go(client: OriginClient) -> OriginResponse:
        response = await client.request(origins.request(kind, url=getattr(origins, origin)))
        await read_all(response)
        return response

    response = run(go)
    assert response.status == 200
    assert response.hop == expected_hop(kind, "x25519")


@pytest.mark.parametrize("kind", KINDS)
def test_head_has_a_length_and_no_body(origins: Origins, kind: str) -> None:
    async def go(client: OriginClient) -> tuple[OriginResponse, bytes]:
        response = await client.request(origins.request(kind, "/bytes/1000", "HEAD", body=None))
        body = await read_all(response)
        after = await client.request(origins.request(kind))  # still in step
        assert json.loads(await read_all(after))["method"] == "GET"
        return response, body

    response, body = run(go)
    assert response.status == 200 and body == b""
    assert ("content-length", "1000") in response.headers
