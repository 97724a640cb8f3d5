"""The Kademlia routing table (Maymounkov & Mazières 2002, sections 2.2 and 4.2).

k-buckets cover ranges of the 256-bit ID space by XOR distance from our ID.
A bucket that is full splits only if its range contains our own ID (section
2.4), so the table holds O(k log N) contacts, densest near ourselves.

Departures from the paper, and why:

* A full bucket does not ping its oldest contact before refusing a new one;
  newcomers wait in a bounded **replacement cache** (section 4.1), and a
  contact is evicted only after ``max_failures`` *consecutive* failed
  requests, not one — a single lost datagram must not cost a good contact.
  But a newcomer that talks to us takes the slot of an entry whose last
  request failed (``replace_failing``), which waits in the replacement
  cache instead: under churn, full buckets otherwise fill with departed nodes.
* **Per-prefix limit, where there is contention**: a bucket with room (or one
  that splits) takes any contact, so a deployment whose nodes share one IPv4
  /24 or IPv6 /48 (a few VPSs of one provider, a data-centre subnet, a lab)
  finds every node. In a *full* bucket, ``per_prefix`` contacts of one block
  is the share a block is owed: a newcomer whose block holds fewer than that
  takes the slot of an entry of a block holding *more* (that entry goes to the
  replacement cache), and a newcomer whose block already holds ``per_prefix``
  or more never takes a slot from anyone (it waits in the replacement cache).
  So one operator's address block cannot keep a full bucket (an eclipse
  attempt) against contacts from other blocks: each one that arrives takes a
  slot back. The invariant, with a bucket's *excess* the sum over blocks of
  what each holds beyond ``per_prefix``: only a contact entering a free slot
  can raise the excess; one that takes an occupied slot (a displacement, a
  failing entry's slot, ``prefer_nearer``) never does; and a newcomer to a
  full bucket whose block holds fewer than ``per_prefix`` entries, while the
  excess is above zero, always gets in and lowers it by one. Which entry
  leaves: the over-limit entry with the most failures in a row; among equals,
  one of the block holding the most; among those, the newest (the paper's
  bias: a contact that has stayed long is likelier to stay). A known contact
  that moves to another address keeps its slot, unchecked (as before). Nothing is
  exempt unless configured (``exempt``: a loopback test lab lists
  127.0.0.0/8 there; an exempt entry is never over the limit).
* **ID puzzle**: with ``difficulty`` > 0 a contact enters the table only if
  its node ID passes the S/Kademlia static puzzle (core/puzzle.py), so every
  entry an attacker holds cost it ``2**difficulty`` key generations.
* Every bucket records when it was last touched, for refresh of idle buckets.
* A bucket keeps its contacts in the order they entered it (oldest first),
  not re-sorted on every message: nothing here pings the oldest, so the
  order the paper keeps would cost a list move per message for nothing.

Compact on purpose (the simulator holds a million of these): a bucket lists
the ``Contact`` objects themselves (shared with every other table that knows
the node), and failure counts live in a side table that only holds contacts
that have failed lately. The splits only ever happen along our own ID, so the
bucket of a key is found from the length of the prefix it shares with us,
without a search, and a contact by its ID by scanning that bucket's at most k
entries: there is no index by ID (a dict of every contact was ~40 bytes a
contact, the largest table of a node after the sessionless keys). The scan
compares each entry's ``tag`` (the low 8 bits of its ID, one of the
interpreter's shared small ints) before its 256-bit ID, which is an object of
its own and, in a simulator of a million nodes, out of cache: a scan for an
ID the bucket does not hold (a newcomer's first message) reads none of them.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from weftnet.core.contact import Contact
from weftnet.core.limits import NO_ENTRIES, ExemptPrefixes, prefix_key
from weftnet.core.puzzle import meets_puzzle

__all__ = ["RoutingTable", "KBucket", "prefix_of", "nearest"]

ID_BITS = 256


# prefix_key parses the address (microseconds); a full bucket asks it for each of its k entries.
_block_of = lru_cache(maxsize=1 << 16)(prefix_key)


def prefix_of(endpoint: tuple[str, int]) -> str:
    """The address block a contact is counted against: its IPv4 /24 or IPv6 /48."""
    return _block_of(endpoint[0])


def nearest(contacts, target: int, n: int | None = None) -> list[Contact]:
    """``contacts`` nearest to ``target`` first (a stable sort), the first ``n`` of them.

    (Measured on 20 contacts: a sort keyed by a lambda, 4 us, beats ranking
    (distance, position, contact) tuples built by ``map`` in C, 10 us.)"""
    ranked = sorted(contacts, key=lambda c: c.key ^ target)
    return ranked if n is None else ranked[:n]


def _without(entries: list, key: int) -> list:
    """``entries`` without the contact of ID ``key`` (a copy only if it is there)."""
    tag = key & 255
    for c in entries:
        if c.tag == tag and c.key == key:
            return [e for e in entries if e is not c]
    return entries


def _drop(items: list, obj: object) -> None:
    """Remove ``obj`` itself from ``items`` (by identity: no field-by-field compares)."""
    for i, x in enumerate(items):
        if x is obj:
            del items[i]
            return


class KBucket:
    """The contacts that share exactly ``depth`` leading bits with our ID (or, for the
    last bucket, at least ``depth``: it covers our ID). Its range is computed from
    ``own`` and ``depth`` when asked: two 256-bit integers per bucket are what a
    million simulated tables would otherwise spend on it."""

    __slots__ = ("entries", "replacements", "touched", "own", "depth", "last")

    def __init__(self, own: int, depth: int, last: bool, entries: list | None = None,
                 replacements: list | tuple = (), touched: float = 0.0):
        self.own = own
        self.depth = depth
        self.last = last
        self.entries: list = [] if entries is None else entries  # Contacts, oldest first
        self.replacements = replacements  # most recent last; () until the first one
        self.touched = touched

    @property
    def lo(self) -> int:
        """The smallest node-ID integer in the range (inclusive)."""
        d = self.depth
        shift = ID_BITS - d
        base = (self.own >> shift) << shift if d else 0
        if self.last:
            return base
        bit = 1 << (ID_BITS - 1 - d)
        return base | (~self.own & bit)

    @property
    def hi(self) -> int:
        """The largest node-ID integer in the range (inclusive)."""
        free = ID_BITS - self.depth - (0 if self.last else 1)
        return self.lo | ((1 << free) - 1)

    def covers(self, key: int) -> bool:
        return self.lo <= key <= self.hi

    def __repr__(self) -> str:
        return f"KBucket(depth={self.depth}, last={self.last}, entries={len(self.entries)})"


class RoutingTable:
    __slots__ = ("own_key", "replace_failing", "k", "max_failures", "per_prefix", "exempt", "difficulty",
                 "_by_depth", "_failures", "evictions", "prefix_refusals", "puzzle_refusals", "changes",
                 "__dict__")

    def __init__(self, own_key: int, k: int = 20, max_failures: int = 3, per_prefix: int | None = 2,
                 replace_failing: bool = True, exempt: ExemptPrefixes | None = None, difficulty: int = 0):
        self.own_key = own_key
        self.replace_failing = replace_failing
        self.k = k
        self.max_failures = max_failures
        self.per_prefix = per_prefix
        self.exempt = exempt or ExemptPrefixes()
        self.difficulty = difficulty
        # _by_depth[d] holds the IDs that share exactly d leading bits with ours;
        # the last bucket holds all that share at least that many (it covers us).
        self._by_depth: list[KBucket] = [KBucket(own_key, 0, True)]
        self._failures: dict[int, int] = NO_ENTRIES  # only contacts whose last request failed (a dict from the first)
        self.evictions = 0
        self.prefix_refusals = 0
        self.puzzle_refusals = 0
        #: Bumped whenever the set of contacts or an endpoint changes (the daemon saves then).
        self.changes = 0

    @property
    def buckets(self) -> list[KBucket]:
        """The buckets in ID order (contiguous ranges covering the whole space)."""
        return sorted(self._by_depth, key=lambda b: b.lo)

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self._by_depth)

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def get(self, key: int, default: Contact | None = None) -> Contact | None:
        # No index by ID: a dict of every contact cost ~40 bytes a contact (3.2 KB a node at 500
        # nodes in bench/dht); the contact's bucket is found from the prefix it shares with us,
        # and its at most k entries are scanned (~0.4 us against a dict's 0.04).
        # (An entry's ``tag``, a shared small int, is compared first: its 256-bit ``key`` is read
        # only on a match of the low 8 bits, see Contact.tag.)
        by_depth = self._by_depth
        d = ID_BITS - (key ^ self.own_key).bit_length()
        tag = key & 255
        for c in (by_depth[d] if d < len(by_depth) else by_depth[-1]).entries:
            if c.tag == tag and c.key == key:
                return c
        return default

    @property
    def by_key(self) -> "RoutingTable":
        """Every contact by its integer ID (``in``, ``get``; read only: change the table through its methods)."""
        return self

    def failures(self, key: int) -> int:
        return self._failures.get(key, 0)

    def bucket_for(self, key: int) -> KBucket:
        by_depth = self._by_depth
        d = ID_BITS - (key ^ self.own_key).bit_length()
        return by_depth[d] if d < len(by_depth) else by_depth[-1]

    def has_room(self, contact: Contact, key: int) -> bool:
        """Would :meth:`add` put ``contact`` in the table proper now (not only in a replacement
        cache)? A contact already there at another endpoint counts (its address would change)."""
        known = self.get(key)
        if known is not None:
            return known.endpoint != contact.endpoint
        if key == self.own_key or (self.difficulty and not meets_puzzle(contact.node_id, self.difficulty)):
            return False
        bucket = self.bucket_for(key)
        entries = bucket.entries
        if len(entries) < self.k:
            return True
        if bucket.last:
            # It splits (maybe more than once): where would the contact land, among whom?
            depth, own = bucket.depth, self.own_key
            while len(entries) >= self.k and depth < ID_BITS:
                bit = 1 << (ID_BITS - 1 - depth)
                side = key & bit
                entries = [c for c in entries if c.key & bit == side]
                if side != own & bit:
                    break  # the far half: it does not split again
                depth += 1
            if len(entries) < self.k:
                return True
        if self.per_prefix is not None and self._over_limit_victim(entries, contact) is not None:
            return True
        if not (self.replace_failing and self._failures):
            return False
        worst = self._most_failing(entries)
        return worst is not None and self._prefix_ok_without(entries, contact, worst)

    def add(self, contact: Contact, now: float, key: int | None = None) -> bool:
        """Learn (or refresh) a contact. Returns True if it is in the table now."""
        key = contact.key if key is None else key
        own = self.own_key
        if key == own:
            return False
        # bucket_for, inlined: every message a node receives comes through here.
        by_depth = self._by_depth
        d = ID_BITS - (key ^ own).bit_length()
        bucket = by_depth[d] if d < len(by_depth) else by_depth[-1]
        bucket.touched = now
        entries = bucket.entries
        tag = key & 255
        for known in entries:  # (no enumerate: the match is rare, its position is found then)
            if known.tag == tag and known.key == key:  # (the tag first: see get)
                if self._failures:
                    self._failures.pop(key, None)
                if known is not contact and known.endpoint != contact.endpoint:
                    for i, x in enumerate(entries):
                        if x is known:
                            entries[i] = contact
                            break
                    self.changes += 1
                return True
        if self.difficulty and not meets_puzzle(contact.node_id, self.difficulty):
            self.puzzle_refusals += 1
            return False
        if len(entries) < self.k:
            # Room (the common case, first): no contention, no per-prefix limit (a small
            # deployment in one /24).
            entries.append(contact)
            self.changes += 1
            return True
        while True:
            if len(bucket.entries) < self.k:
                # Room: no contention, no per-prefix limit (a small deployment in one /24).
                bucket.entries.append(contact)
                self.changes += 1
                return True
            if bucket.last and bucket.depth < ID_BITS:
                self._split(bucket)
                bucket = self.bucket_for(key)
                continue
            if self.per_prefix is not None:
                victim = self._over_limit_victim(bucket.entries, contact, True)
                if victim is not None:
                    self._swap(bucket, victim, contact, key)
                    return True
            if self.replace_failing and self._failures and self._take_failing_slot(bucket, contact, key):
                return True
            self._add_replacement(bucket, contact, key)
            return False

    def _take_failing_slot(self, bucket: KBucket, contact: Contact, key: int) -> bool:
        """A node that talks to us takes the place of one whose last request failed.

        Under churn a full bucket fills with departed nodes, each evicted only
        after ``max_failures`` of *our* requests to it time out; meanwhile the
        live newcomers that talk to us wait in the replacement cache, and no
        one can find them. A contact that failed its last request is
        questionable (Mainline DHT's word): one that just proved it is alive
        is the better bet. The questionable one goes to the replacements.
        """
        worst = self._most_failing(bucket.entries)
        if worst is None or not self._prefix_ok_without(bucket.entries, contact, worst):
            return False
        self._swap(bucket, worst, contact, key)
        return True

    def _most_failing(self, entries: list) -> Contact | None:
        """The entry with the most failed requests in a row (the first of equals), or None."""
        failures = self._failures
        worst, most = None, 0
        for c in entries:
            f = failures.get(c.key, 0)
            if f > most:
                worst, most = c, f
        return worst

    def _swap(self, bucket: KBucket, leaving: Contact, contact: Contact, key: int) -> None:
        """``contact`` takes the slot of ``leaving``, which waits in the replacement cache."""
        lkey = leaving.key
        _drop(bucket.entries, leaving)
        self._failures.pop(lkey, None)
        bucket.entries.append(contact)
        if bucket.replacements:
            bucket.replacements = [c for c in bucket.replacements if c.key != key]
        self._add_replacement(bucket, leaving, lkey)
        self.changes += 1

    def _over_limit_victim(self, entries: list, contact: Contact, count: bool = False) -> Contact | None:
        """In a full bucket (its ``entries``): the entry ``contact`` displaces under the per-prefix limit, or None.

        Only a newcomer whose block holds fewer than ``per_prefix`` entries displaces, and only
        an entry of a block holding more than ``per_prefix`` (never an exempt one); a newcomer
        whose block holds ``per_prefix`` or more is counted in ``prefix_refusals`` (``count``). Of the
        candidates: most failures in a row first, then the block holding most, then the newest.
        One pass over the bucket (k cached block lookups) on a path that, without a victim,
        only puts the newcomer in the replacement cache; the counting is left to C where it can
        be (every entry in a block of its own, the Internet's common case, costs one set).
        """
        per = self.per_prefix
        block_of = _block_of
        blocks = [block_of(c.endpoint[0]) for c in entries]
        exempt = self.exempt
        host = contact.endpoint[0]
        if blocks.count(block_of(host)) >= per and not (exempt and exempt.covers(host)):
            if count:
                self.prefix_refusals += 1
            return None
        if len(set(blocks)) == len(blocks):
            return None  # no block holds two, so none holds more than per_prefix (>= 1)
        counts = Counter(blocks)
        if max(counts.values()) <= per:
            return None
        failures = self._failures
        victim, best = None, None
        for i, c in enumerate(entries):
            n = counts[blocks[i]]
            if n <= per or (exempt and exempt.covers(c.endpoint[0])):
                continue
            rank = (failures.get(c.key, 0) if failures else 0, n, i)
            if best is None or rank > best:
                victim, best = c, rank
        return victim

    def _add_replacement(self, bucket: KBucket, contact: Contact, key: int) -> None:
        bucket.replacements = [c for c in bucket.replacements if c.key != key]
        bucket.replacements.append(contact)
        if len(bucket.replacements) > self.k:
            bucket.replacements.pop(0)

    def _split(self, bucket: KBucket) -> None:
        """Split the last bucket (the one covering our ID) in two: those that differ from
        us at the next bit stay at this depth, the rest form the new last bucket."""
        d = bucket.depth
        bit = 1 << (ID_BITS - 1 - d)
        mine = self.own_key & bit
        far = KBucket(self.own_key, d, False, [c for c in bucket.entries if c.key & bit != mine],
                      [c for c in bucket.replacements if c.key & bit != mine] or (), bucket.touched)
        near = KBucket(self.own_key, d + 1, True, [c for c in bucket.entries if c.key & bit == mine],
                       [c for c in bucket.replacements if c.key & bit == mine] or (), bucket.touched)
        self._by_depth[-1:] = [far, near]

    def prefer_nearer(self, contact: Contact, rtt: float, rtt_of, near: float) -> bool:
        """Proximity neighbour selection: a contact that just answered in ``rtt`` s
        takes the place of a slower one in its full bucket.

        It replaces the entry whose known RTT (``rtt_of(key)``) is largest, if
        that is more than twice ``rtt``; or, if ``rtt`` is below ``near`` (a
        nearby node), the oldest entry never measured. The displaced contact
        goes to the replacement cache, so it comes back if the bucket thins.
        Returns True if the contact entered the table.
        """
        key = contact.key
        if key == self.own_key or self.get(key) is not None:
            return False
        if self.difficulty and not meets_puzzle(contact.node_id, self.difficulty):
            return False
        bucket = self.bucket_for(key)
        entries = bucket.entries
        if len(entries) < self.k or bucket is self._by_depth[-1]:
            return False  # room, or the bucket splits: add() takes it as it is
        victim, worst = None, 2 * rtt
        unmeasured = None
        for c in entries:
            r = rtt_of(c.key)
            if r is None:
                if unmeasured is None:
                    unmeasured = c
            elif r > worst:
                victim, worst = c, r
        if victim is None and rtt < near:
            victim = unmeasured
        if victim is None or not self._prefix_ok_without(entries, contact, victim):
            return False
        self._swap(bucket, victim, contact, key)
        return True

    def _prefix_ok_without(self, entries: list, contact: Contact, leaving: Contact) -> bool:
        """May ``contact`` take the occupied slot of ``leaving`` among ``entries`` (a full bucket's)?
        Only if that does not raise the bucket's excess over the per-prefix limit: its block
        holds fewer than ``per_prefix`` of the others, or it is ``leaving``'s own block (one of
        a block for another of the same)."""
        if self.per_prefix is None or self.exempt.covers(contact.endpoint[0]):
            return True
        p = prefix_of(contact.endpoint)
        if prefix_of(leaving.endpoint) == p:
            return True
        return sum(1 for c in entries if c is not leaving and prefix_of(c.endpoint) == p) < self.per_prefix

    def fail(self, key: int) -> bool:
        """A request to this contact failed. Returns True if it was evicted."""
        contact = self.get(key)
        if contact is None:
            return False
        failures = self._failures.get(key, 0) + 1
        if failures < self.max_failures:
            if self._failures is NO_ENTRIES:
                self._failures = {}
            self._failures[key] = failures
            return False
        self._failures.pop(key, None)
        bucket = self.bucket_for(key)
        _drop(bucket.entries, contact)
        self.evictions += 1
        self.changes += 1
        self._promote(bucket)
        return True

    def remove(self, key: int) -> bool:
        """Forget a contact that said it is leaving (from the replacements too); a
        replacement takes its slot. Returns True if it was in the table."""
        bucket = self.bucket_for(key)
        if bucket.replacements and any(c.key == key for c in bucket.replacements):
            bucket.replacements = [c for c in bucket.replacements if c.key != key] or ()
        contact = self.get(key)
        if contact is None:
            return False
        self._failures.pop(key, None)
        _drop(bucket.entries, contact)
        self.changes += 1
        self._promote(bucket)
        return True

    def _promote(self, bucket: KBucket) -> None:
        """A slot came free: the most recent replacement takes it, or under the per-prefix limit
        the most recent whose block holds fewer than ``per_prefix`` entries, if there is one
        (a slot that comes free is room: any block may have it, but a diverse one first)."""
        reps = bucket.replacements
        counts: dict[str, int] | None = None
        if reps and self.per_prefix is not None:
            counts = {}
            for c in bucket.entries:
                p = prefix_of(c.endpoint)
                counts[p] = counts.get(p, 0) + 1
        while reps:
            pick = len(reps) - 1
            if counts is not None:
                for i in range(pick, -1, -1):
                    c = reps[i]
                    if self.exempt.covers(c.endpoint[0]) or counts.get(prefix_of(c.endpoint), 0) < self.per_prefix:
                        pick = i
                        break
            c = reps.pop(pick)
            ckey = c.key
            if all(e.key != ckey for e in bucket.entries):
                bucket.entries.append(c)
                break

    def closest(self, target: int, n: int | None = None, exclude: int | None = None,
                ordered: bool = True) -> list[Contact]:
        """The n contacts nearest to ``target`` by XOR, nearest first (``ordered``; with
        ``ordered=False`` the same contacts, in no particular order: a caller that sorts
        them itself, or sends them, saves the sort).

        Buckets are aligned power-of-two blocks of the ID space, and XOR with
        the target maps each block onto another aligned block, so the blocks
        are totally ordered by distance (see _nearest_buckets): visit them
        nearest first, take whole buckets while they fit, and pick the nearest
        of the one that does not.
        """
        n = self.k if n is None else n
        found: list[Contact] = []
        if n <= 0:
            return found
        # ``exclude`` is left out of the one bucket that could hold it, by key (a bucket holds a key
        # once), in the same pass that copies it: no search for it first (a scan of that bucket,
        # mostly in vain, and of no use when that bucket is not read).
        by_depth = self._by_depth
        own = self.own_key
        if exclude is not None:
            d = ID_BITS - (exclude ^ own).bit_length()
            skip = by_depth[d] if d < len(by_depth) else by_depth[-1]
        else:
            skip = None
        kept = None  # that bucket without ``exclude``, once made
        d = ID_BITS - (target ^ own).bit_length()
        first = by_depth[d] if d < len(by_depth) else by_depth[-1]  # the nearest bucket
        if len(first.entries) >= n:
            # The common case far from our own ID: the nearest bucket alone has enough (or, when
            # it holds ``exclude``, more than enough: often the asker's own neighbourhood, as a
            # join looks up the joiner's ID).
            entries = first.entries if first is not skip else (kept := _without(first.entries, exclude))
            if len(entries) == n:
                return nearest(entries, target) if ordered else list(entries)
            if len(entries) > n:
                return nearest(entries, target, n)
        for b in self._nearest_buckets(target):
            entries = b.entries
            if not entries:
                continue
            if b is skip:
                entries = kept if kept is not None else _without(entries, exclude)
            room = n - len(found)
            if len(entries) <= room:
                found.extend(entries)
                if len(entries) == room:
                    break
            else:
                # A bucket holds at most k: one sort in C beats heapq.nsmallest's Python loop.
                found.extend(nearest(entries, target, room))
                break
        if ordered and len(found) > 1:
            return nearest(found, target)
        return found

    def _nearest_buckets(self, target: int):
        """The buckets, nearest to ``target`` first.

        With x = target XOR own and p the prefix length they share, a bucket
        at depth d < p is at distance about 2^(255-d) (deeper is nearer); the
        bucket at depth p holds the target's neighbourhood; a bucket at depth
        d > p differs from the last (deepest) one first at bit d, and is nearer
        than it exactly when bit d of x is set.
        """
        by_depth = self._by_depth
        last = len(by_depth) - 1
        x = target ^ self.own_key
        p = ID_BITS - x.bit_length()
        if p >= last:
            yield by_depth[last]
            for d in range(last - 1, -1, -1):
                yield by_depth[d]
            return
        yield by_depth[p]
        later = []
        for d in range(p + 1, last):
            if (x >> (ID_BITS - 1 - d)) & 1:
                yield by_depth[d]
            else:
                later.append(by_depth[d])
        yield by_depth[last]
        yield from reversed(later)
        for d in range(p - 1, -1, -1):
            yield by_depth[d]

    def contacts(self) -> list[Contact]:
        return [c for b in self.buckets for c in b.entries]

    def idle_buckets(self, now: float, interval: float) -> list[KBucket]:
        """The buckets nothing was added to for ``interval`` s, in ID order."""
        # Asked every maintenance interval by every node: most of the time none is idle,
        # and that is known without ordering the buckets.
        if all(now - b.touched < interval for b in self._by_depth):
            return []
        return [b for b in self.buckets if now - b.touched >= interval]
