"""The development harness (not in the wheel): loopback processes for the demo, the tests and
the benchmarks, and the demo itself. Run from a clone: ``python -m tools.demo``."""
