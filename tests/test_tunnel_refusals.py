"""What the tunnel refuses: wrong secrets, unknown tunnels, foreign hostnames, classical edges
under --post-quantum, and broken configs, on both transports between edge and connector (QUIC
and HTTP/2). Real edge and connector processes on loopback."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from servers import stop
from tunnel_chain import Chain, running_chain, start, start_classical_edge, tunnel_cli

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module", params=["quic", "http2"])
def chain(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with running_chain(tmp_path_factory.mktemp("refusals"), protocol=request.param) as c:
        yield c


def _run_connector(chain, config: Path, *extra: str):  # type: ignore[no-untyped-def]
    proc = start(
        [sys.executable, "-m", "pq_quic_plugin.tunnel", "run", "--config", str(config), *extra],
        chain.dir / f"{config.stem}.log",
        cwd=chain.dir,
    )
    chain.extra.append(proc)
    return proc


def test_wrong_secret_is_refused_and_logged(chain) -> None:  # type: ignore[no-untyped-def]
    creds = json.loads((chain.dir / "creds.json").read_text())
    creds["TunnelSecret"] = "A" * len(creds["TunnelSecret"])
    bad = chain.dir / "bad-creds.json"
    bad.write_text(json.dumps(creds))
    bad.chmod(0o600)
    proc = _run_connector(chain, chain.connector_config("wrong.yml", credentials_file=str(bad)))
    proc.wait_for_log("authentication failed", 30)  # what a stranger is told, whatever failed
    chain.edge.wait_for_log("refused connector from 127.0.0.1")
    chain.edge.wait_for_log("wrong secret for tunnel demo")  # the detail: the edge's log only
    assert "wrong secret for tunnel" not in proc.log()
    assert "registered connIndex" not in proc.log()
    assert creds["TunnelSecret"] not in chain.edge.log() + proc.log()
    stop(proc.proc)


def test_unknown_tunnel_is_refused(chain) -> None:  # type: ignore[no-untyped-def]
    creds = json.loads((chain.dir / "creds.json").read_text())
    creds["TunnelID"] = "00000000-0000-4000-8000-000000000000"
    creds["TunnelName"] = "ghost"
    ghost = chain.dir / "ghost-creds.json"
    ghost.write_text(json.dumps(creds))
    ghost.chmod(0o600)
    proc = _run_connector(
        chain, chain.connector_config("ghost.yml", credentials_file=str(ghost), tunnel="ghost")
    )
    proc.wait_for_log("authentication failed", 30)
    chain.edge.wait_for_log("unknown tunnel 00000000-0000-4000-8000-000000000000")
    assert "registered connIndex" not in proc.log() and "unknown tunnel" not in proc.log()
    stop(proc.proc)


def test_a_tunnel_claiming_another_tunnels_hostname_is_refused(chain) -> None:  # type: ignore[no-untyped-def]
    made = tunnel_cli(
        "create",
        "intruder",
        "--hostname",
        "intruder.localhost",
        "--config",
        str(chain.dir / "edge.yaml"),
        "--credentials-file",
        "intruder.json",
        cwd=chain.dir,
    )
    assert made.returncode == 0, made.stderr
    config = chain.connector_config(
        "intruder.yml", tunnel="intruder", credentials_file="intruder.json"
    )
    proc = _run_connector(chain, config)  # its ingress claims "localhost", tunnel demo's
    proc.wait_for_log("claims hostname localhost, which belongs to tunnel demo", 30)
    assert "registered connIndex" not in proc.log()
    stop(proc.proc)
    # creating a second tunnel for an owned hostname is refused too
    again = tunnel_cli(
        "create",
        "thief",
        "--hostname",
        "localhost",
        "--config",
        str(chain.dir / "edge.yaml"),
        "--credentials-file",
        "thief.json",
        cwd=chain.dir,
    )
    assert again.returncode == 2 and "demo" in again.stderr


@pytest.mark.parametrize("protocol", ["quic", "http2", "auto"])
def test_post_quantum_connector_against_classical_edge(tmp_path: Path, protocol: str) -> None:
    """--post-quantum: banner, report, no connection, on QUIC and on HTTP/2 (``--post-quantum
    --protocol http2``); under ``auto`` the refusal is not a reason to fall back to http2.
    Without --post-quantum: classical plus a warning."""
    with running_chain(tmp_path, connector=False, connector_policy="prefer") as chain:
        # a second edge listener that accepts only classical groups, sharing the store
        ports = start_classical_edge(chain)
        report_url = f"https://127.0.0.1:{ports[0]}/pq-report"
        strict = _run_connector(
            chain,
            chain.connector_config(
                "strict.yml",
                edge=[f"127.0.0.1:{ports[1]}"],
                ha_connections=1,
                pq_report_url=report_url,
                post_quantum=False,  # the flag says it
            ),
            "--post-quantum",
            "--protocol",
            protocol,
        )
        strict.wait_for_log("POST-QUANTUM TUNNEL CONNECTION FAILED", 30)
        strict.wait_for_log("post-quantum failure report sent", 30)
        # The next attempt (0.25-0.5 s later) is refused the same way, on the same transport.
        strict.wait_for_log("reconnecting in", 10)
        time.sleep(1.0)
        log = strict.log()
        assert "group tried=X25519MLKEM768" in log
        assert "registered connIndex" not in log
        assert "Switching to fallback protocol" not in log
        assert f"Initial protocol {'http2' if protocol == 'http2' else 'quic'}" in log
        stop(strict.proc)
        # Reports are read on the edge's metrics address (ports[2]), never the public one.
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[2]}/pq-report", timeout=10) as resp:
            reports = json.loads(resp.read())
        assert reports and reports[0]["group"] == "X25519MLKEM768"
        assert (
            reports[0]["tunnel_id"]
            == json.loads((chain.dir / "creds.json").read_text())["TunnelID"]
        )  # signed with the tunnel's key
        assert "pq-quic-plugin/" in reports[0]["version"]

        relaxed_yml = chain.connector_config(
            "relaxed.yml",
            edge=[f"127.0.0.1:{ports[1]}"],
            ha_connections=1,
            post_quantum=False,
            protocol=protocol,
        )
        relaxed = _run_connector(chain, relaxed_yml)
        Chain.wait_connector(relaxed, relaxed_yml)
        log = relaxed.log()
        assert "NOT post-quantum" in log and "group=x25519" in log
        assert f"protocol={'http2' if protocol == 'http2' else 'quic'} group=x25519" in log
        stop(relaxed.proc)


@pytest.mark.parametrize(
    "ingress,expect",
    [
        (
            [{"hostname": "a.localhost", "service": "http://127.0.0.1:1"}],
            "last ingress rule must be a catch-all",
        ),
        ([{"service": "htp://127.0.0.1:1"}], "ingress[0].service"),
    ],
)
def test_config_mistakes_name_the_rule_and_key(tmp_path: Path, ingress, expect: str) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yml"
    config.write_text(
        json.dumps(
            {
                "tunnel": "x",
                "edge": "127.0.0.1:7844",
                "credentials-file": "c.json",
                "ingress": ingress,
            },
            indent=1,
        )
    )
    out = tunnel_cli("run", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 2
    assert expect in out.stderr and "config.yml:" in out.stderr


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "tunnel: x\nedge: 127.0.0.1:7844\npost-quantom: true\n"
        "ingress:\n  - service: http_status:404\n"
    )
    out = tunnel_cli("run", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 2
    assert "config.yml:3" in out.stderr and "post-quantom" in out.stderr
    assert "post-quantum" in out.stderr  # the suggestion
