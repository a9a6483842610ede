"""docs/tunnel.md's quick start, run exactly as written, from an empty directory.

The quick start used to work only from the repository root (``cd examples/asgi_app``,
``../../certs``), and its ``--url`` form could not pass the edge's CA or the origin's. Here
the blocks marked ``<!-- quickstart: NAME -->`` are copied out of the page unchanged and run
by ``bash`` in an empty temporary directory, after activating the repository's virtual
environment as the page says, with ``HOME`` in the temporary directory (``pq-tunnel create``
writes the credentials to ``~/.pq-tunnel``, where ``run demo`` must find them).

The page uses fixed ports (8443, 7844, 9100, 8000, 9200), as a reader would. So that the test
runs them verbatim without fighting other tests for those ports, the whole quick start runs in
fresh network and PID namespaces (``unshare``, as root): its loopback is its own, and when the
test ends, killing ``unshare`` kills every process the quick start started. A probe started
beside it waits until a request through the tunnel reaches the example app, and records what
``pq-tunnel list`` and ``info`` say.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "tunnel.md"
BLOCK = re.compile(r"<!-- quickstart: ([\w-]+) -->\n```sh\n(.*?)```", re.S)

#: Runs beside the quick start, inside its namespaces: waits for the tunnel to carry a
#: request to the example app, then records the answer and what the CLI shows.
PROBE = r"""
cd "$1"
for i in $(seq 1 600); do
    if [ -f certs/ca.pem ] && curl -sf --cacert certs/ca.pem \
            -o "$2/answer.json" https://localhost:8443/api/connection; then
        pq-tunnel list --config edge.yaml > "$2/list.txt" 2>&1
        pq-tunnel info demo --config edge.yaml --json > "$2/info.json" 2>&1
        break
    fi
    sleep 0.2
done
touch "$2/done"
"""


def quickstart_blocks() -> dict[str, str]:
    blocks = dict(BLOCK.findall(DOC.read_text()))
    assert {"setup", "run-config", "run-url"} <= set(blocks), sorted(blocks)
    return blocks


def _namespaces_available() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def test_the_page_marks_its_quick_start_blocks() -> None:
    """The blocks the e2e test runs are there and are the quick start a reader follows: no
    path into the repository except through the activated venv, and the run blocks use the
    credentials ``create`` put in ``~/.pq-tunnel`` (no --credentials-file)."""
    blocks = quickstart_blocks()
    text = "".join(blocks.values())
    assert "../../" not in text and "cd examples" not in text
    assert "--credentials-file" not in text and "credentials-file:" not in text
    assert "--ca-file certs/ca.pem" in blocks["run-url"]
    assert "--origin-ca-file certs/ca.pem" in blocks["run-url"]


@pytest.mark.skipif(not _namespaces_available(), reason="needs root and unshare")
@pytest.mark.parametrize("run_block", ["run-config", "run-url"])
def test_quick_start_runs_as_written_from_an_empty_directory(
    tmp_path: Path, run_block: str
) -> None:
    blocks = quickstart_blocks()
    work, probe_out, home = tmp_path / "pq-try", tmp_path / "probe", tmp_path / "home"
    for d in (work, probe_out, home):
        d.mkdir()
    (tmp_path / "quickstart.sh").write_text(blocks["setup"] + blocks[run_block])
    (tmp_path / "probe.sh").write_text(PROBE)
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(
        "ip link set lo up\n"
        f". {ROOT}/.venv/bin/activate\n"
        f"cd {work}\n"
        f"bash {tmp_path}/probe.sh {work} {probe_out} &\n"
        f". {tmp_path}/quickstart.sh\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNNEL_", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    log = tmp_path / "quickstart.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "bash", str(wrapper)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: (probe_out / "done").exists() or proc.poll() is not None,
                timeout=150,
                what="the quick start to carry a request",
                interval=0.2,
            )
        finally:
            proc.kill()  # --kill-child: the namespace's first process, and so all of it, dies
            proc.wait(timeout=30)
    said = log.read_text(errors="replace")
    answer_file = probe_out / "answer.json"
    assert answer_file.exists(), f"no answer through the tunnel; the quick start said:\n{said}"
    answer = json.loads(answer_file.read_text())
    hops = {hop["hop"]: hop for hop in answer["hops"]}
    assert hops["edge-connector"]["group"] == "X25519MLKEM768", answer
    assert hops["connector-origin"]["group"] == "X25519MLKEM768", answer
    assert hops["connector-origin"]["tls"] is True, answer
    credentials = list((home / ".pq-tunnel").glob("*.json"))
    assert len(credentials) == 1 and oct(credentials[0].stat().st_mode & 0o777) == "0o600"
    listing = (probe_out / "list.txt").read_text()
    assert "demo" in listing and "X25519MLKEM768" in listing, listing
    info = json.loads((probe_out / "info.json").read_text())
    assert info["connectors"] and info["connectors"][0]["connections"], info
    assert {c["group"] for c in info["connectors"][0]["connections"]} == {"X25519MLKEM768"}
