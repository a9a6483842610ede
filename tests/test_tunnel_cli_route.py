"""``pq-tunnel route``: hostnames added to or removed from a tunnel while its edge runs.

Before, a tunnel's hostnames were fixed at ``create`` (the duplicate-hostname error said
"remove it there first", and nothing could). Now ``route`` changes them in the store; the
running edge routes every request by the store, so the change applies without a restart, and
within a second it tells the tunnel's connectors the new list on their control streams.
"""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest
from tunnel_chain import TUNNEL_HOST, Chain, origin_rule, running_chain, tunnel_cli
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NEW_HOST = "api.example.test"


def _status(chain: Chain, host: str) -> int:
    """GET /api/connection through the edge with ``Host: host`` (TLS to localhost)."""
    context = ssl.create_default_context(cafile=str(chain.pki.ca_cert))
    with httpx.Client(verify=context, timeout=20) as client:
        url = f"https://{TUNNEL_HOST}:{chain.public_port}/api/connection"
        return client.get(url, headers={"Host": host}).status_code


def _route(chain: Chain, *args: str) -> str:
    done = tunnel_cli(
        "route", "demo", *args, "--config", str(chain.dir / "edge.yaml"), cwd=chain.dir
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("protocol", ["quic", "http2"])
def test_route_adds_and_removes_hostnames_on_a_running_edge(tmp_path: Path, protocol: str) -> None:
    with running_chain(tmp_path, connector=False, protocol=protocol) as chain:
        # A catch-all to the origin: the connector serves whatever hostnames the edge routes.
        config = chain.connector_config(ingress=[origin_rule(chain.origin_port, chain.pki.ca_cert)])
        chain.connector = chain.start_connector(config=config)
        edge_pid = chain.edge.proc.pid
        assert _status(chain, TUNNEL_HOST) == 200
        assert _status(chain, NEW_HOST) == 404  # not a tunnel's: the edge's own 404

        started = time.monotonic()
        assert f"now serves: {NEW_HOST}, {TUNNEL_HOST}" in _route(chain, "--add-hostname", NEW_HOST)
        wait_until(lambda: _status(chain, NEW_HOST) == 200, 5, f"{NEW_HOST} to reach the origin")
        assert time.monotonic() - started < 5
        connector = chain.connector
        connector.wait_for_log(f"routes hostnames {NEW_HOST}, {TUNNEL_HOST} to this tunnel", 5)

        _route(chain, "--remove-hostname", NEW_HOST)
        wait_until(lambda: _status(chain, NEW_HOST) == 404, 5, f"{NEW_HOST} to be gone")
        assert _status(chain, TUNNEL_HOST) == 200  # the others are not touched
        connector.wait_for_log(f"routes hostnames {TUNNEL_HOST} to this tunnel", 5)
        assert chain.edge.proc.poll() is None and chain.edge.proc.pid == edge_pid  # no restart


def test_route_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    """Without a running edge: a hostname of another tunnel, one the tunnel does not have, no
    change asked for, an unknown tunnel - each a clear error and exit status 2."""
    store = str(tmp_path / "tunnels.db")
    for name, host in (("one", "a.example.test"), ("two", "b.example.test")):
        made = tunnel_cli(
            "create", name, "--hostname", host, "--store", store,
            "--credentials-file", f"{name}.json", cwd=tmp_path,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    cases = [
        (["one", "--add-hostname", "b.example.test"], "route two --remove-hostname b.example.test"),
        (["one", "--remove-hostname", "c.example.test"], "is not routed to tunnel one"),
        (["one"], "give --add-hostname HOST and/or --remove-hostname HOST"),
        (["three", "--add-hostname", "c.example.test"], "known tunnels: one, two"),
        (["one", "--add-hostname", "bad host"], "bad host"),
    ]
    for args, words in cases:
        done = tunnel_cli("route", *args, "--store", store, cwd=tmp_path)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    listing = tunnel_cli("list", "--store", store, "--json", cwd=tmp_path)
    hosts = {t["name"]: t["hostnames"] for t in json.loads(listing.stdout)}
    assert hosts == {"one": ["a.example.test"], "two": ["b.example.test"]}
