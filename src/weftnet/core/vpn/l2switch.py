"""The tables of a layer-2 network's switch: learned entries with aging and quotas, and rate limits.

Theory of operation (docs/l2.md, "The switch")
----------------------------------------------
A layer-2 network (core/vpn/l2network.py) learns two things from the frames
its members send it, as an Ethernet switch and an EVPN VTEP with ARP
suppression do:

* which member a MAC address is behind (``MAC -> member``), so unicast frames
  go to one member instead of all;
* which MAC an IP address has (``IP -> (MAC, member)``), snooped from ARP
  and neighbour discovery, so ARP requests and neighbour solicitations are
  answered on the spot instead of crossing the WAN.

Both are an :class:`AgingTable`: entries age out ``age`` seconds after they
were last confirmed (a bridge's ``ageing_time``, 300 s by default), the
table holds at most ``max_entries``, and each owner (a member, or the local
side) at most ``quota`` — a member that sends frames from a million MACs
fills its own quota and nothing else. A full table takes a newcomer by
evicting the least recently confirmed entry of the owner holding the most
(the newcomer's own if that is its owner), so members at their quota cannot
lock a lighter member out (docs/security.md item 17). Entries are kept in
the order they were last confirmed, overall and per owner, so the next
expiry is the first entry and aging costs O(expired), not O(table).

:class:`TokenBucket` limits the frames a network floods (broadcast, unknown
unicast, multicast: head-end replicated to every member) and the flooded
frames it accepts from each member.

Nothing here reads a clock: every call takes ``now``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable, Iterator

__all__ = ["AgingTable", "TokenBucket", "Shares"]


class Shares:
    """Entries per owner of a shared table, and which owner holds the most, in O(1) per change.

    A full table evicts from the owner holding the most (docs/security.md item 17); finding it by a
    scan over every owner would cost O(owners) per eviction, which an attacker forcing evictions
    would make us pay. Owners are kept in buckets by their count, with the highest non-empty count.
    """

    __slots__ = ("counts", "_buckets", "top")

    def __init__(self) -> None:
        self.counts: dict[Hashable, int] = {}
        self._buckets: dict[int, set] = {}
        self.top = 0

    def add(self, owner: Hashable) -> None:
        c = self.counts.get(owner, 0)
        if c:
            b = self._buckets[c]
            b.discard(owner)
            if not b:
                del self._buckets[c]
        self.counts[owner] = c + 1
        b = self._buckets.get(c + 1)
        if b is None:
            b = self._buckets[c + 1] = set()
        b.add(owner)
        if c + 1 > self.top:
            self.top = c + 1

    def remove(self, owner: Hashable) -> None:
        c = self.counts[owner]
        b = self._buckets[c]
        b.discard(owner)
        if not b:
            del self._buckets[c]
            if c == self.top:
                self.top = c - 1  # the owner itself now holds c - 1 (or none, and then nobody holds more)
        if c == 1:
            del self.counts[owner]
        else:
            self.counts[owner] = c - 1
            b = self._buckets.get(c - 1)
            if b is None:
                b = self._buckets[c - 1] = set()
            b.add(owner)

    def drop(self, owner: Hashable) -> None:
        """Forget ``owner`` and all its entries at once."""
        c = self.counts.pop(owner, 0)
        if c:
            b = self._buckets[c]
            b.discard(owner)
            if not b:
                del self._buckets[c]
                if c == self.top:
                    self.top = max(self._buckets, default=0)

    def heaviest(self, owner: Hashable) -> Hashable:
        """The owner holding the most (``owner`` itself if it holds as many)."""
        if self.counts.get(owner, 0) >= self.top:
            return owner
        return next(iter(self._buckets[self.top]))


class AgingTable:
    """``key -> value`` with an owner per entry, aging, a total bound and a per-owner quota.

    Counters in :attr:`stats`: ``learned`` (new entries), ``moved`` (an
    entry's owner changed: a MAC or address moved to another member),
    ``aged`` (expired), ``quota`` (refused: the owner is at its quota),
    ``full`` (the table was full: the heaviest owner's oldest entry made
    room), ``removed`` (with their owner).
    """

    #: An entry confirmed again within this many seconds is not moved in the
    #: aging order (a busy flow confirms its MAC on every frame).
    REFRESH_GRANULARITY = 1.0

    def __init__(self, max_entries: int, quota: int, age: float):
        if max_entries < 1 or quota < 1 or age <= 0:
            raise ValueError("an aging table needs a positive size, quota and age")
        self.max_entries = max_entries
        self.quota = quota
        self.age = float(age)
        # key -> [owner, value, last confirmed]; ordered by last confirmation
        self._entries: OrderedDict[bytes, list] = OrderedDict()
        self._per_owner: dict[Hashable, OrderedDict[bytes, None]] = {}  # owner -> its keys, same order
        self._shares = Shares()
        self.stats = dict.fromkeys(("learned", "moved", "aged", "quota", "full", "evicted", "removed"), 0)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def count(self, owner: Hashable) -> int:
        mine = self._per_owner.get(owner)
        return len(mine) if mine is not None else 0

    def learn(self, key: bytes, owner: Hashable, value: Any, now: float) -> bool:
        """Add or confirm ``key``; False if refused (the owner is at its quota)."""
        e = self._entries.get(key)
        if e is not None:
            if e[0] == owner:
                e[1] = value
                if now - e[2] >= self.REFRESH_GRANULARITY:
                    e[2] = now
                    self._entries.move_to_end(key)
                    self._per_owner[owner].move_to_end(key)
                return True
            if self.count(owner) >= self.quota:
                self.stats["quota"] += 1
                return False
            self._dec(e[0], key)
            self.stats["moved"] += 1
            e[0], e[1], e[2] = owner, value, now
            self._inc(owner, key)
            self._entries.move_to_end(key)
            return True
        if self.count(owner) >= self.quota:
            self.stats["quota"] += 1
            return False
        if len(self._entries) >= self.max_entries:
            self.stats["full"] += 1
            self._make_room(owner, now)
        self._entries[key] = [owner, value, now]
        self._inc(owner, key)
        self.stats["learned"] += 1
        return True

    def _make_room(self, owner: Hashable, now: float) -> None:
        """Evict one entry of a full table: an aged one if there is, else the least recently confirmed
        entry of the owner holding the most (``owner``'s own on a tie)."""
        first, e = next(iter(self._entries.items()))
        if now - e[2] >= self.age:
            victim = first
            self.stats["aged"] += 1
        else:
            victim = next(iter(self._per_owner[self._shares.heaviest(owner)]))
            self.stats["evicted"] += 1
        self._dec(self._entries.pop(victim)[0], victim)

    def get(self, key: bytes, now: float) -> tuple[Hashable, Any] | None:
        """``(owner, value)`` of a live entry, or None (an entry past its age counts as gone)."""
        e = self._entries.get(key)
        if e is None or now - e[2] >= self.age:
            return None
        return e[0], e[1]

    def forget(self, key: bytes) -> None:
        e = self._entries.pop(key, None)
        if e is not None:
            self._dec(e[0], key)

    def remove_owner(self, owner: Hashable) -> int:
        """Drop every entry of ``owner`` (a member that left); returns how many."""
        mine = self._per_owner.pop(owner, None)
        if not mine:
            return 0
        self._shares.drop(owner)
        for k in mine:
            del self._entries[k]
        self.stats["removed"] += len(mine)
        return len(mine)

    def expire(self, now: float) -> int:
        """Remove entries not confirmed for ``age`` seconds; returns how many."""
        n = 0
        while self._entries:
            key, e = next(iter(self._entries.items()))
            if now - e[2] < self.age:
                break
            del self._entries[key]
            self._dec(e[0], key)
            n += 1
        self.stats["aged"] += n
        return n

    def next_expiry(self) -> float | None:
        if not self._entries:
            return None
        return next(iter(self._entries.values()))[2] + self.age

    def items(self, now: float) -> Iterator[tuple[bytes, Hashable, Any, float]]:
        """``(key, owner, value, age in seconds)`` of every entry, oldest confirmation first."""
        for key, (owner, value, seen) in self._entries.items():
            yield key, owner, value, now - seen

    def _inc(self, owner: Hashable, key: bytes) -> None:
        mine = self._per_owner.get(owner)
        if mine is None:
            mine = self._per_owner[owner] = OrderedDict()
        mine[key] = None
        self._shares.add(owner)

    def _dec(self, owner: Hashable, key: bytes) -> None:
        mine = self._per_owner.get(owner)
        if mine is not None and mine.pop(key, 0) is None:
            self._shares.remove(owner)
            if not mine:
                del self._per_owner[owner]


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; :meth:`take` spends one if there is one."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float):
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = now

    def take(self, now: float) -> bool:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
