"""Benchmarks for pq-quic-plugin: ``python -m bench [--quick] [--only NAME]``.

Each module compares variants side by side in one run, prints ratios, writes
``docs/bench/NAME.json`` and draws ``docs/bench/NAME.png``. ``--quick`` is a smoke check with
tiny iteration counts that writes to a temporary directory instead. Nothing here is a test.

The shared pieces, one job each: :mod:`.machine` (what produced a result), :mod:`.processes`
(CPU and memory of processes, from /proc), :mod:`.stats`, :mod:`.load` (closed-loop request
load), :mod:`.certs`, :mod:`.configs` (aioquic client/server pairs), :mod:`.sansio_pump`,
:mod:`.stack_internals` (the private names of aioquic and qh3 the benchmarks peek at),
:mod:`.report` (console tables), :mod:`.results` (JSON files) and :mod:`.plots`.
"""

from pathlib import Path

BENCHMARKS = ("handshake_cpu", "wire", "http3_serving", "tunnel")

ROOT = Path(__file__).resolve().parent.parent
"""The repository: servers run from here (``bench.asgi_app:app``), full results go below it."""
