"""Read one value from a running process's Prometheus ``/metrics`` page."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def gauge(metrics_port: int, name: str) -> float:
    """One unlabelled gauge from the ``/metrics`` page on ``metrics_port`` (0.0 if absent)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        for family in text_string_to_metric_families(resp.read().decode()):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
    return 0.0
