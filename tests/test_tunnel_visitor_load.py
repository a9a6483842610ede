"""One hostile visitor must not hurt twenty well-behaved ones (issue 14, part B).

A real chain (origin over HTTP/3, edge and connector as processes on loopback, the edge's
default limits). Twenty visitors each fetch small bodies over HTTP/2, one after another with a
short pause, and their latencies are recorded: first alone, then while a hostile visitor from
another address (tests/visitor_hostile.py, a process of its own) holds 40 downloads it never
reads, fires 150 concurrent slow requests, and keeps sending a 30 KB Host, HEAD requests and
requests with both Transfer-Encoding and Content-Length. Before the limits, the hostile visitor
held every stream of the tunnel and the others waited for seconds; HEAD to an HTTP/3 origin cut
the shared origin connection and with it other visitors' responses.

The bound is the issue's: no failed request for the well-behaved visitors, and their p99 under
the attack at most twice their p99 without it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tunnel_chain import TUNNEL_HOST, running_chain
from visitor_util import tls_context

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

GOOD_VISITORS = 20
REQUESTS = 25  # per visitor and phase: 500 latencies, so p99 is the 5th slowest
PAUSE = 0.05  # between one visitor's requests: a steady load, not a saturating one
HOSTILE = "127.0.0.66"
TESTS = Path(__file__).resolve().parent


async def _good_visitors(chain: Any) -> tuple[list[float], list[str]]:
    """Every latency of every well-behaved visitor, and what went wrong for any of them."""
    latencies: list[float] = []
    failures: list[str] = []
    url = f"https://127.0.0.1:{chain.public_port}/bytes/20000"

    async def visitor() -> None:
        async with httpx.AsyncClient(
            http2=True, verify=tls_context(chain.pki.ca_cert), timeout=60
        ) as client:
            await client.get(url, headers={"host": TUNNEL_HOST})  # connection set up, not timed
            for _ in range(REQUESTS):
                started = time.perf_counter()
                try:
                    response = await client.get(url, headers={"host": TUNNEL_HOST})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or len(response.content) != 20000:
                    failures.append(f"{response.status_code}: {response.text[:100]}")
                await asyncio.sleep(PAUSE)

    await asyncio.gather(*(visitor() for _ in range(GOOD_VISITORS)))
    return latencies, failures


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@dataclass
class Outcome:
    alone: list[float]
    attacked: list[float]
    failures: list[str]
    hostile: dict[str, int]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The well-behaved visitors' latencies alone and under attack, measured once."""
    with running_chain(tmp_path_factory.mktemp("load"), origin_protocol="http3") as chain:
        asyncio.run(_good_visitors(chain))  # warm every process up once, not measured
        started = time.monotonic()
        alone, failures = asyncio.run(_good_visitors(chain))
        phase = time.monotonic() - started
        hostile = subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "visitor_hostile.py"),
                str(chain.public_port),
                str(chain.pki.ca_cert),
                HOSTILE,
                str(3 + 3 * phase),
            ],
            cwd=TESTS,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(3)  # its slow readers and its burst are in place
            attacked, more = asyncio.run(_good_visitors(chain))
            out, _ = hostile.communicate(timeout=120)
        finally:
            hostile.kill()
            hostile.wait()
    result = Outcome(alone, attacked, failures + more, json.loads(out))
    print(
        f"p99 alone {_p99(alone) * 1000:.1f} ms, under attack {_p99(attacked) * 1000:.1f} ms; "
        f"hostile {result.hostile}"
    )
    return result


@pytest.mark.timeout(300)
def test_hostile_visitor_causes_no_failed_request_for_others(outcome: Outcome) -> None:
    assert outcome.failures == []
    assert len(outcome.alone) == len(outcome.attacked) == GOOD_VISITORS * REQUESTS
    assert outcome.hostile.get("429", 0) > 0, outcome.hostile  # it did hit its share
    assert outcome.hostile.get("400", 0) > 0, outcome.hostile  # huge Host, TE+CL refused
    assert outcome.hostile.get("200", 0) >= 20, outcome.hostile  # its HEAD requests


@pytest.mark.timeout(300)
def test_hostile_visitor_keeps_others_p99_within_twice(outcome: Outcome) -> None:
    base, under = _p99(outcome.alone), _p99(outcome.attacked)
    assert under <= 2 * base, f"p99 {under * 1000:.1f} ms under attack, {base * 1000:.1f} ms alone"
