"""Benchmarks for pq-quic-plugin: ``python -m bench [--quick] [--only NAME]``.

Each module compares variants side by side in one run, prints ratios, writes
``docs/bench/NAME.json`` and draws ``docs/bench/NAME.png``. ``--quick`` is a smoke check with
tiny iteration counts that writes to a temporary directory instead. Nothing here is a test.

The shared pieces, one job each: :mod:`.machine` (what produced a result), :mod:`.processes`
(CPU and memory of processes, from /proc), :mod:`.servers` (server subprocesses),
:mod:`.stats`, :mod:`.pairing` (ratios of back-to-back slices), :mod:`.load` (closed-loop
request load), :mod:`.certs`, :mod:`.configs` (aioquic client/server pairs),
:mod:`.sansio_pump` (QUIC in memory), :mod:`.tls_pump` (TLS over memory BIOs),
:mod:`.tls_echo` (a TLS echo server process), :mod:`.tcp_clients` (httpx and curl),
:mod:`.stack_internals` (the private names of aioquic and qh3 the benchmarks peek at),
:mod:`.tls_messages` (TLS messages out of CRYPTO frames), :mod:`.delay_relay` (a UDP relay
that adds delay), :mod:`.ssh_tunnel` (the ``ssh -R`` comparison), :mod:`.report` (console
tables), :mod:`.results` (JSON files) and :mod:`.plots`.
"""

from pathlib import Path

BENCHMARKS = (
    "handshake_cpu",
    "handshake_auth",
    "tcp_handshake",
    "wire",
    "http3_serving",
    "tcp_serving",
    "tunnel",
    "tunnel_idle_memory",
    "tunnel_relay",
)

ROOT = Path(__file__).resolve().parent.parent
"""The repository: servers run from here (``bench.asgi_app:app``), full results go below it."""
