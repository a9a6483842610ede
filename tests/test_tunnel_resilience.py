"""A connector that does not give up, says why each attempt failed, and blames post-quantum
only when post-quantum is to blame; ``pq-tunnel delete`` that does not leave connectors
dangling (docs/tunnel.md, "Retries"). Real origin, edge and connector processes on loopback,
except the classification tests, which feed real connection objects real close events."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from servers import stop
from tunnel_chain import (
    TUNNEL_HOST,
    Chain,
    running_chain,
    start_classical_edge,
    start_edge,
    tunnel_cli,
)
from waiting import wait_until

from pq_quic_plugin.devcert import make_dev_pki
from pq_quic_plugin.tunnel.connector.failures import FailureKind, classify
from pq_quic_plugin.tunnel.connector.registration import RegistrationError
from pq_quic_plugin.tunnel.wire import ERROR_AUTH, StreamReset, TunnelConnection

BANNER = "POST-QUANTUM TUNNEL CONNECTION FAILED"
#: The connector's backoff cap in these tests (the default is 30 s).
CAP = 4.0
#: The outage: 3 minutes as issue 14 asks with PQ_LONG_TESTS=1 (docs/tunnel.md, Retries); the
#: suite's default of 20 s (five caps), once per transport, checks the same things and keeps
#: `make test` short.
OUTAGE = 180.0 if os.environ.get("PQ_LONG_TESTS") == "1" else 20.0
#: What a refused attempt's reason says on each transport (an ICMP error for UDP, RST for TCP).
REFUSED = {"quic": "UDP unreachable", "http2": "TCP connection refused"}
#: One attempt against a stopped edge on loopback takes about a second (the ICMP error, then
#: aioquic's closing period); log timestamps have one-second resolution.
ATTEMPT_SLACK = 4.0

_ATTEMPT = re.compile(
    r"^(\S+Z) WRN connIndex=(\d+) edge=\S+ (\S+) failure: (.*); reconnecting in ([\d.]+)s"
)


# ------------------------------------------------------------------------- classification


def _closed(code: int, reason: str, *, handshake_done: bool = False) -> TunnelConnection:
    """A real tunnel connection that went through a real CONNECTION_CLOSE event."""

    async def make() -> TunnelConnection:
        conn = TunnelConnection(QuicConnection(configuration=QuicConfiguration(is_client=True)))
        if handshake_done:
            conn.quic_event_received(events.HandshakeCompleted("pq-tunnel/1", False, False))
        conn.quic_event_received(events.ConnectionTerminated(code, None, reason))
        return conn

    return asyncio.run(make())


@pytest.mark.parametrize(
    "code,reason,post_quantum,kind,says",
    [
        (
            0x128,
            "no key-exchange group in common (client offered: X25519MLKEM768)",
            True,
            FailureKind.POST_QUANTUM,
            "TLS alert handshake_failure: no key-exchange group in common",
        ),
        (0x128, "", True, FailureKind.POST_QUANTUM, "TLS alert handshake_failure"),
        # the same refusal without --post-quantum is not a post-quantum failure to report
        (0x128, "No supported key share", False, FailureKind.TLS, "No supported key share"),
        (0x128, "No supported cipher suite", True, FailureKind.TLS, "No supported cipher"),
        (
            0x12A,
            "unable to get local issuer certificate",
            True,
            FailureKind.TLS,
            "TLS alert bad_certificate: unable to get local issuer certificate",
        ),
        (0x0, "Idle timeout", True, FailureKind.NETWORK, "timeout: no answer from the edge"),
        (0x0, "UDP unreachable (ICMP port unreachable)", True, FailureKind.NETWORK, "UDP"),
        (0x2, "edge shutting down", True, FailureKind.NETWORK, "edge shutting down"),
    ],
)
def test_handshake_failures_are_classified_with_their_reason(
    code: int, reason: str, post_quantum: bool, kind: FailureKind, says: str
) -> None:
    conn = _closed(code, reason)
    failure = classify(ConnectionError(), conn, post_quantum=post_quantum, registered=False)
    assert failure.kind is kind
    assert says in failure.reason and "ConnectionError" not in failure.reason
    assert failure.shows_banner == (kind is FailureKind.POST_QUANTUM)
    assert not failure.permanent


def test_authentication_failures_are_permanent_and_a_plain_loss_is_not() -> None:
    refused = classify(RegistrationError("refused"), None, post_quantum=True, registered=False)
    assert refused.kind is FailureKind.AUTHENTICATION and refused.permanent
    deleted = _closed(ERROR_AUTH, "tunnel deleted", handshake_done=True)
    failure = classify(StreamReset("closed"), deleted, post_quantum=True, registered=True)
    assert failure.permanent and "tunnel deleted" in failure.reason
    lost = _closed(0x11, "edge shutting down", handshake_done=True)
    failure = classify(ConnectionError(), lost, post_quantum=True, registered=True)
    assert failure.kind is FailureKind.NETWORK and not failure.permanent
    assert failure.reason == "connection lost: edge shutting down"
    timeout = classify(asyncio.TimeoutError(), None, post_quantum=True, registered=False)
    assert timeout.kind is FailureKind.NETWORK and "timeout" in timeout.reason


# ------------------------------------------------------------------------- processes


def _ready(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def _get(chain: Chain, path: str) -> int:
    context = ssl.create_default_context(cafile=str(chain.pki.ca_cert))
    with httpx.Client(verify=context, timeout=20) as client:
        return client.get(f"https://{TUNNEL_HOST}:{chain.public_port}{path}").status_code


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").timestamp()


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_connector_outlives_a_long_edge_outage(tmp_path: Path, protocol: str) -> None:
    """Edge down for OUTAGE seconds (3 minutes in the long form): the connector keeps trying,
    never waits longer than the cap, logs a short line per attempt with the reason (no
    post-quantum banner: it is an outage), and is back within one cap of the edge's return.
    It used to exit after about 39 s."""
    with running_chain(tmp_path, connector=False, protocol=protocol) as chain:
        config = chain.connector_config(max_backoff=f"{CAP:g}s")
        connector = chain.start_connector(config=config)
        chain.connector = connector
        stop(chain.edge.proc)
        down_at = time.time()
        wait_until(lambda: _ready(chain.connector_metrics)[0] == 503, 20, "/ready to turn 503")
        deadline = time.monotonic() + OUTAGE
        while time.monotonic() < deadline:
            assert not connector.exited(), connector.log_tail()
            time.sleep(2)
        edge = start_edge(chain.dir / "edge.yaml", chain.dir / "edge-again.log", chain.dir)
        chain.extra.append(edge)
        back = wait_until(
            lambda: _ready(chain.connector_metrics)[1].get("readyConnections") == 2,
            CAP + ATTEMPT_SLACK + 5,
            "both connections back after the edge returned",
        )
        assert _get(chain, "/api/connection") == 200
        log = connector.log()
    attempts: dict[str, list[float]] = {}
    for line in log.splitlines():
        match = _ATTEMPT.match(line)
        if match is None or _stamp(match[1]) < int(down_at):
            continue
        stamp, index, kind, reason, wait = match.groups()
        assert kind == "network", line
        assert float(wait) <= CAP, line
        assert reason, line
        attempts.setdefault(index, []).append(_stamp(stamp))
    print(f"\noutage: back {back:.1f}s after the edge returned; attempts per connection: ")
    print({index: len(stamps) for index, stamps in attempts.items()})
    assert set(attempts) == {"0", "1"}
    for index, stamps in attempts.items():
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        assert len(stamps) >= OUTAGE / (CAP + ATTEMPT_SLACK), (index, len(stamps))
        assert max(gaps) <= CAP + ATTEMPT_SLACK, (index, max(gaps))
    assert REFUSED[protocol] in log
    assert BANNER not in log
    assert "gave up" not in log and "every connection stopped" not in log


@pytest.mark.slow
@pytest.mark.e2e
def test_banner_only_for_a_post_quantum_refusal_and_with_the_real_reason(tmp_path: Path) -> None:
    """A classical-only edge refuses a --post-quantum connector: the banner names the TLS
    alert and the edge's reason. A certificate that does not verify is a TLS failure: no
    banner, and the log says what failed."""
    with running_chain(tmp_path, connector=False) as chain:
        ports = start_classical_edge(chain)
        strict = chain.start_connector(
            config=chain.connector_config(
                "strict.yml", edge=[f"127.0.0.1:{ports[1]}"], ha_connections=1, max_backoff="2s"
            ),
            wait=False,
        )
        chain.extra.append(strict)
        strict.wait_for_log(BANNER, 30)
        strict.wait_for_log("post-quantum failure: TLS alert handshake_failure", 30)
        log = strict.log()
        banner_error = next(line for line in log.splitlines() if line.startswith("  error: "))
        assert "TLS alert handshake_failure" in banner_error
        assert "key-exchange group" in banner_error  # the edge's own words
        stop(strict.proc)

        stranger = make_dev_pki(chain.dir / "other-pki", hostnames=("localhost",))
        wrong_ca = chain.start_connector(
            config=chain.connector_config(
                "wrong-ca.yml", ca_file=str(stranger.ca_cert), ha_connections=1
            ),
            wait=False,
        )
        chain.extra.append(wrong_ca)
        wrong_ca.wait_for_log("tls failure: TLS alert bad_certificate", 30)
        time.sleep(1)
        assert BANNER not in wrong_ca.log()
        stop(wrong_ca.proc)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_delete_refuses_a_live_tunnel_and_force_closes_its_connections(
    tmp_path: Path, protocol: str
) -> None:
    """``delete`` refuses while connectors are live; ``--force`` deletes, the edge closes
    their connections with "tunnel deleted", /ready turns 503 and the connector stops with a
    clear error instead of retrying against a tunnel that no longer exists."""
    with running_chain(tmp_path, protocol=protocol) as chain:
        assert chain.connector is not None
        edge_yaml = str(chain.dir / "edge.yaml")
        refused = tunnel_cli("delete", "demo", "--config", edge_yaml, cwd=chain.dir)
        assert refused.returncode == 2
        assert "2 live connection(s)" in refused.stderr and "--force" in refused.stderr
        listing = tunnel_cli("list", "--json", "--config", edge_yaml, cwd=chain.dir)
        [demo] = json.loads(listing.stdout)  # nothing was deleted
        assert demo["name"] == "demo" and len(demo["connections"]) == 2
        assert _ready(chain.connector_metrics)[0] == 200
        forced = tunnel_cli("delete", "demo", "--force", "--config", edge_yaml, cwd=chain.dir)
        assert forced.returncode == 0, forced.stderr
        assert "closed its 2 live connection(s)" in forced.stdout
        wait_until(lambda: _ready(chain.connector_metrics)[0] in (0, 503), 10, "/ready 503")
        code = chain.connector.proc.wait(20)
        log = chain.connector.log()
        assert code == 1
        assert "tunnel deleted" in log and "not retrying" in log
        chain.edge.wait_for_log("was deleted: closing connection")
        listing = tunnel_cli("list", "--json", "--config", edge_yaml, cwd=chain.dir)
        assert json.loads(listing.stdout) == []
