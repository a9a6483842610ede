"""A private sshd and an ``ssh -N -R`` reverse tunnel through it: what pq-tunnel is compared to.

An OpenSSH reverse tunnel is the usual way to publish a local port without a tunnel service, and
its key exchange is post-quantum too (sntrup761x25519, mlkem768x25519), so it is the fair
baseline. Both run as children of the benchmark on 127.0.0.1 with throw-away keys; when OpenSSH
is missing or does not come up, :class:`Skipped` says why instead of a number being guessed.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.loopback import Process, free_port, start, stop

from .processes import process_tree, rss_mb

PQ_KEX = ("mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com")
"""OpenSSH's post-quantum key exchanges, preferred first (mlkem768x25519 from OpenSSH 9.9)."""


class Skipped(RuntimeError):
    """The ssh rows cannot run here; the message says why."""


def _ssh_rss(sshd: Process, client: Process) -> dict[str, float]:
    sessions = [p for p in process_tree([sshd.proc.pid]) if p != sshd.proc.pid]
    return {
        "ssh_client_rss_mb": rss_mb(client.proc.pid),
        "sshd_connection_rss_mb": round(sum(rss_mb(p) for p in sessions), 1),
    }


@contextlib.contextmanager
def ssh_reverse_tunnel(directory: Path, target_port: int) -> Iterator[dict[str, Any]]:
    """A private sshd on 127.0.0.1 and ``ssh -N -R`` forwarding a fresh port to ``target_port``.

    Yields what it ran (port, versions, the key exchange and cipher ``ssh -v`` reported, RSS).
    Raises :class:`Skipped` with the reason when OpenSSH is missing or does not come up.
    """
    sshd, ssh, keygen = (
        shutil.which(n, path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        for n in ("sshd", "ssh", "ssh-keygen")
    )
    if not (sshd and ssh and keygen):
        raise Skipped("OpenSSH not installed (apt-get install openssh-server openssh-client)")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
            capture_output=True,
        )
    (directory / "authorized_keys").write_bytes((directory / "client_key.pub").read_bytes())
    offered = subprocess.run([ssh, "-Q", "kex"], capture_output=True, text=True).stdout.split()
    kex = [k for k in PQ_KEX if k in offered]
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    port, forwarded = free_port(), free_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {directory / 'host_key'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PidFile none",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "PrintMotd no",
                *([f"KexAlgorithms {','.join(kex)}"] if kex else []),
                "",
            ]
        )
    )
    server = start([sshd, "-D", "-e", "-f", str(config)], directory / "sshd.log")
    client: Process | None = None
    try:
        try:
            server.wait_for_log("Server listening on", 10)
        except (RuntimeError, TimeoutError) as exc:
            raise Skipped(f"sshd did not start: {server.log()[-500:].strip()}") from exc
        client = start(
            [
                ssh,
                "-v",
                "-N",
                "-F",
                "/dev/null",
                "-i",
                str(directory / "client_key"),
                "-p",
                str(port),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                *(["-o", f"KexAlgorithms={','.join(kex)}"] if kex else []),
                "-R",
                f"127.0.0.1:{forwarded}:127.0.0.1:{target_port}",
                f"{getpass.getuser()}@127.0.0.1",
            ],
            directory / "ssh.log",
        )
        try:
            client.wait_for_log("remote forward success", 15)
        except (RuntimeError, TimeoutError) as exc:
            raise Skipped(f"ssh -R did not come up: {client.log()[-800:].strip()}") from exc
        log = client.log()
        used = re.search(r"kex: algorithm: (\S+)", log)
        cipher = re.search(r"kex: server->client cipher: (\S+) MAC: (\S+)", log)
        time.sleep(0.5)  # let both settle before their memory is read
        yield {
            "port": forwarded,
            "sshd_port": port,
            "openssh": subprocess.run([ssh, "-V"], capture_output=True, text=True).stderr.strip(),
            "kex": used.group(1) if used else None,
            "post_quantum": bool(used and used.group(1) in PQ_KEX),
            "cipher": f"{cipher.group(1)} (MAC {cipher.group(2)})" if cipher else None,
            "pids": [server.proc.pid, client.proc.pid],
            **_ssh_rss(server, client),
        }
    finally:
        for proc in (client, server):
            if proc is not None:
                stop(proc.proc, timeout=5)
