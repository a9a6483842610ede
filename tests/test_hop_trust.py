"""Issue 14, "fail-open": a tunnel hop list that is not believed must not let a request through.

Under ``require`` a hop list from an address outside ``trust_hops_from`` used to be dropped and
the request judged on its last hop alone, so a classical visitor behind the tunnel reached the
app. IPv4-mapped addresses (``::ffff:127.0.0.1``, what a dual-stack socket reports) were not
loopback, and hypercorn-pq had no way to name the connector's address. In-process middleware
tests first, then hypercorn-pq as a real process.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from asgi_util import CLASSICAL, PQ, Recorder, hop, make_scope, run
from servers import free_port, hypercorn_pq, run_cli
from tcp_util import pq_client

from pq_quic_plugin.asgi import HOPS_HEADER, PostQuantumMiddleware, connection_facts
from pq_quic_plugin.asgi.hop_trust import TrustedPeers, normalise_ip

ALL_PQ = [hop("visitor-edge", True), hop("edge-connector", True), hop("connector-origin", True)]
CLASSICAL_VISITOR = [hop("visitor-edge", False), *ALL_PQ[1:]]


def _header(hops: list[dict]) -> tuple[bytes, bytes]:
    return HOPS_HEADER.encode(), json.dumps(hops).encode()


def test_require_refuses_a_hop_list_from_an_untrusted_connector() -> None:
    """The connector at 10.0.0.5 is not in trust_hops_from: its classical visitor must not get
    the app's 200 on the strength of the last (post-quantum) hop."""
    app = Recorder()
    scope = make_scope(PQ, client=("10.0.0.5", 40000), headers=[_header(CLASSICAL_VISITOR)])
    ex = run(PostQuantumMiddleware(app, require=True), scope)
    assert ex.status == 403 and not app.scopes
    assert "trust_hops_from" in ex.text and "--pq-trust-hops-from" in ex.text
    # Also when every claimed hop is post-quantum: an unbelieved list proves nothing.
    ex = run(
        PostQuantumMiddleware(Recorder(), require=True),
        make_scope(PQ, client=("10.0.0.5", 1), headers=[_header(ALL_PQ)]),
    )
    assert ex.status == 403


@pytest.mark.parametrize(
    "headers",
    [
        [(HOPS_HEADER.encode(), b"not json")],
        [(HOPS_HEADER.encode(), b"[]")],
        [(HOPS_HEADER.encode(), b"[" * 5000 + b"]" * 5000)],
        [_header(ALL_PQ), _header(ALL_PQ)],
    ],
    ids=["not-json", "empty", "deep", "repeated"],
)
def test_require_refuses_an_unbelievable_hop_list_from_a_trusted_connector(headers) -> None:  # type: ignore[no-untyped-def]
    app = Recorder()
    ex = run(
        PostQuantumMiddleware(app, require=True),
        make_scope(PQ, client=("127.0.0.1", 1), headers=headers),
    )
    assert ex.status == 403 and not app.scopes


def test_prefer_drops_the_header_with_one_bounded_warning(caplog) -> None:  # type: ignore[no-untyped-def]
    app = Recorder()
    middleware = PostQuantumMiddleware(app)
    forged = HOPS_HEADER.encode(), b"\n" + b"x" * 100_000
    with caplog.at_level(logging.WARNING, logger="pq_quic_plugin.asgi"):
        for _ in range(50):
            ex = run(middleware, make_scope(PQ, client=("10.0.0.5", 1), headers=[forged]))
            assert ex.status == 200
    assert all(k != HOPS_HEADER.encode() for k, _ in app.scopes[-1]["headers"])
    assert connection_facts(app.scopes[-1]).hops == ()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # 50 forged headers, one line
    assert "trust_hops_from" in warnings[0] and len(warnings[0]) < 600
    assert "\n" not in warnings[0]


@pytest.mark.parametrize("client", ["::ffff:127.0.0.1", "::1", "127.0.0.1"])
def test_ipv4_mapped_loopback_is_loopback(client: str) -> None:
    app = Recorder()
    scope = make_scope(PQ, client=(client, 1), headers=[_header(ALL_PQ)])
    assert run(PostQuantumMiddleware(app, require=True), scope).status == 200
    assert [h["hop"] for h in connection_facts(app.scopes[0]).hops] == [
        "visitor-edge",
        "edge-connector",
        "connector-origin",
    ]
    refused = run(
        PostQuantumMiddleware(Recorder(), require=True),
        make_scope(PQ, client=(client, 1), headers=[_header(CLASSICAL_VISITOR)]),
    )
    assert refused.status == 403 and "visitor-edge hop negotiated x25519" in refused.text


def test_trusted_entries_are_normalised_and_may_be_networks() -> None:
    peers = TrustedPeers(["::ffff:10.0.0.5", "192.168.0.0/16", "2001:db8::/32"])
    assert "10.0.0.5" in peers and "::ffff:10.0.0.5" in peers
    assert "192.168.7.9" in peers and "::ffff:192.168.7.9" in peers
    assert "2001:db8::1" in peers
    assert "10.0.0.6" not in peers and "not an address" not in peers
    assert str(normalise_ip("::ffff:127.0.0.1")) == "127.0.0.1"
    with pytest.raises(ValueError, match="trust_hops_from"):
        TrustedPeers(["10.0.0.300"])


def test_hops_the_server_reported_are_not_judged_again() -> None:
    """hypercorn-pq's own enforcement (trusting 10.0.0.5) put the hops in the scope; an app's
    own middleware with the default list must not refuse the header it already judged."""
    app = Recorder()
    scope = make_scope(
        PQ, client=("10.0.0.5", 1), hops=ALL_PQ, headers=[_header(CLASSICAL_VISITOR)]
    )
    assert run(PostQuantumMiddleware(app, require=True), scope).status == 200
    assert all(h["post_quantum"] for h in connection_facts(app.scopes[0]).hops)


def test_a_classical_last_hop_is_still_refused_without_any_header() -> None:
    ex = run(PostQuantumMiddleware(Recorder(), require=True), make_scope(CLASSICAL))
    assert ex.status == 403 and "trust_hops_from" not in ex.text


# ---------------------------------------------------------------------- hypercorn-pq


async def _get_with_hops(pki, url: str, hops: list[dict]) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    async with pq_client(pki, timeout=15) as client:
        resp = await client.get(url, headers={HOPS_HEADER: json.dumps(hops)})
        return resp.status_code, resp.text


def _tls(pki, port: int) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--certfile", str(pki.cert), "--keyfile", str(pki.key), "-b", f"127.0.0.1:{port}"]


@pytest.mark.slow
def test_hypercorn_pq_require_refuses_hops_from_outside_its_trusted_list(pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    args = ["--pq", "require", "--pq-trust-hops-from", "10.9.9.9", *_tls(pki, port), "app:app"]
    with hypercorn_pq(args, tmp_path, port, wait_quic=False) as server:
        url = f"https://localhost:{port}/api/connection"
        status, text = asyncio.run(_get_with_hops(pki, url, CLASSICAL_VISITOR))
        assert status == 403, text
        assert "--pq-trust-hops-from" in text
        assert "believed from 10.9.9.9" in server.log()


@pytest.mark.slow
def test_hypercorn_pq_toml_key_names_the_trusted_connectors(pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``pq_trust_hops_from`` in the TOML file replaces loopback: a post-quantum hop list from
    127.0.0.1 is no longer believed, so it is refused rather than judged on the last hop."""
    port = free_port()
    config = tmp_path / "hypercorn.toml"
    config.write_text(
        f'bind = ["127.0.0.1:{port}"]\ncertfile = "{pki.cert}"\nkeyfile = "{pki.key}"\n'
        'pq = "require"\npq_trust_hops_from = ["10.0.0.0/8"]\n'
    )
    with hypercorn_pq(["-c", str(config), "app:app"], tmp_path, port, wait_quic=False):
        url = f"https://localhost:{port}/api/connection"
        status, text = asyncio.run(_get_with_hops(pki, url, ALL_PQ))
        assert status == 403 and "trust_hops_from" in text, text

        async def plain() -> int:
            async with pq_client(pki, timeout=15) as client:
                return (await client.get(url)).status_code

        assert asyncio.run(plain()) == 200  # no hop list: judged on its own (post-quantum) hop


def test_hypercorn_pq_rejects_a_bad_trusted_address(pki) -> None:  # type: ignore[no-untyped-def]
    out = run_cli(["--pq", "require", "--pq-trust-hops-from", "10.0.0.300", *_tls(pki, 1), "a:b"])
    assert out.returncode == 2 and "--pq-trust-hops-from" in out.stderr, out.stderr
