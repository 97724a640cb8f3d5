"""Latency histograms a core keeps for its operations (read by the metrics endpoint).

Counts per fixed bucket, per ``(kind, outcome)`` label pair: O(1) memory per
pair and O(buckets) per observation, with no samples kept. The bucket bounds
suit network operations from a millisecond to the longest lookup deadline.
The metrics collector (runtime/metrics.py) turns these into Prometheus
histograms at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["LatencyHistogram", "LATENCY_BUCKETS"]

#: Upper bounds in seconds; the last bucket (+Inf) is implicit.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LatencyHistogram:
    """Per label pair: counts per bucket (non-cumulative, +Inf last), sum and count."""

    MAX_SERIES = 64  # label pairs come from code, not from peers; the bound is a guard

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = buckets
        self.series: dict[tuple[str, str], list] = {}  # (kind, outcome) -> [counts, sum]

    def observe(self, kind: str, outcome: str, seconds: float) -> None:
        s = self.series.get((kind, outcome))
        if s is None:
            if len(self.series) >= self.MAX_SERIES:
                return
            s = self.series[(kind, outcome)] = [[0] * (len(self.buckets) + 1), 0.0]
        s[0][bisect_left(self.buckets, seconds)] += 1
        s[1] += max(0.0, seconds)

    def snapshot(self) -> dict[tuple[str, str], tuple[list[int], float]]:
        return {k: (list(v[0]), v[1]) for k, v in self.series.items()}
