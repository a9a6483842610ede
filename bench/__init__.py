"""Benchmarks for pq-quic-plugin: ``python -m bench [--quick] [--only NAME]``.

Each module compares variants side by side in one run, prints ratios, writes
``docs/bench/NAME.json`` and draws ``docs/bench/NAME.png``. ``--quick`` is a smoke check with
tiny iteration counts that writes to a temporary directory instead. Nothing here is a test.
"""

BENCHMARKS = ("handshake_cpu", "wire", "http3_serving", "tunnel")
