"""``pq-tunnel list`` and ``info``: aligned columns, creation times, and no connections of an
edge that is gone.

``list`` used to pad its columns to fixed widths (a long name or hostname list pushed the rest
out of line), showed no creation time, and listed the connections in ``STORE.live.json`` even
after the edge that wrote it had been killed. These tests write the live file with the edge's
own writer (:class:`LiveFile`) and run the real commands in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from pq_quic_plugin.tunnel.cli import main
from pq_quic_plugin.tunnel.edge.live_file import STALE_AFTER, LiveFile, live_file_path
from pq_quic_plugin.tunnel.edge.registry import LiveConnection, Registry
from pq_quic_plugin.tunnel.edge.store import TunnelStore
from pq_quic_plugin.tunnel.wire import TunnelConnection

TUNNELS = {"a": ["a.example.test"], "a-much-longer-tunnel-name": ["x.example.test", "*.w.test"]}


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def _store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store with :data:`TUNNELS`; returns its path and each tunnel's ID by name."""
    path = tmp_path / "tunnels.db"
    ids = {}
    with TunnelStore(path) as store:
        for name, hosts in TUNNELS.items():
            ids[name] = store.create(name, hosts)[0].id
    return path, ids


def _live(tunnel_id: str, index: int, group: str) -> LiveConnection:
    async def connect() -> TunnelConnection:  # a protocol object wants a running loop
        return TunnelConnection(QuicConnection(configuration=QuicConfiguration(is_client=True)))

    return LiveConnection(
        tunnel_id=tunnel_id,
        tunnel_name="x",
        connector_id="conn-1",
        conn_index=index,
        connection=asyncio.run(connect()),
        group=group,
        post_quantum=group != "x25519",
        remote="127.0.0.1:5000",
        version="pq-quic-plugin/test",
    )


def _write_live(path: Path, ids: dict[str, str]) -> LiveFile:
    registry = Registry()
    registry.add(_live(ids["a"], 0, "X25519MLKEM768"))
    registry.add(_live(ids["a"], 1, "x25519"))
    live_file = LiveFile(path, registry, edge_id="edge-7", location="rack-2")
    live_file.write()
    return live_file


def _columns(line: str, header: str) -> list[str]:
    """``line`` cut at the offsets where ``header``'s words start."""
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    return [line[a:b].rstrip() for a, b in zip(starts, ends, strict=True)]


def test_list_aligns_columns_and_shows_creation_time(tmp_path: Path) -> None:
    path, ids = _store(tmp_path)
    _write_live(path, ids)
    status, out, _ = _run("list", "--store", str(path))
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "CREATED", "HOSTNAMES", "CONNECTIONS"]
    assert len(rows) == 2
    for row, (name, hosts) in zip(rows, TUNNELS.items(), strict=True):
        cells = _columns(row, header)
        assert cells[0] == ids[name] and cells[1] == name, (header, row)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cells[2]), row
        assert abs(time.mktime(time.strptime(cells[2], "%Y-%m-%dT%H:%M:%SZ")) - time.time()) < (
            86400 + 60
        )
        assert sorted(cells[3].split(",")) == sorted(hosts), row
        assert row == row.rstrip()
    assert _columns(rows[0], header)[4] == "#0 X25519MLKEM768, #1 x25519"
    assert _columns(rows[1], header)[4] == "-"
    listed = json.loads(_run("list", "--store", str(path), "--json")[1])
    assert [t["name"] for t in listed] == list(TUNNELS)
    assert all(re.fullmatch(r"\d{4}-.*Z", t["created"]) for t in listed)
    assert [c["conn_index"] for c in listed[0]["connections"]] == [0, 1]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def _rewrite(path: Path, **changes: object) -> None:
    live = live_file_path(path)
    data = json.loads(live.read_text())
    data.update(changes)
    live.write_text(json.dumps(data))


def test_list_and_info_hide_connections_of_an_edge_that_is_gone(tmp_path: Path) -> None:
    path, ids = _store(tmp_path)
    _write_live(path, ids)
    shown = json.loads(_run("list", "--store", str(path), "--json")[1])
    assert shown[0]["connections"], "a live edge's connections are shown"

    _rewrite(path, pid=_dead_pid())  # the edge was killed (SIGKILL): its file stays behind
    for argv in (["list"], ["list", "--json"]):
        out = _run(*argv, "--store", str(path))[1]
        assert "X25519MLKEM768" not in out, out
    info = json.loads(_run("info", "a", "--store", str(path), "--json")[1])
    assert info["edge"] is None and info["connectors"] == []

    _write_live(path, ids)
    _rewrite(path, updated=time.time() - STALE_AFTER - 5)  # hung, or another machine's pid
    assert "X25519MLKEM768" not in _run("list", "--store", str(path))[1]


def test_info_shows_connectors_connections_edge_groups_protocol_versions(tmp_path: Path) -> None:
    path, ids = _store(tmp_path)
    _write_live(path, ids)
    status, out, _ = _run("info", "a", "--store", str(path), "--json")
    assert status == 0
    info = json.loads(out)
    assert info["name"] == "a" and info["id"] == ids["a"] and info["hostnames"] == TUNNELS["a"]
    assert info["edge"]["edge_id"] == "edge-7" and info["edge"]["location"] == "rack-2"
    (connector,) = info["connectors"]
    assert connector["connector_id"] == "conn-1"
    assert connector["version"] == "pq-quic-plugin/test"
    conns = connector["connections"]
    assert [(c["conn_index"], c["group"], c["post_quantum"]) for c in conns] == [
        (0, "X25519MLKEM768", True),
        (1, "x25519", False),
    ]
    assert {c["protocol"] for c in conns} == {"quic"} and {c["edge_id"] for c in conns} == {
        "edge-7"
    }
    status, text, _ = _run("info", "a", "--store", str(path))
    assert status == 0
    for words in ("edge-7", "conn-1", "pq-quic-plugin/test", "X25519MLKEM768", "quic", "#1"):
        assert words in text, text
    status, _, err = _run("info", "nope", "--store", str(path))
    assert status == 2 and "known tunnels: a, a-much-longer-tunnel-name" in err
