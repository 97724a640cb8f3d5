"""Overlay address -> node: the resolution cache of the overlay interface, sans-IO.

Theory of operation (docs/overlay.md, "Resolution")
---------------------------------------------------
An overlay address is ``fd77:6566::/32`` followed by the first 96 bits of a
node ID, so it names exactly one key (a second key with the same 96 bits
would take about 2^96 tries to find). Resolving it means finding a contact
whose key hashes to an ID with those 96 bits: the DHT is asked for the nodes
closest to ``ID prefix || zeros``, and only a contact whose *own* key derives
the address is taken. Which contacts claim to be is irrelevant: a contact's
node ID is computed from its key, never sent, and the Noise handshake that
follows proves the key. So a node that does not hold the key never receives
the address's traffic.

This module keeps what was learned, under bounds a scan of the address space
cannot stretch:

* **positive entries** (address -> node ID, and the contact if a lookup
  found one): at most ``max_entries``, least recently used evicted first,
  dropped after ``ttl`` seconds without use, and at once when the node is
  unreachable (so the next packet looks it up again: it may have moved);
* **negative entries**: a lookup that found nobody is not repeated for
  ``negative_ttl`` seconds; at most ``max_negative`` of them;
* **lookups**: at most ``max_lookups`` at once, and at most ``lookup_rate``
  per second (a token bucket of ``lookup_burst``); a miss beyond that is
  refused, so a sweep over random addresses costs at most a few lookups per
  second, whatever its packet rate;
* **held packets**: while an address is looked up its first packets wait,
  at most ``max_held`` per address and ``max_held_bytes`` in all.

The cache stores nothing it did not check: :meth:`learn` refuses a node
whose ID does not match the address key.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from weftnet.core.contact import Contact
from weftnet.core.identity import NodeId
from weftnet.core.overlay.ratelimit import TokenBucket

__all__ = ["Route", "AddressCache", "HIT", "LOOKUP", "PENDING", "NEGATIVE", "LIMITED", "address_key"]

HIT, LOOKUP, PENDING, NEGATIVE, LIMITED = "hit", "lookup", "pending", "negative", "limited"


def address_key(address: bytes) -> bytes:
    """The 12 node-ID bytes an overlay address (16 bytes) carries."""
    return address[4:16]


@dataclass(slots=True)
class Route:
    """A resolved overlay address."""

    node_id: NodeId
    contact: Contact | None
    last_used: float


class AddressCache:
    """Resolved, failed and in-flight overlay addresses (see the module docstring)."""

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        ttl: float = 3600.0,
        max_negative: int = 4096,
        negative_ttl: float = 15.0,
        lookup_rate: float = 8.0,
        lookup_burst: float = 32.0,
        max_lookups: int = 32,
        max_held: int = 16,
        max_held_bytes: int = 4 << 20,
        now: float = 0.0,
    ):
        self.max_entries = max_entries
        self.ttl = ttl
        self.max_negative = max_negative
        self.negative_ttl = negative_ttl
        self.max_lookups = max_lookups
        self.max_held = max_held
        self.max_held_bytes = max_held_bytes
        self._routes: OrderedDict[bytes, Route] = OrderedDict()
        self._negative: OrderedDict[bytes, float] = OrderedDict()  # key -> expiry
        self._pending: dict[bytes, list[tuple[Any, int]]] = {}  # key -> [(item, size)]
        self._held_bytes = 0
        self._bucket = TokenBucket(lookup_rate, lookup_burst, now)
        self.stats = dict.fromkeys(("hits", "misses", "lookups", "found", "not_found", "refused",
                                    "negative_hits", "held_dropped", "evicted", "expired", "forgotten"), 0)

    def __len__(self) -> int:
        return len(self._routes)

    def __contains__(self, key: bytes) -> bool:
        return key in self._routes

    @property
    def negative_count(self) -> int:
        return len(self._negative)

    @property
    def lookups_in_flight(self) -> int:
        return len(self._pending)

    # -- the fast path -----------------------------------------------------------
    def get(self, key: bytes, now: float) -> Route | None:
        r = self._routes.get(key)
        if r is None:
            return None
        if now - r.last_used >= self.ttl:
            del self._routes[key]
            self.stats["expired"] += 1
            return None
        if now - r.last_used > 1.0:  # LRU order only needs to be roughly right; keep the hit path cheap
            self._routes.move_to_end(key)
            r.last_used = now
        self.stats["hits"] += 1
        return r

    def peek(self, key: bytes, now: float) -> Route | None:
        """What :meth:`get` would return, changing nothing (the data plane's fast path asks
        first, and calls :meth:`get` only once it takes the packet)."""
        r = self._routes.get(key)
        if r is None or now - r.last_used >= self.ttl:
            return None
        return r

    # -- learning and forgetting -----------------------------------------------------
    def learn(self, key: bytes, node_id: NodeId, contact: Contact | None, now: float) -> bool:
        """Install ``node_id`` for ``key``; refused (False) unless the node's ID carries the key."""
        if node_id.raw[:12] != key:
            return False
        old = self._routes.get(key)
        if old is not None and old.node_id == node_id:
            if contact is not None:
                old.contact = contact
            old.last_used = now
            self._routes.move_to_end(key)
        else:
            self._routes[key] = Route(node_id, contact, now)
            while len(self._routes) > self.max_entries:
                self._routes.popitem(last=False)
                self.stats["evicted"] += 1
        self._negative.pop(key, None)
        return True

    def forget(self, node_id: NodeId) -> bool:
        """Drop the entry for ``node_id`` (it was unreachable): the next packet looks it up again."""
        key = node_id.raw[:12]
        r = self._routes.get(key)
        if r is None or r.node_id != node_id:
            return False
        del self._routes[key]
        self.stats["forgotten"] += 1
        return True

    def clear_negative(self, key: bytes) -> None:
        self._negative.pop(key, None)

    # -- misses --------------------------------------------------------------------
    def begin(self, key: bytes, now: float) -> str:
        """What to do about a packet for an unresolved ``key``: LOOKUP (start one now: the
        budget is spent), PENDING (one is running: hold the packet), NEGATIVE (nobody has it,
        recently) or LIMITED (over the lookup budget: drop the packet)."""
        self.stats["misses"] += 1
        if key in self._pending:
            return PENDING
        exp = self._negative.get(key)
        if exp is not None:
            if exp > now:
                self.stats["negative_hits"] += 1
                return NEGATIVE
            del self._negative[key]
        if len(self._pending) >= self.max_lookups or not self._bucket.take(now):
            self.stats["refused"] += 1
            return LIMITED
        self._pending[key] = []
        self.stats["lookups"] += 1
        return LOOKUP

    def hold(self, key: bytes, item: Any, size: int) -> bool:
        """Keep ``item`` until ``key`` is resolved; False (dropped) beyond the bounds."""
        q = self._pending.get(key)
        if q is None or size > self.max_held_bytes:
            self.stats["held_dropped"] += 1
            return False
        while q and (len(q) >= self.max_held or self._held_bytes + size > self.max_held_bytes):
            _, old = q.pop(0)
            self._held_bytes -= old
            self.stats["held_dropped"] += 1
        if self._held_bytes + size > self.max_held_bytes:
            self.stats["held_dropped"] += 1
            return False
        q.append((item, size))
        self._held_bytes += size
        return True

    def finish(self, key: bytes, node_id: NodeId | None, contact: Contact | None, now: float) -> list[Any]:
        """A lookup for ``key`` ended: found ``node_id`` (checked, as :meth:`learn`) or nobody
        (a negative entry). Returns the held items, for the caller to send or refuse."""
        held = self._pending.pop(key, [])
        for _, size in held:
            self._held_bytes -= size
        if node_id is not None and self.learn(key, node_id, contact, now):
            self.stats["found"] += 1
        else:
            self.stats["not_found"] += 1
            self._negative[key] = now + self.negative_ttl
            self._negative.move_to_end(key)
            while len(self._negative) > self.max_negative:
                self._negative.popitem(last=False)
        return [item for item, _ in held]

    def expire(self, now: float, budget: int = 4096) -> None:
        """Drop idle positive entries and expired negative ones (oldest first, bounded work)."""
        n = 0
        while self._routes and n < budget:
            key, r = next(iter(self._routes.items()))
            if now - r.last_used < self.ttl:
                break
            del self._routes[key]
            self.stats["expired"] += 1
            n += 1
        while self._negative and n < budget:
            key, exp = next(iter(self._negative.items()))
            if exp > now:
                break
            del self._negative[key]
            n += 1
