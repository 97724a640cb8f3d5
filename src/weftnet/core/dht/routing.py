"""The Kademlia routing table (Maymounkov & Mazières 2002, sections 2.2 and 4.2).

k-buckets cover ranges of the 256-bit ID space by XOR distance from our ID.
A bucket that is full splits only if its range contains our own ID (section
2.4), so the table holds O(k log N) contacts, densest near ourselves.

Departures from the paper, and why:

* A full bucket does not ping its oldest contact before refusing a new one;
  newcomers wait in a bounded **replacement cache** (section 4.1), and a
  contact is evicted only after ``max_failures`` *consecutive* failed
  requests, not one — a single lost datagram must not cost a good contact.
* **Per-prefix limit**: at most ``per_prefix`` contacts of one bucket may share
  an IPv4 /24 or IPv6 /48, so one operator's address block cannot fill a
  bucket (an eclipse attempt). Nothing is exempt unless configured
  (``exempt``: a loopback test lab lists 127.0.0.0/8 there).
* **ID puzzle**: with ``difficulty`` > 0 a contact enters the table only if
  its node ID passes the S/Kademlia static puzzle (core/puzzle.py), so every
  entry an attacker holds cost it ``2**difficulty`` key generations.
* Every bucket records when it was last touched, for refresh of idle buckets.

Contacts are kept with their integer ID so XOR distance is one operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from weftnet.core.contact import Contact
from weftnet.core.limits import ExemptPrefixes, prefix_key
from weftnet.core.puzzle import meets_puzzle

__all__ = ["RoutingTable", "KBucket", "Entry", "prefix_of"]

ID_BITS = 256


def prefix_of(endpoint: tuple[str, int]) -> str:
    """The address block a contact is counted against: its IPv4 /24 or IPv6 /48."""
    return prefix_key(endpoint[0])


@dataclass(slots=True, eq=False)  # compared by identity: list.remove on a bucket is one scan, not field compares
class Entry:
    contact: Contact
    key: int
    failures: int = 0
    last_seen: float = 0.0


@dataclass
class KBucket:
    lo: int  # inclusive range of node-ID integers
    hi: int
    entries: list = field(default_factory=list)  # least recently seen first
    replacements: list = field(default_factory=list)  # most recent last
    touched: float = 0.0

    def covers(self, key: int) -> bool:
        return self.lo <= key <= self.hi


class RoutingTable:
    def __init__(self, own_key: int, k: int = 20, max_failures: int = 3, per_prefix: int | None = 2,
                 exempt: ExemptPrefixes | None = None, difficulty: int = 0):
        self.own_key = own_key
        self.k = k
        self.max_failures = max_failures
        self.per_prefix = per_prefix
        self.exempt = exempt or ExemptPrefixes()
        self.difficulty = difficulty
        self.buckets: list[KBucket] = [KBucket(0, 2**ID_BITS - 1)]
        self._index: dict[int, Entry] = {}
        self.evictions = 0
        self.prefix_refusals = 0
        self.puzzle_refusals = 0
        #: Bumped whenever the set of contacts or an endpoint changes (the daemon saves then).
        self.changes = 0

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: int) -> bool:
        return key in self._index

    def get(self, key: int) -> Contact | None:
        e = self._index.get(key)
        return e.contact if e is not None else None

    def bucket_for(self, key: int) -> KBucket:
        lo, hi = 0, len(self.buckets) - 1
        while lo < hi:  # buckets are sorted, contiguous ranges
            mid = (lo + hi) // 2
            if key > self.buckets[mid].hi:
                lo = mid + 1
            else:
                hi = mid
        return self.buckets[lo]

    def add(self, contact: Contact, now: float, key: int | None = None) -> bool:
        """Learn (or refresh) a contact. Returns True if it is in the table now."""
        key = contact.node_id.int if key is None else key
        if key == self.own_key:
            return False
        entry = self._index.get(key)
        bucket = self.bucket_for(key)
        bucket.touched = now
        if entry is not None:
            entry.failures = 0
            entry.last_seen = now
            if entry.contact.endpoint != contact.endpoint:
                entry.contact = contact
                self.changes += 1
            bucket.entries.remove(entry)
            bucket.entries.append(entry)
            return True
        if self.difficulty and not meets_puzzle(contact.node_id, self.difficulty):
            self.puzzle_refusals += 1
            return False
        while True:
            if len(bucket.entries) < self.k:
                if not self._prefix_ok(bucket, contact):
                    self.prefix_refusals += 1
                    return False
                entry = Entry(contact, key, 0, now)
                bucket.entries.append(entry)
                self._index[key] = entry
                self.changes += 1
                return True
            if bucket.covers(self.own_key) and bucket.lo != bucket.hi:
                self._split(bucket)
                bucket = self.bucket_for(key)
                continue
            self._add_replacement(bucket, contact, key)
            return False

    def _prefix_ok(self, bucket: KBucket, contact: Contact) -> bool:
        if self.per_prefix is None or self.exempt.covers(contact.endpoint[0]):
            return True
        p = prefix_of(contact.endpoint)
        return sum(1 for e in bucket.entries if prefix_of(e.contact.endpoint) == p) < self.per_prefix

    def _add_replacement(self, bucket: KBucket, contact: Contact, key: int) -> None:
        bucket.replacements = [c for c in bucket.replacements if c.node_id.int != key]
        bucket.replacements.append(contact)
        if len(bucket.replacements) > self.k:
            bucket.replacements.pop(0)

    def _split(self, bucket: KBucket) -> None:
        mid = (bucket.lo + bucket.hi) // 2
        left = KBucket(bucket.lo, mid, touched=bucket.touched)
        right = KBucket(mid + 1, bucket.hi, touched=bucket.touched)
        for e in bucket.entries:
            (left if e.key <= mid else right).entries.append(e)
        for c in bucket.replacements:
            (left if c.node_id.int <= mid else right).replacements.append(c)
        i = self.buckets.index(bucket)
        self.buckets[i : i + 1] = [left, right]

    def fail(self, key: int) -> bool:
        """A request to this contact failed. Returns True if it was evicted."""
        entry = self._index.get(key)
        if entry is None:
            return False
        entry.failures += 1
        if entry.failures < self.max_failures:
            return False
        bucket = self.bucket_for(key)
        bucket.entries.remove(entry)
        del self._index[key]
        self.evictions += 1
        self.changes += 1
        while bucket.replacements:
            c = bucket.replacements.pop()
            if self._prefix_ok(bucket, c) and c.node_id.int not in self._index:
                e = Entry(c, c.node_id.int, 0, entry.last_seen)
                bucket.entries.append(e)
                self._index[e.key] = e
                break
        return True

    def remove(self, key: int) -> None:
        entry = self._index.pop(key, None)
        if entry is not None:
            self.bucket_for(key).entries.remove(entry)
            self.changes += 1

    def closest(self, target: int, n: int | None = None, exclude: int | None = None) -> list[Contact]:
        """The n contacts nearest to ``target`` by XOR.

        Buckets are aligned power-of-two blocks of the ID space, and XOR with
        the target maps each block onto another aligned block, so the blocks
        are totally ordered by distance: visit them nearest first and stop
        once n contacts are in hand.
        """
        n = self.k if n is None else n
        blocks = sorted(((b.lo ^ target) & ~(b.hi - b.lo), i) for i, b in enumerate(self.buckets) if b.entries)
        found: list[tuple[int, int]] = []
        for _, i in blocks:
            found.extend(sorted((e.key ^ target, e.key) for e in self.buckets[i].entries if e.key != exclude))
            if len(found) >= n:
                break
        return [self._index[key].contact for _, key in found[:n]]

    def contacts(self) -> list[Contact]:
        return [e.contact for b in self.buckets for e in b.entries]

    def idle_buckets(self, now: float, interval: float) -> list[KBucket]:
        return [b for b in self.buckets if now - b.touched >= interval]
