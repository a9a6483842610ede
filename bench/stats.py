"""Summaries of timing samples: percentiles, the summary every result records, ratios.

Results report medians and tail percentiles rather than means, because scheduling noise on a
shared machine skews the mean; a ratio of two medians is the headline comparison.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of already sorted values."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def summarize(samples: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """Count, median, p90, p99, mean, min and max of ``samples``, rounded to ``digits``."""
    values = sorted(samples)
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits) if values else float("nan"),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "mean": round(statistics.fmean(values), digits) if values else float("nan"),
        "min": round(values[0], digits) if values else float("nan"),
        "max": round(values[-1], digits) if values else float("nan"),
    }


def ratio(a: float, b: float) -> float:
    """``a / b`` to three places; NaN when there is nothing to divide by."""
    return round(a / b, 3) if b else float("nan")
