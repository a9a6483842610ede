"""Is a process ready to serve? Ask its sockets, never its log.

A log line says a process *meant* to listen; a probe says a client can reach it now, and keeps
working when someone rewords a message. Three probes cover everything the harness starts:

* :func:`tcp_accepts`: a TCP listener accepts a connection;
* :func:`quic_answers`: a QUIC listener answers a packet of an unknown QUIC version with a
  Version Negotiation packet (RFC 9000 6). Every QUIC server must do that without creating a
  connection, so the probe leaves no state behind, no log line and no handshake in any metric;
* :func:`ready_connections`: the pq-tunnel connector's or edge's ``/ready`` on its metrics
  address, which answers 200 once at least one tunnel connection is registered.

:func:`wait_ready` polls one of them and fails clearly: if the process exits first, with its exit
code; on timeout, with what was awaited; in both cases with the end of the process's log.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from .processes import Process

#: A version of the form 0x?a?a?a?a is reserved to exercise version negotiation (RFC 9000 15).
PROBE_VERSION = b"\x1a\x2a\x3a\x4a"
#: Servers ignore long-header datagrams below the minimum Initial size, so the probe pads to it.
MIN_INITIAL_SIZE = 1200


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _probe_packet() -> bytes:
    """A long-header packet with a reserved version and fresh 8-byte connection IDs."""
    dcid, scid = os.urandom(8), os.urandom(8)
    head = b"\xc0" + PROBE_VERSION + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    return head + bytes(MIN_INITIAL_SIZE - len(head))


def quic_answers(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether a QUIC listener on ``host:port`` answers with a Version Negotiation packet."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.send(_probe_packet())
            reply = s.recv(65535)
        except OSError:  # nothing bound there (ICMP port unreachable), or no answer in time
            return False
    # Version Negotiation: a long header whose version field is zero.
    return len(reply) >= 7 and reply[0] & 0x80 == 0x80 and reply[1:5] == b"\0\0\0\0"


def ready_connections(host: str, port: int, timeout: float = 1.0) -> int:
    """How many tunnel connections ``/ready`` on the metrics address reports (0 if it is down)."""
    url = f"http://{host}:{port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(json.loads(resp.read()).get("readyConnections", 0))
    except urllib.error.HTTPError:  # 503: up, but no tunnel connection yet
        return 0
    except (OSError, ValueError):
        return 0


def wait_ready(
    process: Process, check: Callable[[], bool], what: str, timeout: float = 30.0
) -> float:
    """Poll ``check`` until it holds; return the seconds it took.

    Raises ``RuntimeError`` if the process exits first and ``TimeoutError`` after ``timeout``
    seconds, both naming ``what`` was awaited and showing the end of the process's log.
    """
    started = time.monotonic()
    while True:
        if process.exited():
            raise RuntimeError(
                f"the process exited ({process.proc.returncode}) while waiting for {what}; "
                f"its log ({process.log_path}) ends:\n{process.log_tail()}"
            )
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what}; "
                f"the log ({process.log_path}) ends:\n{process.log_tail()}"
            )
        time.sleep(0.05)


def wait_listening(
    process: Process, host: str, port: int, quic: bool = True, timeout: float = 30.0
) -> None:
    """Wait until ``host:port`` accepts TCP and, with ``quic``, answers QUIC on the same port."""
    wait_ready(
        process, lambda: tcp_accepts(host, port), f"TCP connections on {host}:{port}", timeout
    )
    if quic:
        wait_ready(
            process, lambda: quic_answers(host, port), f"QUIC answers on udp {host}:{port}", timeout
        )
