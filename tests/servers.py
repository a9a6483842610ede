"""Test access to the loopback process helpers (in tools/: the demo and benchmarks use them)."""

from tools.loopback import (  # noqa: F401
    EXAMPLE_APP_DIR,
    ROOT,
    Process,
    free_port,
    hypercorn_pq,
    run_cli,
    stop,
)
