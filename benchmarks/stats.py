"""Latency percentiles (nearest-rank on sorted samples, so p99 is an observed value)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of samples at or below."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """{"p50": .., "p95": .., "p99": ..}, empty when there are no values."""
    if not values:
        return {}
    return {f"p{q}": percentile(values, q) for q in PERCENTILES}
