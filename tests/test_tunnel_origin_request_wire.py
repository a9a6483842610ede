"""Each ``originRequest`` key, shown by its effect on a real origin on 127.0.0.1 (or a Unix
socket): the connector's origin client is driven with the settings a rule resolves to
(``proxy.origin_options``), so what is tested is what a rule in ``config.yml`` does.

The origins run in the test's event loop (origin_request_util.py); no process is started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from origin_request_util import (
    RecordingOrigin,
    chunks,
    full_backlog,
    get_json,
    silent_tcp_server,
    tls_server_context,
)

from pq_quic_plugin.devcert import DevPKI, make_dev_pki
from pq_quic_plugin.tunnel.config import IngressRule, parse_service
from pq_quic_plugin.tunnel.config.origin_request import OriginSettings
from pq_quic_plugin.tunnel.connector.proxy import origin_options
from pq_quic_plugin.tunnel.origin import OriginClient, OriginError, OriginRequest

T = TypeVar("T")


def run(factory: Callable[[OriginClient], Awaitable[T]], policy: str = "prefer") -> T:
    async def main() -> T:
        client = OriginClient(policy)
        try:
            return await factory(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def request(
    service: str,
    path: str = "/",
    rule: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
    **extra: Any,
) -> OriginRequest:
    """The request a rule ``service`` with ``originRequest: rule`` (over ``top``) makes."""
    ingress = IngressRule(
        service=parse_service(service), origin_request=OriginSettings(**(rule or {}))
    )
    options = origin_options(ingress, OriginSettings(**(top or {})))
    return OriginRequest(ingress.service, "GET", path, extra.pop("headers", []), **options, **extra)


async def failure(client: OriginClient, req: OriginRequest) -> OriginError:
    with pytest.raises(OriginError) as info:
        response = await client.request(req)
        await response.aclose()
    return info.value


@pytest.fixture(scope="module")
def private_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    """An origin certificate for ``localhost`` from a CA nobody's system trusts."""
    return make_dev_pki(tmp_path_factory.mktemp("private-pki"), hostnames=("localhost",))


# ------------------------------------------------------------------------ timeouts


def test_connect_timeout_bounds_a_connect_nobody_answers() -> None:
    async def go(client: OriginClient) -> tuple[OriginError, float]:
        with full_backlog() as port:
            t0 = time.monotonic()
            err = await failure(
                client, request(f"http://127.0.0.1:{port}", rule={"connect_timeout": 0.5})
            )
            return err, time.monotonic() - t0

    err, elapsed = run(go)
    assert err.status == 504 and "connectTimeout" in err.reason and "0.5s" in err.reason
    assert 0.4 < elapsed < 3.0  # the default (10s) would still be waiting


def test_tls_timeout_bounds_a_handshake_the_origin_never_answers() -> None:
    async def go(client: OriginClient) -> tuple[OriginError, float]:
        server, port = await silent_tcp_server()
        try:
            t0 = time.monotonic()
            err = await failure(
                client, request(f"https://127.0.0.1:{port}", rule={"tls_timeout": 0.5})
            )
            return err, time.monotonic() - t0
        finally:
            server.close()

    err, elapsed = run(go)
    assert err.status == 504 and "no TLS handshake" in err.reason and "tlsTimeout" in err.reason
    assert 0.4 < elapsed < 3.0


def test_the_top_level_timeout_applies_unless_the_rule_says_otherwise() -> None:
    async def go(client: OriginClient) -> tuple[OriginError, OriginError]:
        with full_backlog() as port:
            url = f"http://127.0.0.1:{port}"
            top = {"connect_timeout": 0.3}
            inherited = await failure(client, request(url, top=top))
            overridden = await failure(client, request(url, rule={"connect_timeout": 0.6}, top=top))
            return inherited, overridden

    inherited, overridden = run(go)
    assert "within 0.3s" in inherited.reason
    assert "within 0.6s" in overridden.reason


# ------------------------------------------------------------------------ verification


def _tls_origin_test(
    pki: DevPKI, make: Callable[[int], OriginRequest], policy: str = "prefer"
) -> tuple[Any, RecordingOrigin]:
    origin = RecordingOrigin()

    async def go(client: OriginClient) -> Any:
        port = await origin.start_tcp(tls_server_context(pki.cert, pki.key))
        try:
            return await get_json(client, make(port))
        except OriginError as exc:
            return exc
        finally:
            await origin.stop()

    return run(go, policy), origin


def test_no_tls_verify_and_ca_pool_against_a_private_ca(private_pki: DevPKI) -> None:
    def url(port: int) -> str:
        return f"https://127.0.0.1:{port}"

    refused, _ = _tls_origin_test(private_pki, lambda p: request(url(p)))
    assert isinstance(refused, OriginError) and refused.status == 502
    assert "did not verify" in refused.reason

    unverified, _ = _tls_origin_test(
        private_pki, lambda p: request(url(p), rule={"no_tls_verify": True})
    )
    assert isinstance(unverified, dict), unverified  # any certificate, any name

    pooled, _ = _tls_origin_test(
        private_pki,
        lambda p: request(
            url(p),
            rule={"ca_pool": private_pki.ca_cert, "origin_server_name": "localhost"},
        ),
    )
    assert isinstance(pooled, dict), pooled

    wrong_name, _ = _tls_origin_test(
        private_pki,
        lambda p: request(
            url(p), rule={"ca_pool": private_pki.ca_cert, "origin_server_name": "other.test"}
        ),
    )
    assert isinstance(wrong_name, OriginError) and "did not verify" in wrong_name.reason


def test_origin_server_name_is_the_sni_the_origin_sees(private_pki: DevPKI) -> None:
    answer, origin = _tls_origin_test(
        private_pki,
        lambda p: request(
            f"https://127.0.0.1:{p}",
            rule={"ca_pool": private_pki.ca_cert, "origin_server_name": "localhost"},
        ),
    )
    assert isinstance(answer, dict), answer
    assert origin.sni == ["localhost"]


def test_http2_origin_insists_on_h2(private_pki: DevPKI) -> None:
    """The origin offers only HTTP/1.1 by ALPN: ``auto`` uses it, ``http2Origin`` refuses."""
    base = {"ca_pool": private_pki.ca_cert, "origin_server_name": "localhost"}
    auto, origin = _tls_origin_test(
        private_pki, lambda p: request(f"https://127.0.0.1:{p}", rule=base)
    )
    assert isinstance(auto, dict) and auto["hop"].http_version == "1.1"
    assert origin.alpn == ["http/1.1"]
    strict, origin = _tls_origin_test(
        private_pki,
        lambda p: request(f"https://127.0.0.1:{p}", rule={**base, "http2_origin": True}),
    )
    assert isinstance(strict, OriginError) and strict.status == 502
    assert "does not offer HTTP/2" in strict.reason
    assert origin.requests == []


def test_post_quantum_per_origin(private_pki: DevPKI) -> None:
    """The origin is Python's ssl (no ML-KEM). The client prefers post-quantum; a rule's
    ``postQuantum: require`` refuses this origin with the reason, ``off`` uses Python's TLS."""
    base = {"ca_pool": private_pki.ca_cert, "origin_server_name": "localhost"}
    preferred, _ = _tls_origin_test(
        private_pki, lambda p: request(f"https://127.0.0.1:{p}", rule=base)
    )
    assert isinstance(preferred, dict) and preferred["hop"].group == "x25519"
    required, origin = _tls_origin_test(
        private_pki,
        lambda p: request(f"https://127.0.0.1:{p}", rule={**base, "post_quantum": "require"}),
    )
    assert isinstance(required, OriginError) and required.status == 502
    assert "post-quantum" in required.reason and "No classical connection" in required.reason
    assert origin.requests == []
    off, _ = _tls_origin_test(
        private_pki,
        lambda p: request(f"https://127.0.0.1:{p}", rule={**base, "post_quantum": "off"}),
        policy="require",  # the connector's --post-quantum, relaxed for this origin only
    )
    assert isinstance(off, dict) and not off["hop"].post_quantum


# ------------------------------------------------------------------------ headers and bodies


def test_http_host_header_replaces_the_visitors_host() -> None:
    origin = RecordingOrigin()

    async def go(client: OriginClient) -> list[str]:
        port = await origin.start_tcp()
        try:
            url = f"http://127.0.0.1:{port}"
            visitor = [("host", "app.example.com")]
            plain = await get_json(client, request(url, headers=visitor))
            set_ = await get_json(
                client,
                request(url, rule={"http_host_header": "inner.local:8080"}, headers=visitor),
            )
            return [plain["headers"]["host"], set_["headers"]["host"]]
        finally:
            await origin.stop()

    assert run(go) == ["app.example.com", "inner.local:8080"]


def test_disable_chunked_encoding_sends_a_length() -> None:
    origin = RecordingOrigin()

    async def post(client: OriginClient, url: str, rule: dict[str, Any]) -> None:
        req = request(url, "/upload", rule=rule, body=chunks(b"a" * 1000, b"b" * 2345))
        req = OriginRequest(**{**req.__dict__, "method": "POST"})
        await get_json(client, req)

    async def go(client: OriginClient) -> None:
        port = await origin.start_tcp()
        try:
            url = f"http://127.0.0.1:{port}"
            await post(client, url, {})
            await post(client, url, {"disable_chunked_encoding": True})
        finally:
            await origin.stop()

    run(go)
    chunked, whole = origin.requests
    assert chunked.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in chunked.headers
    assert whole.headers.get("content-length") == "3345"
    assert "transfer-encoding" not in whole.headers
    assert whole.body == chunked.body == b"a" * 1000 + b"b" * 2345


def test_disable_chunked_encoding_refuses_a_body_too_large_to_hold() -> None:
    origin = RecordingOrigin()

    async def huge() -> Any:
        block = b"x" * (1024 * 1024)
        for _ in range(17):
            yield block

    async def go(client: OriginClient) -> OriginError:
        port = await origin.start_tcp()
        try:
            req = request(
                f"http://127.0.0.1:{port}", rule={"disable_chunked_encoding": True}, body=huge()
            )
            return await failure(client, OriginRequest(**{**req.__dict__, "method": "POST"}))
        finally:
            await origin.stop()

    err = run(go)
    assert err.status == 413 and "disableChunkedEncoding" in err.reason
    assert origin.requests == []


# ------------------------------------------------------------------------ keep-alive


def test_keep_alive_timeout_closes_idle_connections() -> None:
    def count(rule: dict[str, Any]) -> tuple[int, int]:
        origin = RecordingOrigin()

        async def go(client: OriginClient) -> None:
            port = await origin.start_tcp()
            try:
                url = f"http://127.0.0.1:{port}"
                await get_json(client, request(url, rule=rule))
                await asyncio.sleep(0.5)
                await get_json(client, request(url, rule=rule))
                await asyncio.sleep(0.05)
            finally:
                await origin.stop()

        run(go)
        return origin.opened, len(origin.requests)

    assert count({"keep_alive_timeout": 0.2}) == (2, 2)  # idle too long: a new connection
    assert count({"keep_alive_timeout": 5.0}) == (1, 2)  # reused


def test_keep_alive_connections_caps_the_idle_pool() -> None:
    def opened(rule: dict[str, Any]) -> int:
        origin = RecordingOrigin()

        async def batch(client: OriginClient, url: str) -> None:
            await asyncio.gather(*(get_json(client, request(url, "/slow", rule)) for _ in range(3)))

        async def go(client: OriginClient) -> None:
            port = await origin.start_tcp()
            try:
                url = f"http://127.0.0.1:{port}"
                await batch(client, url)  # three at once: three connections
                await asyncio.sleep(0.05)
                await batch(client, url)  # as many reused as were kept
            finally:
                await origin.stop()

        run(go)
        return origin.opened

    assert opened({}) == 3
    assert opened({"keep_alive_connections": 1}) == 5
    assert opened({"keep_alive_connections": 0}) == 6


# ------------------------------------------------------------------------ Unix sockets


def test_unix_service(tmp_path: Path) -> None:
    origin = RecordingOrigin()
    path = tmp_path / "origin.sock"

    async def go(client: OriginClient) -> tuple[dict[str, Any], dict[str, Any]]:
        await origin.start_unix(path)
        try:
            first = await get_json(client, request(f"unix:{path}", "/a"))
            second = await get_json(client, request(f"unix:{path}", "/b"))
            return first, second
        finally:
            await origin.stop()

    first, _ = run(go)
    assert first["headers"]["host"] == "localhost"
    assert first["hop"].transport == "unix" and first["hop"].group is None
    assert origin.opened == 1 and [r.target for r in origin.requests] == ["/a", "/b"]


def test_unix_tls_service(tmp_path: Path, private_pki: DevPKI) -> None:
    origin = RecordingOrigin()
    path = tmp_path / "origin-tls.sock"

    async def go(client: OriginClient) -> tuple[dict[str, Any], OriginError]:
        await origin.start_unix(path, tls_server_context(private_pki.cert, private_pki.key))
        try:
            ok = await get_json(
                client, request(f"unix+tls:{path}", rule={"ca_pool": private_pki.ca_cert})
            )
            refused = await failure(client, request(f"unix+tls:{path}"))  # system CAs
            return ok, refused
        finally:
            await origin.stop()

    ok, refused = run(go)
    hop = ok["hop"]
    assert hop.transport == "unix" and hop.tls and hop.group == "x25519"
    assert origin.sni[0] == "localhost"  # the default server name for unix+tls:
    assert refused.status == 502 and "did not verify" in refused.reason


def test_unix_socket_missing(tmp_path: Path) -> None:
    async def go(client: OriginClient) -> OriginError:
        return await failure(client, request(f"unix:{tmp_path}/nothing.sock"))

    err = run(go)
    assert err.status == 502 and "no socket at" in err.reason
