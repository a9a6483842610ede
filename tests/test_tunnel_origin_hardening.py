"""Issue 14, the connector's origin side: one request must not hurt the others on a shared
origin connection, and bad values get a clear error, never a traceback.

Real origins on loopback serve tests/apps/hardening_app.py (origin_app.py plus routes that
misbehave on purpose): plain hypercorn (``http``) and ``hypercorn-pq --pq`` (TLS over TCP with
HTTP/1.1 or HTTP/2, and HTTP/3). The "shared connection" tests run a download on the origin's
connection, make another request on that same connection misbehave, and check that the download
still arrives whole (sha256) over the same connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from origin_support import APPS, KINDS, Origins, expected_sha256, read_all, run

from pq_quic_plugin.tunnel.origin import OriginClient, OriginError, OriginResponse
from tools.loopback import free_port, hypercorn_pq, start, stop
from tools.readiness import wait_listening

pytestmark = pytest.mark.slow  # origin servers as processes

MB = 1024 * 1024
DOWNLOAD = 4 * MB
#: The kinds whose requests share one connection to the origin.
SHARED = ["h2", "h3"]


@pytest.fixture(scope="module")
def hostile(pki: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    """hardening_app.py over plain HTTP/1.1 and under ``hypercorn-pq --pq``."""
    logs = tmp_path_factory.mktemp("hostile")
    http_port, pq_port = free_port(), free_port()
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key), "--graceful-timeout", "1"]
    plain = start(
        [sys.executable, "-m", "hypercorn", "--graceful-timeout", "1", "hardening_app:app"]
        + ["-b", f"127.0.0.1:{http_port}"],
        logs / "plain.log",
        cwd=APPS,
    )
    try:
        wait_listening(plain, "127.0.0.1", http_port, quic=False)
        with hypercorn_pq(
            ["--pq", *tls, "-b", f"127.0.0.1:{pq_port}", "hardening_app:app"],
            logs,
            port=pq_port,
            cwd=APPS,
        ):
            yield Origins(
                f"http://127.0.0.1:{http_port}",
                f"https://127.0.0.1:{pq_port}",
                "",
                "",
                str(pki.ca_cert),
                logs,
            )
    finally:
        stop(plain.proc)


async def sha256_of(response: OriginResponse) -> str:
    digest = hashlib.sha256()
    async for chunk in response.body:
        digest.update(chunk)
    return digest.hexdigest()


async def beside_a_download(
    client: OriginClient, origins: Origins, kind: str, misbehave: Any
) -> tuple[str, Any]:
    """Start a download, run ``misbehave()`` on the same origin, then finish the download.

    Returns the download's sha256 and what ``misbehave`` returned (or raised)."""
    download = await client.request(origins.request(kind, f"/bytes/{DOWNLOAD}", body=None))
    first = await download.body.__anext__()  # the download is under way on the connection
    try:
        outcome: Any = await misbehave()
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        outcome = exc
    await asyncio.sleep(0.2)  # let a connection-level close, if any, arrive
    digest = hashlib.sha256(first)
    async for chunk in download.body:
        digest.update(chunk)
    return digest.hexdigest(), outcome


# ----------------------------------------------------------- finding 1: HEAD, 204 and 304


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("method", "path", "length"),
    [
        ("HEAD", f"/bytes/{DOWNLOAD}", str(DOWNLOAD)),
        ("GET", "/bodiless/304?length=1000", "1000"),
        ("GET", "/bodiless/204?length=0", "0"),
    ],
)
def test_bodiless_responses_keep_the_shared_connection(
    hostile: Origins, kind: str, method: str, path: str, length: str
) -> None:
    """HEAD, 204 and 304 carry no body whatever their Content-Length says; the connection
    they share with a download stays up (aioquic used to close it: "length mismatch")."""

    async def go(client: OriginClient) -> tuple[str, Any, int]:
        async def bodiless() -> tuple[OriginResponse, bytes]:
            response = await client.request(hostile.request(kind, path, method, body=None))
            return response, await read_all(response)

        digest, outcome = await beside_a_download(client, hostile, kind, bodiless)
        return digest, outcome, client.quic_sessions + client.h2_sessions

    digest, outcome, sessions = run(go)
    assert not isinstance(outcome, Exception), outcome
    response, body = outcome
    assert body == b"" and ("content-length", length) in response.headers
    assert digest == expected_sha256(DOWNLOAD)
    assert sessions == (1 if kind in SHARED else 0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_short_of_its_length_fails_only_its_own_request(hostile: Origins, kind: str) -> None:
    """A response whose body does not match its Content-Length is an error for that request
    (the visitor's stream is reset), never a truncated success, and never the end of the
    connection the other requests share."""

    async def go(client: OriginClient) -> tuple[str, Any]:
        async def short() -> bytes:
            return await read_all(await client.request(hostile.request(kind, "/short", body=None)))

        return await beside_a_download(client, hostile, kind, short)

    digest, outcome = run(go)
    assert isinstance(outcome, OriginError) and outcome.status == 502, outcome
    assert digest == expected_sha256(DOWNLOAD)


@pytest.mark.parametrize("kind", SHARED)
@pytest.mark.parametrize("query", ["value=abc", "value=-1", "value=2&also=3", "value=2,2"])
def test_a_content_length_that_is_not_a_number_fails_only_its_own_request(
    hostile: Origins, kind: str, query: str
) -> None:
    """A response head whose Content-Length cannot be read (not digits, or two that differ) is
    malformed (RFC 9113 8.1.1): a 502 for that request, and the connection it shares with a
    download carries on (h2 used to end the whole connection while reading the head). The
    same length repeated (``2,2``, which h2 refused too) is one length to the connector's
    framing (RFC 9110 8.6 allows either reading): over HTTP/2 the response arrives whole;
    aioquic refuses it for HTTP/3 as a stream error, which is a 502 for that request alone."""

    async def go(client: OriginClient) -> tuple[str, Any, int]:
        async def answer() -> bytes:
            path = f"/bad-length?{query}"
            return await read_all(await client.request(hostile.request(kind, path, body=None)))

        digest, outcome = await beside_a_download(client, hostile, kind, answer)
        return digest, outcome, client.quic_sessions + client.h2_sessions

    digest, outcome, sessions = run(go)
    if query == "value=2,2" and kind == "h2":
        assert outcome == b"ok", outcome
    else:
        assert isinstance(outcome, OriginError) and outcome.status == 502, outcome
        assert "content-length" in str(outcome).lower(), outcome
    assert digest == expected_sha256(DOWNLOAD)
    assert sessions == 1


# ----------------------------------------------------------- finding 2: TE + CL


async def _body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("kind", KINDS)
def test_transfer_encoding_wins_over_content_length(hostile: Origins, kind: str) -> None:
    """A request with both ``Transfer-Encoding: chunked`` and a (wrong) ``Content-Length``:
    the length is dropped and the body goes up whole, with a download on the same connection
    untouched (the HTTP/3 origin used to close the connection at the wrong length)."""
    sent = b"0123456789ab" * 1000
    headers = [("Host", "v"), ("Transfer-Encoding", "chunked"), ("Content-Length", "5")]

    async def go(client: OriginClient) -> tuple[str, Any]:
        async def post() -> dict[str, Any]:
            response = await client.request(
                hostile.request(kind, "/sha256", "POST", headers=headers, body=_body(sent))
            )
            return dict(json.loads(await read_all(response)))

        return await beside_a_download(client, hostile, kind, post)

    digest, outcome = run(go)
    assert outcome == {"length": len(sent), "sha256": hashlib.sha256(sent).hexdigest()}, outcome
    assert digest == expected_sha256(DOWNLOAD)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("declared", "parts"),
    [("5", (b"0123456789",)), ("50", (b"0123456789",)), ("7", ()), ("5, 6", (b"01234",))],
)
def test_a_body_that_breaks_its_content_length_is_a_400(
    hostile: Origins, kind: str, declared: str, parts: tuple[bytes, ...]
) -> None:
    """Longer, shorter, absent or contradictory: never sent under the wrong length, the
    request fails with 400, and the shared connection carries on."""
    headers = [("Host", "v"), ("Content-Length", declared)]

    async def go(client: OriginClient) -> tuple[str, Any]:
        async def post() -> OriginResponse:
            return await client.request(
                hostile.request(kind, "/sha256", "POST", headers=headers, body=_body(*parts))
            )

        return await beside_a_download(client, hostile, kind, post)

    digest, outcome = run(go)
    assert isinstance(outcome, OriginError) and outcome.status == 400, outcome
    assert digest == expected_sha256(DOWNLOAD)


# ----------------------------------------------------------- finding 3: bytes above 0x7F


@pytest.mark.parametrize("kind", KINDS)
def test_header_bytes_above_0x7f_pass_through_both_ways(hostile: Origins, kind: str) -> None:
    """obs-text (RFC 9110 5.5) goes to the origin as the same bytes and comes back from it as
    the same bytes (Latin-1 text on the wire between edge and connector), on every protocol."""

    async def go(client: OriginClient) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        sent = await client.request(
            hostile.request(
                kind, "/headers", headers=[("Host", "v"), ("X-Obs", "caf\xe9 \xff")], body=None
            )
        )
        echoed = json.loads(await read_all(sent))
        got = await client.request(hostile.request(kind, "/obs-text", body=None))
        await read_all(got)
        return echoed, got.headers

    echoed, headers = run(go)
    assert ["x-obs", "caf\xe9 \xff"] in echoed["headers"]
    assert ("x-obs", "caf\xe9 \xff") in headers


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "header",
    [("X-Bad", "a\r\nX-Injected: 1"), ("X-Euro", "\u20ac"), ("Bad Name", "1"), ("X-Nul", "a\0")],
)
def test_a_header_no_origin_can_take_is_a_400(
    hostile: Origins, kind: str, header: tuple[str, str]
) -> None:
    """Refused before anything is sent (a clear 400, no traceback), and the shared
    connection is not disturbed."""

    async def go(client: OriginClient) -> tuple[str, Any]:
        async def bad() -> OriginResponse:
            return await client.request(
                hostile.request(kind, "/headers", headers=[("Host", "v"), header], body=None)
            )

        return await beside_a_download(client, hostile, kind, bad)

    digest, outcome = run(go)
    assert isinstance(outcome, OriginError) and outcome.status == 400, outcome
    assert digest == expected_sha256(DOWNLOAD)


# ----------------------------------------------------------- finding 4: big WebSocket messages


@pytest.mark.parametrize("kind", ["http", "h1tls"])
def test_a_websocket_message_over_the_limit_closes_with_1009(
    hostile: Origins, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The origin sends 1.5 MiB in one message to a 1 MiB limit: close code 1009 for the
    WebSocket, nothing buffered whole, no task exception left behind; under the limit the
    message arrives."""
    size_over, size_under = MB + MB // 2, MB // 2

    async def go(client: OriginClient, size: int) -> tuple[Any, int | None]:
        ws = await client.websocket(
            hostile.request(kind, f"/ws-big?size={size}", body=None), max_message=MB
        )
        assert ws.status == 101
        message = await asyncio.wait_for(ws.receive(), 10)
        if message is not None:
            await ws.close()
        return message, ws.close_code

    caplog.set_level(logging.ERROR, logger="asyncio")
    message, code = run(lambda c: go(c, size_over))
    assert message is None and code == 1009
    message, code = run(lambda c: go(c, size_under))
    assert message == b"b" * size_under
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


# ----------------------------------------------------------- finding 5: what visitors read


def test_visitors_never_read_internal_addresses() -> None:
    """The text for a visitor is generic whatever the reason; the reason (with the address)
    stays in the log."""
    refused = OriginError(502, "origin http://127.0.0.1:50497: 127.0.0.1:50497 refused ...")
    late = OriginError(504, "origin https://10.0.0.7:8443 did not answer GET / within 30s")
    bad = OriginError(400, "the request header X-Euro has characters beyond Latin-1")
    assert refused.public == "502 Bad Gateway: the origin could not be reached"
    assert late.public.startswith("504 ") and bad.public.startswith("400 ")
    for error in (refused, late, bad):
        assert "127.0.0.1" not in error.public and "10.0.0.7" not in error.public


def test_an_unreachable_origin_error_names_no_address(tmp_path: Path) -> None:
    """Through the real tunnel: the visitor's 502 says the origin could not be reached and
    nothing more (neither the connector's reason nor the edge's page names the address); the
    connector's log has it."""
    from tunnel_chain import TUNNEL_HOST, running_chain, tunnel_host_rules

    from pq_quic_plugin.http3 import client_configuration, open_session

    closed = free_port()
    with running_chain(tmp_path, connector=False) as chain:
        config = chain.connector_config(
            "gone.yml",
            ingress=tunnel_host_rules(f"http://127.0.0.1:{closed}"),
        )
        chain.connector = chain.start_connector(config=config)

        async def visit() -> tuple[int, bytes]:
            config = client_configuration("require", cafile=str(chain.pki.ca_cert))
            async with open_session(chain.url, config) as session:
                response = await session.request("GET", "/", [(b"host", TUNNEL_HOST.encode())])
                return response.status, response.body

        status, body = asyncio.run(asyncio.wait_for(visit(), 20))
        assert status == 502
        assert b"could not be reached" in body  # the edge words it; the connector keeps it generic
        assert b"127.0.0.1" not in body and str(closed).encode() not in body
        assert f"127.0.0.1:{closed}" in chain.connector.log()
