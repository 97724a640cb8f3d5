"""What the DHT keeps per peer that answered it: a smoothed RTT, its variation and a hint credit.

* **RTT** (RFC 6298's estimator): ``srtt`` and ``rttvar`` from each answer's
  round trip, for the request timeout, proximity in the routing table, lookup
  order and the RTT hints a NearNodes carries.
* **Hint credit** (docs/security.md, item 6): the bytes a source may have us
  spend asking contacts it named and we do not know first-hand, earned by the
  bytes of its own answers, at most ``credit_max``, ``credit_start`` (one ask)
  for a source we have no entry for.

Both are kept for the same peers (those whose answers we read), so they share
one entry: the peer's integer ID maps to a slot of one ``array("d")``, three
doubles a slot (``srtt``, ``rttvar``, credit; NaN: no RTT measured yet). Two
dicts of ``complex`` values cost ~140 bytes a peer; this costs ~33 (a list
entry and a tag byte, 24 bytes of array) up to :data:`SMALL` peers, ~65 past it
(a dict entry; the slot numbers below 257 are the interpreter's shared ints). At most ``max_keys`` peers, the oldest entered first out (a source
that comes back starts again with ``credit_start``, as a new node ID does); a
freed slot is reused. The arithmetic is the one the two tables did, on the same
doubles, so every value read is the same.
"""

from __future__ import annotations

from array import array

__all__ = ["PeerEstimates"]

_NAN = float("nan")


#: Up to this many peers a table finds a peer by a byte tag (the low 8 bits of its ID, ``bytearray.find``
#: in C) and then its integer, in a list in the order the peers entered: a dict of ~40 entries (a node's
#: at 500 and 1,000 nodes in bench/dht) took 1.0-2.2 KiB where the list and its tags take ~0.5
#: (bench/results/dmem16). Past it (a node that met more peers than that), a dict, as it was.
SMALL = 256


def find_tagged(tags: bytearray, keys: list, key: int) -> int | None:
    """The index of ``key`` in ``keys``, where ``tags[i]`` is ``keys[i]``'s low 8 bits (each table
    of peers kept by tag: ``PeerEstimates``, the sessionless layer's keys), or None. The tag is found
    by ``bytearray.find`` (in C), then the integer compared."""
    tag = key & 255
    i = tags.find(tag)
    while i >= 0:
        if keys[i] == key:
            return i
        i = tags.find(tag, i + 1)
    return None


class PeerEstimates:
    __slots__ = ("max_keys", "credit_start", "credit_max", "_keys", "_tags", "_slot", "_v", "_free")

    def __init__(self, max_keys: int, credit_start: float, credit_max: float):
        self.max_keys = max(1, max_keys)
        self.credit_start = float(credit_start)
        self.credit_max = float(credit_max)
        # Up to SMALL peers: _keys[i] is the peer of slot i, oldest first, _tags[i] its low 8 bits; a
        # slot forgotten is deleted (the later ones move down one), so the order is the order they
        # entered, and the oldest (the first) is the one a full table lets go.
        self._keys: list[int] | None = []
        self._tags: bytearray | None = bytearray()
        self._slot: dict[int, int] | None = None  # past SMALL: peer key -> slot, oldest first
        self._v = array("d")  # slot s's three doubles are _v[3 * s : 3 * s + 3]
        self._free: list[int] | tuple = ()  # (a dict's) slots freed by forget(); a list from the first one

    def __len__(self) -> int:
        return len(self._keys) if self._slot is None else len(self._slot)

    def __contains__(self, key: int) -> bool:
        return self._find(key) is not None

    def _find(self, key: int) -> int | None:
        """The slot of ``key``, or None."""
        slots = self._slot
        if slots is not None:
            return slots.get(key)
        return find_tagged(self._tags, self._keys, key)

    def _new(self, key: int) -> int:
        """A slot for ``key``, which has none: no RTT, the starting credit."""
        keys = self._keys
        if keys is not None:
            n = len(keys)
            if n >= self.max_keys:  # the oldest goes
                del keys[0], self._tags[0], self._v[0:3]
                n -= 1
            if n < SMALL:
                keys.append(key)
                self._tags.append(key & 255)
                self._v.extend((_NAN, _NAN, self.credit_start))
                return n
            self._slot = {k: i for i, k in enumerate(keys)}  # (in the order they entered)
            self._keys = self._tags = None
        slots = self._slot
        v = self._v
        if len(slots) >= self.max_keys:
            s = slots.pop(next(iter(slots)))
        elif self._free:
            s = self._free.pop()
        else:
            s = len(v) // 3
            v.extend((_NAN, _NAN, self.credit_start))
            slots[key] = s
            return s
        i = 3 * s
        v[i] = v[i + 1] = _NAN
        v[i + 2] = self.credit_start
        slots[key] = s
        return s

    def forget(self, key: int) -> None:
        keys = self._keys
        if keys is not None:
            s = self._find(key)
            if s is not None:
                del keys[s], self._tags[s], self._v[3 * s:3 * s + 3]
            return
        s = self._slot.pop(key, None)
        if s is not None:
            if not self._slot:  # all gone: start afresh (nothing to reuse, nothing kept)
                self._keys, self._tags, self._slot = [], bytearray(), None
                self._v = array("d")
                self._free = ()
                return
            if type(self._free) is tuple:
                self._free = []
            self._free.append(s)

    # -- RTT ------------------------------------------------------------------------
    def rtt(self, key: int) -> tuple[float, float] | None:
        """(srtt, rttvar) of ``key``, or None if none was measured."""
        s = self._find(key)
        if s is None:
            return None
        i = 3 * s
        srtt = self._v[i]
        return None if srtt != srtt else (srtt, self._v[i + 1])

    def srtt(self, key: int) -> float | None:
        keys = self._keys
        if keys is None:
            s = self._slot.get(key)
            if s is None:
                return None
        else:  # (_find, written out: a lookup reads this for each contact it meets)
            tags = self._tags
            tag = key & 255
            s = tags.find(tag)
            while s >= 0:
                if keys[s] == key:
                    break
                s = tags.find(tag, s + 1)
            else:
                return None
        srtt = self._v[3 * s]
        return None if srtt != srtt else srtt

    def sample(self, key: int, rtt: float) -> None:
        """A round trip of ``rtt`` s to ``key`` (RFC 6298, section 2)."""
        s = self._find(key)
        if s is None:
            s = self._new(key)
        v, i = self._v, 3 * s
        srtt = v[i]
        if srtt != srtt:
            v[i] = rtt
            v[i + 1] = rtt / 2
        else:
            v[i] = 0.875 * srtt + 0.125 * rtt
            v[i + 1] = 0.75 * v[i + 1] + 0.25 * abs(srtt - rtt)

    # -- hint credit --------------------------------------------------------------------
    def allow(self, key: int, cost: float) -> bool:
        """Take ``cost`` from ``key``'s credit if it has that much."""
        s = self._find(key)
        if s is None:
            s = self._new(key)
        i = 3 * s + 2
        c = self._v[i]
        if c < cost:
            return False
        self._v[i] = c - cost
        return True

    def credit(self, key: int, amount: float) -> None:
        """``key`` earned ``amount`` (up to ``credit_max``)."""
        s = self._find(key)
        if s is None:
            s = self._new(key)
        i = 3 * s + 2
        self._v[i] = min(self.credit_max, self._v[i] + amount)

    def refund(self, key: int, amount: float) -> None:
        """Give back credit taken for an ask that did not cost (kept peers only)."""
        s = self._find(key)
        if s is not None:
            i = 3 * s + 2
            self._v[i] = min(self.credit_max, self._v[i] + amount)

    def credit_of(self, key: int) -> float:
        s = self._find(key)
        return self.credit_start if s is None else self._v[3 * s + 2]
