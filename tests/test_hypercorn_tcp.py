"""hypercorn-pq's TCP listener (HTTP/1.1, HTTP/2, WebSockets) is post-quantum too.

Real hypercorn-pq processes on 127.0.0.1, real clients: the system curl (OpenSSL 3.0, no
ML-KEM: a classical client), httpx's async client on ``pq_quic_plugin.ssl_context``, a
pyOpenSSL client that sends only an X25519 share, Python's ``ssl`` capped at TLS 1.2, and
wsproto. What the server saw comes from the scope (``/scope`` of tests/apps/tcp_app.py, the
example app's ``/api/connection`` and page) and from hypercorn's access log.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from servers import EXAMPLE_APP_DIR, free_port, hypercorn_pq, run_cli
from tcp_util import (
    TCP_APP_DIR,
    curl,
    hello_retry_client,
    pq_client,
    pq_get_json,
    tls_args,
    websocket_echo,
)
from tls_util import PQ_TCP_EXTENSION, assert_tls_extension

from pq_quic_plugin.devcert import DevPKI

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # hypercorn-pq processes, curl

ACCESS_LOG = ["--access-logfile", "-"]


@pytest.fixture(scope="module")
def example_prefer(pki: DevPKI, tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = free_port()
    args = ["--pq", *tls_args(pki, port), *ACCESS_LOG, "app:app"]
    with hypercorn_pq(args, tmp_path_factory.mktemp("prefer"), port) as server:
        yield port, server


@pytest.fixture(scope="module")
def scope_prefer(pki: DevPKI, tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = free_port()
    args = ["--pq", *tls_args(pki, port), "tcp_app:app"]
    with hypercorn_pq(args, tmp_path_factory.mktemp("scope"), port, cwd=TCP_APP_DIR) as server:
        yield port, server


@pytest.fixture(scope="module")
def example_require(pki: DevPKI, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``--pq require`` with a plaintext ``--insecure-bind`` next to the TLS bind."""
    port, plain = free_port(), free_port()
    args = [
        "--pq",
        "require",
        *tls_args(pki, port),
        "--insecure-bind",
        f"127.0.0.1:{plain}",
        *ACCESS_LOG,
        "app:app",
    ]
    with hypercorn_pq(args, tmp_path_factory.mktemp("require"), port) as server:
        yield port, plain, server


# ---------------------------------------------------------------- prefer: everyone is served


@pytest.mark.parametrize(("flag", "version"), [("--http1.1", "1.1"), ("--http2", "2")])
def test_curl_is_served_classical(
    example_prefer: Any, pki: DevPKI, flag: str, version: str
) -> None:
    port, _ = example_prefer
    out = curl(pki, f"https://localhost:{port}/api/connection", flag, "-w", "\n%{http_version}")
    assert out.returncode == 0, out.stderr
    body, _, seen_version = out.stdout.rpartition("\n")
    api = json.loads(body)
    assert seen_version == version and api["http_version"] == version
    assert (api["transport"], api["group"], api["codepoint"]) == ("tcp", "x25519", 0x001D)
    assert api["post_quantum"] is False and api["group_known"] is True
    assert api["tls_version"] == "TLSv1.3" and api["verdict"] == "not post-quantum"
    page = curl(pki, f"https://localhost:{port}/", flag)
    assert "x25519" in page.stdout and "not post-quantum" in page.stdout


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_post_quantum_client_over_tcp(example_prefer: Any, pki: DevPKI, http2: bool) -> None:
    port, _ = example_prefer
    api = asyncio.run(pq_get_json(pki, f"https://localhost:{port}/api/connection", http2))
    assert (api["transport"], api["group"], api["codepoint"]) == ("tcp", "X25519MLKEM768", 0x11EC)
    assert api["post_quantum"] is True and api["verdict"] == "post-quantum"

    async def page() -> str:
        async with pq_client(pki, http2=http2, timeout=20) as client:
            resp = await client.get(f"https://localhost:{port}/")
            assert resp.headers["pq-key-exchange"] == "X25519MLKEM768; post-quantum"
            return resp.text

    text = asyncio.run(page())
    assert "X25519MLKEM768" in text and "not post-quantum" not in text
    assert ("HTTP/2" if http2 else "HTTP/1.1") in text and "tcp" in text


def test_scope_carries_the_tls_and_pq_quic_extensions(scope_prefer: Any, pki: DevPKI) -> None:
    port, _ = scope_prefer
    for http2 in (False, True):
        scope = asyncio.run(pq_get_json(pki, f"https://localhost:{port}/scope", http2))
        assert scope["scheme"] == "https" and scope["http_version"] == ("2" if http2 else "1.1")
        assert scope["pq_quic"] == PQ_TCP_EXTENSION
        assert_tls_extension(scope["tls"], pki)


def test_hello_retry_request_over_tcp(scope_prefer: Any, pki: DevPKI) -> None:
    """A client that lists X25519MLKEM768 but sends only an X25519 share is asked for the
    post-quantum share (HelloRetryRequest) and ends on X25519MLKEM768, as on QUIC."""
    port, _ = scope_prefer
    result = hello_retry_client(pki, port, "*x25519:X25519MLKEM768")
    assert result.hello_retry, "the server did not send a HelloRetryRequest"
    assert result.group == "X25519MLKEM768"
    assert result.scope["pq_quic"]["group"] == "X25519MLKEM768"
    # A client with an ML-KEM share gets it at once, without the extra round trip.
    direct = hello_retry_client(pki, port, "*X25519MLKEM768:*x25519")
    assert not direct.hello_retry and direct.group == "X25519MLKEM768"


def test_tls12_client_is_served_classical_under_prefer(scope_prefer: Any, pki: DevPKI) -> None:
    port, _ = scope_prefer
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=15)
    conn.request("GET", "/scope")
    scope = json.loads(conn.getresponse().read())
    conn.close()
    assert scope["tls"]["tls_version"] == 0x0303
    assert scope["tls"]["cipher_suite"] in (0xC02B, 0xC02C)  # hypercorn's ECDHE+AESGCM, ECDSA
    assert scope["pq_quic"]["group"] == "x25519" and scope["pq_quic"]["post_quantum"] is False


# ---------------------------------------------------------------- require: refused in the handshake


def _requests_logged(server: Any) -> list[str]:
    return [line for line in server.log().splitlines() if '"GET ' in line]


def test_require_refuses_curl_in_the_handshake(example_require: Any, pki: DevPKI) -> None:
    port, _, server = example_require
    before = _requests_logged(server)
    for flag in ("--http1.1", "--http2"):
        out = curl(pki, f"https://localhost:{port}/api/connection", flag)
        assert out.returncode == 35, (out.returncode, out.stdout, out.stderr)  # SSL connect error
        assert "alert handshake failure" in out.stderr, out.stderr
    server.wait_for_log("refusing handshake: client offered no post-quantum key-exchange group")
    assert _requests_logged(server) == before, "a refused client reached the app"
    # A TLS 1.2 client cannot be post-quantum at all: refused as well.
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=15)
    with pytest.raises(ssl.SSLError):
        conn.request("GET", "/api/connection")
    conn.close()
    assert _requests_logged(server) == before
    # A post-quantum client is served, over both HTTP versions, and logged.
    for http2 in (False, True):
        api = asyncio.run(pq_get_json(pki, f"https://localhost:{port}/api/connection", http2))
        assert api["group"] == "X25519MLKEM768"
    server.wait_for_log('"GET /api/connection 2" 200')
    assert len(_requests_logged(server)) == len(before) + 2


def test_require_websocket_over_tcp_is_post_quantum(example_require: Any, pki: DevPKI) -> None:
    """Under require, hypercorn-pq closes any WebSocket that is not post-quantum before the app
    runs; this one is answered by the app's echo."""
    port, _, _ = example_require
    assert asyncio.run(websocket_echo(pki, port, "/ws", "hello over TCP")) == "hello over TCP"


def test_require_answers_a_plaintext_bind_with_the_explanation(example_require: Any) -> None:
    _, plain, server = example_require
    conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=15)
    conn.request("GET", "/api/connection")
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    assert resp.status == 403 and '"group"' not in body  # the middleware's page, not the app's
    assert "without TLS" in body and "X25519MLKEM768" in body
    assert "policy require" in server.log()


# ---------------------------------------------------------------- start-up checks


def _cli(pki: DevPKI, *args: str) -> Any:
    return run_cli([*args, "--certfile", str(pki.cert), "--keyfile", str(pki.key), "app:app"])


@pytest.mark.parametrize(
    ("policy", "groups"),
    [
        ("require", "X25519Kyber768Draft00"),
        ("require", "X25519Kyber768Draft00,x25519"),
        ("prefer", "X25519Kyber512Draft00"),
    ],
)
def test_groups_tcp_cannot_negotiate_stop_at_start_up(
    pki: DevPKI, policy: str, groups: str
) -> None:
    out = _cli(pki, "--pq", policy, "--pq-groups", groups)
    assert out.returncode == 2, out.stderr
    assert "TCP listener" in out.stderr and "QUIC-only" in out.stderr
    assert groups.split(",")[0] in out.stderr


def test_a_shared_group_list_leaves_quic_only_groups_out_of_tcp(
    pki: DevPKI, tmp_path: Path
) -> None:
    port = free_port()
    groups = "X25519Kyber768Draft00,X25519MLKEM768"
    args = ["--pq", "--pq-groups", groups, "-w", "2", *tls_args(pki, port), "app:app"]
    with hypercorn_pq(args, tmp_path, port, cwd=EXAMPLE_APP_DIR) as server:
        api = asyncio.run(pq_get_json(pki, f"https://localhost:{port}/api/connection", True))
        assert api["group"] == "X25519MLKEM768"
        log = server.log()
    assert "leaves out QUIC-only group(s) X25519Kyber768Draft00; using X25519MLKEM768" in log
    assert log.count("leaves out QUIC-only") == 1  # said once at start-up, not per worker
    assert (
        "post-quantum TCP (HTTP/1.1, HTTP/2, WebSockets): policy=prefer groups=[X25519MLKEM768] "
        "(left out, QUIC-only: X25519Kyber768Draft00)"
    ) in log
