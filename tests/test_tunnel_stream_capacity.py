"""A tunnel carries as many requests at once as the edge admits.

The edge admits up to ``max-requests-per-tunnel`` (512) requests per tunnel, but each QUIC
connection from the connector granted aioquic's default of 128 streams: with the chain's two
connections the 257th long request (long polls, event streams, slow downloads) waited, with
nothing logged, until an earlier one ended, however many visitors it came from. Every tunnel
connection now grants STREAMS_PER_CONNECTION (512) on both transports, so the edge's limit, with
its clear 503, is what a busy tunnel meets. The origin side follows: the connector's HTTP/2
pool opens more connections to the origin once 100 streams are busy (hypercorn's limit).

A real chain (origin under ``hypercorn-pq``, edge, connector with two connections); 300 slow
requests from four HTTP/2 visitor connections, all held at the origin at once (the connector's
in-flight gauge), then one more request is answered while all 300 still wait.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from metrics_util import gauge
from tunnel_chain import TUNNEL_HOST, running_chain
from visitor_util import tls_context
from waiting import wait_until_async

from pq_quic_plugin.tunnel.wire.link_base import STREAMS_PER_CONNECTION

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

HELD = 300  # over 2 connections x 128 (aioquic's grant), under the edge's 512 per tunnel
SLOW = 30.0  # seconds the origin holds each: far longer than setting up the rest takes
VISITOR_CONNECTIONS = 4  # 75 streams each, under the public listener's 100 per connection
IN_FLIGHT = "pq_tunnel_connector_concurrent_requests"


def test_the_grant_covers_the_edges_per_tunnel_limit() -> None:
    assert STREAMS_PER_CONNECTION >= 512


@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_a_tunnel_carries_hundreds_of_long_requests_at_once(tmp_path: Path, protocol: str) -> None:
    limits = {"max-requests-per-visitor": 1000}  # one address stands for many visitors here
    with running_chain(tmp_path, edge_public=limits, protocol=protocol) as chain:
        base = f"https://127.0.0.1:{chain.public_port}"
        host = {"host": TUNNEL_HOST}
        tls = tls_context(chain.pki.ca_cert)

        async def main() -> tuple[int, bool, list[str]]:
            clients = [
                httpx.AsyncClient(http2=True, verify=tls, timeout=SLOW + 30)
                for _ in range(VISITOR_CONNECTIONS)
            ]
            held = [
                asyncio.ensure_future(
                    clients[i % VISITOR_CONNECTIONS].get(
                        f"{base}/slow?seconds={SLOW:g}", headers=host
                    )
                )
                for i in range(HELD)
            ]
            try:
                await wait_until_async(
                    lambda: gauge(chain.connector_metrics, IN_FLIGHT) >= HELD,
                    SLOW / 2,
                    f"all {HELD} requests in flight at the connector",
                    interval=0.2,
                )
                async with httpx.AsyncClient(http2=True, verify=tls, timeout=SLOW) as one:
                    response = await one.get(f"{base}/bytes/1000", headers=host)
                all_waiting = not any(task.done() for task in held)
                failed = [repr(t.exception()) for t in held if t.done() and t.exception()]
                return response.status_code, all_waiting, failed
            finally:
                for task in held:
                    task.cancel()
                await asyncio.gather(*held, return_exceptions=True)
                for client in clients:
                    await client.aclose()

        status, all_waiting, failed = asyncio.run(main())
    assert status == 200
    assert not failed, failed[:3]
    assert all_waiting, "the extra request waited for one of the long ones to end"
