"""cloudflared's metric names on the connector and the edge, scraped while traffic flows.

A real chain (tools/loopback.py) with the test origin app; the connector has a second rule to a
port where nothing listens, so some requests fail to reach their origin. Each scrape is compared
with the one before: the names exist, and the counts move by what the traffic did.
"""

from __future__ import annotations

import asyncio
import json
import platform
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
from prometheus_client.parser import text_string_to_metric_families
from tunnel_chain import Chain, running_chain
from waiting import wait_until

from pq_quic_plugin import __version__
from tools.loopback import free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

APPS = Path(__file__).resolve().parent / "apps"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _build_info(samples: Samples, program: str) -> float:
    """The ``build_info`` sample of this Python and this release for ``program``."""
    return value(
        samples,
        "build_info",
        python_version=platform.python_version(),
        version=__version__,
        type=program,
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    base = tmp_path_factory.mktemp("metrics-chain")
    with running_chain(base, connector=False, origin_app="origin_app:app", origin_cwd=APPS) as c:
        default = json.loads(c.connector_config().read_text())
        down = {"path": "^/down", "service": f"http://127.0.0.1:{free_port()}"}
        config = c.connector_config(ingress=[down, *default["ingress"]])
        c.connector = c.start_connector(config=config)
        yield c


def _tunnel_id(chain: Chain) -> str:
    return str(json.loads((chain.dir / "creds.json").read_text())["TunnelID"])


def test_connector_exports_cloudflareds_names(chain: Chain) -> None:
    url = chain.url
    before = scrape(chain.connector_metrics)
    assert value(before, "cloudflared_tunnel_ha_connections") == 2
    for index in ("0", "1"):
        located = {"connection_id": index, "edge_location": "test-loopback"}
        assert value(before, "cloudflared_tunnel_server_locations", **located) == 1
    assert _build_info(before, "connector") == 1
    assert ("pq_tunnel_connector_reconnects_total", ()) in before

    during: dict[str, Samples] = {}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(chain.pki.ca_cert))) as client:
        # One slow request in flight while the connector is scraped.
        slow = threading.Thread(target=lambda: client.get(url + "/slow?delay=1.5", timeout=20))
        slow.start()
        wait_until(
            lambda: (
                value(
                    scrape(chain.connector_metrics),
                    "cloudflared_tunnel_concurrent_requests_per_tunnel",
                )
                >= 1
            ),
            timeout=10,
            what="the slow request counted as in flight",
        )
        during["slow"] = scrape(chain.connector_metrics)
        for _ in range(4):
            assert client.get(url + "/bytes/1000", timeout=20).status_code == 200
        assert client.get(url + "/status/503", timeout=20).status_code == 503  # origin's own
        for _ in range(3):
            assert client.get(url + "/down", timeout=20).status_code == 502  # unreachable
        slow.join()
    after = scrape(chain.connector_metrics)
    total = "cloudflared_tunnel_total_requests"
    errors = "cloudflared_tunnel_request_errors"
    assert value(during["slow"], "cloudflared_tunnel_concurrent_requests_per_tunnel") >= 1
    assert value(after, total) - value(before, total) == 9
    # As cloudflared: errors proxying to the origin, not the origin's own 5xx.
    assert value(after, errors) - value(before, errors) == 3
    assert value(after, "cloudflared_tunnel_concurrent_requests_per_tunnel") == 0


def test_edge_exports_per_tunnel_names_and_fixed_counters(chain: Chain) -> None:
    tunnel = _tunnel_id(chain)
    before = scrape(chain.edge_metrics)
    assert value(before, "cloudflared_tunnel_ha_connections", tunnel_id=tunnel) == 2
    assert _build_info(before, "edge") == 1
    assert not any(name == "pq_tunnel_edge_reconnects_total" for name, _ in before)
    # Registered connections took a measurable time: the histogram is no longer empty.
    assert value(before, "pq_tunnel_edge_connect_duration_seconds_count") >= 2
    upload = b"u" * 200_000
    with httpx.Client(verify=ssl.create_default_context(cafile=str(chain.pki.ca_cert))) as client:
        for _ in range(3):
            response = client.get(chain.url + "/bytes/100000", timeout=20)
            assert response.status_code == 200 and len(response.content) == 100_000
        assert client.post(chain.url + "/echo", content=upload, timeout=20).content == upload
        assert client.get(chain.url + "/down", timeout=20).status_code == 502
    after = scrape(chain.edge_metrics)
    total = "cloudflared_tunnel_total_requests"
    assert value(after, total, tunnel_id=tunnel) - value(before, total, tunnel_id=tunnel) == 5
    errors = "cloudflared_tunnel_request_errors"
    assert value(after, errors, tunnel_id=tunnel) - value(before, errors, tunnel_id=tunnel) == 1
    sent = "pq_tunnel_edge_bytes_total"
    down = value(after, sent, direction="from_origin") - value(
        before, sent, direction="from_origin"
    )
    up = value(after, sent, direction="to_origin") - value(before, sent, direction="to_origin")
    assert down >= 300_000 + len(upload) and up >= len(upload)


def test_edge_counts_failed_handshakes(chain: Chain) -> None:
    """A QUIC client with the wrong ALPN fails the handshake at the connector listener."""
    failed = ("pq_tunnel_edge_handshakes_total", (("group", "none"), ("result", "failed")))
    before = scrape(chain.edge_metrics).get(failed, 0.0)

    async def attempt() -> Any:
        config = QuicConfiguration(is_client=True, alpn_protocols=["h3"])
        config.load_verify_locations(str(chain.pki.ca_cert))
        config.server_name = "localhost"
        try:
            async with connect("127.0.0.1", chain.connector_port, configuration=config):
                return "connected"
        except ConnectionError as exc:
            return exc

    assert isinstance(asyncio.run(asyncio.wait_for(attempt(), 20)), ConnectionError)
    wait_until(
        lambda: scrape(chain.edge_metrics).get(failed, 0.0) >= before + 1,
        timeout=15,
        what="the failed handshake counted on the edge",
    )
