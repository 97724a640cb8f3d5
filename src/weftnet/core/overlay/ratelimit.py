"""Token buckets, alone and per source in a bounded table. Sans-IO: time is an argument."""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

__all__ = ["TokenBucket", "KeyedBuckets"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; each take costs one."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: float, now: float = 0.0):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class KeyedBuckets:
    """One :class:`TokenBucket` per key, at most ``max_keys`` of them (least recently used go first).

    A source evicted from a full table comes back with a full bucket, so the
    bound trades a little precision for memory a spoofed-source flood cannot
    grow; callers put a global bucket in front for that case.
    """

    __slots__ = ("rate", "burst", "max_keys", "_buckets")

    def __init__(self, rate: float, burst: float, max_keys: int):
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float) -> bool:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return b.take(now)
