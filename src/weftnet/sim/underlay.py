"""The simulated Internet underneath the overlay: latency, jitter, loss, partitions.

Each node gets synthetic network coordinates, in the spirit of Vivaldi
(Dabek et al., SIGCOMM 2004): a point on a plane, in milliseconds, plus a
"height" for its access link. Nodes are spread around a handful of region
centres. The one-way latency between two nodes is

    (distance(a, b) + height(a) + height(b)) / 2 · (1 + jitter·U)

so a round trip inside a region takes a few milliseconds and one across the
world 100–300 ms (the calibration test checks both ranges). Coordinates live
in flat ``array`` columns — 13 bytes a node — so a million nodes cost a few
megabytes.

Partitions block all traffic between two sets of regions until they heal.
"""

from __future__ import annotations

import math
import random
from array import array
from dataclasses import dataclass

__all__ = ["UnderlayConfig", "Underlay", "REGION_CENTRES"]

#: Region centres (ms on the plane), placed so that inter-region RTTs span
#: roughly 40-290 ms: e.g. Europe, US East, US West, South America, Asia, Oceania.
REGION_CENTRES = [(0.0, 0.0), (-56.0, 14.0), (-105.0, 21.0), (-49.0, -84.0), (105.0, 7.0), (147.0, -77.0)]


@dataclass
class UnderlayConfig:
    regions: int = 6
    #: Spread of nodes around their region centre (ms, standard deviation).
    region_spread_ms: float = 2.0
    #: Access-link height range (ms).
    min_access_ms: float = 0.5
    max_access_ms: float = 3.0
    #: Relative jitter: each one-way delay is multiplied by 1 + jitter * U(0, 1).
    jitter: float = 0.1
    #: Probability that any one message is lost.
    loss: float = 0.0


class Underlay:
    def __init__(self, config: UnderlayConfig, rng: random.Random):
        if not 1 <= config.regions <= len(REGION_CENTRES):
            raise ValueError(f"regions must be 1..{len(REGION_CENTRES)}")
        self.config = config
        self.rng = rng
        self.x = array("f")
        self.y = array("f")
        self.h = array("f")
        self.region = array("B")
        self._blocked: set[tuple[int, int]] = set()

    def add_node(self) -> int:
        c = self.config
        r = self.rng.randrange(c.regions)
        cx, cy = REGION_CENTRES[r]
        self.x.append(cx + self.rng.gauss(0.0, c.region_spread_ms))
        self.y.append(cy + self.rng.gauss(0.0, c.region_spread_ms))
        self.h.append(self.rng.uniform(c.min_access_ms, c.max_access_ms))
        self.region.append(r)
        return len(self.x) - 1

    def base_rtt(self, a: int, b: int) -> float:
        """Round-trip time in seconds, without jitter."""
        d = math.hypot(self.x[a] - self.x[b], self.y[a] - self.y[b])
        return (d + self.h[a] + self.h[b]) / 1000.0

    def one_way(self, a: int, b: int) -> float | None:
        """A sampled one-way delay in seconds, or None if the message is lost."""
        if self._blocked and (self.region[a], self.region[b]) in self._blocked:
            return None
        rng = self.rng
        if self.config.loss and rng.random() < self.config.loss:
            return None
        return self.base_rtt(a, b) / 2.0 * (1.0 + self.config.jitter * rng.random())

    def partition(self, side_a: list[int], side_b: list[int]) -> None:
        for ra in side_a:
            for rb in side_b:
                self._blocked.add((ra, rb))
                self._blocked.add((rb, ra))

    def heal(self) -> None:
        self._blocked.clear()

    def memory_bytes(self) -> int:
        return sum(col.itemsize * len(col) for col in (self.x, self.y, self.h, self.region))
