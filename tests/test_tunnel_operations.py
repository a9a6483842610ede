"""pq-tunnel in operation: metrics, readiness, failover, edge restarts, graceful shutdown,
a bounded load test and the status page. Real processes on loopback."""

from __future__ import annotations

import json
import signal
import ssl
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from peers.chromium import screenshot
from prometheus_client.parser import text_string_to_metric_families
from servers import stop
from tunnel_chain import TUNNEL_HOST, running_chain, start_edge
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

BACKOFF_BOUND = 16.0  # the connector's backoff after these short outages (it doubles from 0.5 s)


def _http(url: str, method: str = "GET", timeout: float = 10) -> tuple[int, bytes]:
    # An operator action needs this header (it keeps a web page from forging one).
    headers = {"pq-tunnel-action": "1"} if method == "POST" else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _visit(chain, path: str, timeout: float = 15) -> tuple[int | str, float]:  # type: ignore[no-untyped-def]
    """One visitor request over TCP HTTPS to the edge; (status or error kind, seconds)."""
    ctx = ssl.create_default_context(cafile=str(chain.pki.ca_cert))
    url = f"https://{TUNNEL_HOST}:{chain.public_port}{path}"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            resp.read()
            return resp.status, time.monotonic() - started
    except urllib.error.HTTPError as err:
        return err.code, time.monotonic() - started
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return f"connect-error:{type(err).__name__}", time.monotonic() - started


def _metrics(port: int) -> dict[tuple[str, tuple], float]:
    status, body = _http(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _ready(port: int) -> tuple[int, dict]:
    status, body = _http(f"http://127.0.0.1:{port}/ready")
    return status, json.loads(body)


class Load:
    """Visitors in threads, bounded in time; records every request's outcome and duration."""

    def __init__(self, chain, clients: int = 4, path: str = "/api/connection") -> None:  # type: ignore[no-untyped-def]
        self.chain, self.clients, self.path = chain, clients, path
        self.results: list[tuple[int | str, float]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.results.append(_visit(self.chain, self.path))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def wait_for(self, count: int, timeout: float, what: str) -> float:
        """Wait until ``count`` more requests have completed (whatever their outcome)."""
        target = len(self.results) + count
        return wait_until(lambda: len(self.results) >= target, timeout, what)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):  # type: ignore[no-untyped-def]
    with running_chain(tmp_path_factory.mktemp("ops")) as c:
        yield c


def test_metrics_parse_and_move_with_traffic(chain) -> None:  # type: ignore[no-untyped-def]
    before = _metrics(chain.connector_metrics)
    for _ in range(5):
        assert _visit(chain, "/bytes/1000")[0] == 200
    after = _metrics(chain.connector_metrics)
    key = ("pq_tunnel_connector_requests_total", (("status", "200"),))
    assert after[key] - before.get(key, 0) == 5
    assert after[("pq_tunnel_connector_ha_connections", ())] == 2
    ok = ("pq_tunnel_connector_handshakes_total", (("group", "X25519MLKEM768"), ("result", "ok")))
    assert after[ok] >= 2
    sent = ("pq_tunnel_connector_bytes_total", (("direction", "from_origin"),))
    assert after[sent] - before.get(sent, 0) >= 5000
    assert after[("pq_tunnel_connector_concurrent_requests", ())] == 0
    assert after[("pq_tunnel_connector_request_duration_seconds_count", ())] >= 5
    edge = _metrics(chain.edge_metrics)
    assert edge[("pq_tunnel_edge_ha_connections", ())] == 2
    assert edge[("pq_tunnel_edge_requests_total", (("status", "200"),))] >= 5


def test_ready_and_healthcheck(chain) -> None:  # type: ignore[no-untyped-def]
    status, body = _ready(chain.connector_metrics)
    assert status == 200 and body["readyConnections"] == 2 and body["connectorId"]
    assert _http(f"http://127.0.0.1:{chain.connector_metrics}/healthcheck") == (200, b"OK\n")


def test_failover_when_one_connection_dies(chain) -> None:  # type: ignore[no-untyped-def]
    with Load(chain, clients=4, path="/slow?seconds=0.2") as load:
        load.wait_for(8, 30, "8 requests through both connections before the drop")
        status, body = _http(
            f"http://127.0.0.1:{chain.edge_metrics}/debug/close-connection?conn_index=0",
            method="POST",
        )
        assert status == 200, body
        load.wait_for(20, 60, "20 requests after connection 0 was dropped")
    outcomes = [r for r, _ in load.results]
    failed = [r for r in outcomes if r != 200]
    print(f"\nfailover: {len(outcomes)} requests, {len(failed)} failed: {failed}")
    assert set(failed) <= {502}
    assert len(failed) <= 4  # at most the requests in flight on the dropped connection
    assert max(d for _, d in load.results) < 10  # none hung
    back = wait_until(
        lambda: _ready(chain.connector_metrics)[1]["readyConnections"] == 2,
        BACKOFF_BOUND + 10,
        "the connector to reconnect to full HA",
    )
    print(f"failover: back to 2 connections {back:.1f}s later")
    assert "reconnecting in" in chain.connector.log()


@pytest.mark.browser
def test_status_page_in_chromium(chain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _visit(chain, "/")
    url = f"http://127.0.0.1:{chain.edge_metrics}/"
    status, body = _http(url)
    page = body.decode()
    assert status == 200 and "demo" in page and "X25519MLKEM768" in page
    assert "post-quantum" in page and "<script" not in page
    shot = screenshot(url, tmp_path / "status.png", chain.pki.spki_sha256_b64, force_quic=False)
    assert shot.stat().st_size > 10_000
    import os
    import shutil

    if os.environ.get("PQ_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["PQ_SCREENSHOT_DIR"]) / "edge-status-page.png")


def test_bounded_load(chain) -> None:  # type: ignore[no-untyped-def]
    clients, requests = 8, 400
    with Load(chain, clients=clients, path="/bytes/2048") as load:
        seconds = load.wait_for(requests, 60, f"{requests} requests from {clients} clients")
    codes = [r for r, _ in load.results]
    latencies = sorted(d for _, d in load.results)
    p = {q: latencies[min(len(latencies) - 1, int(len(latencies) * q / 100))] for q in (50, 90, 99)}
    print(
        f"\nload: {clients} clients x {seconds:.1f}s: {len(codes)} requests, "
        f"{len(codes) / seconds:.1f} req/s, p50 {p[50] * 1000:.0f} ms, "
        f"p90 {p[90] * 1000:.0f} ms, p99 {p[99] * 1000:.0f} ms, "
        f"mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    assert codes and set(codes) == {200}


def test_sigterm_lets_a_slow_request_finish_then_exits_0(tmp_path: Path) -> None:
    with running_chain(tmp_path) as chain:
        result: list[tuple[int | str, float]] = []
        visitor = threading.Thread(
            target=lambda: result.append(_visit(chain, "/slow?seconds=3", timeout=30))
        )
        visitor.start()
        in_flight = ("pq_tunnel_connector_concurrent_requests", ())
        wait_until(
            lambda: _metrics(chain.connector_metrics).get(in_flight) == 1,
            10,
            "the slow request to reach the connector",
        )
        assert chain.connector is not None
        chain.connector.proc.send_signal(signal.SIGTERM)
        visitor.join(30)
        code = chain.connector.proc.wait(30)
        assert result and result[0][0] == 200
        assert code == 0
        assert "draining" in chain.connector.log()


def test_ready_flips_when_the_edge_goes_away_and_comes_back(tmp_path: Path) -> None:
    with running_chain(tmp_path) as chain:
        assert _ready(chain.connector_metrics)[0] == 200
        with Load(chain, clients=2) as load:
            stop(chain.edge.proc)
            gone = wait_until(
                lambda: _ready(chain.connector_metrics)[0] == 503,
                20,
                "the connector's /ready to turn 503",
            )
            edge = start_edge(chain.dir / "edge.yaml", chain.dir / "edge-again.log", chain.dir)
            chain.extra.append(edge)
            back = wait_until(
                lambda: _ready(chain.connector_metrics)[1].get("readyConnections") == 2,
                BACKOFF_BOUND + 15,
                "full HA after the edge restart",
            )
            load.wait_for(4, 30, "4 requests after the connector is back")
        outcomes = [r for r, _ in load.results]
        failed = [r for r in outcomes if r != 200]
        print(
            f"\nedge restart: 503 after {gone:.1f}s, full HA {back:.1f}s after restart; "
            f"{len(outcomes)} requests, {len(failed)} failed"
        )
        assert all(r == 502 or str(r).startswith("connect-error") for r in failed)
        assert max(d for _, d in load.results) < 16  # none hung
        assert outcomes[-1] == 200
