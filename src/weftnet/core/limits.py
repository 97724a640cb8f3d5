"""Per-source limits shared by the transport and the DHT: address keys, prefixes, exemptions, token buckets.

A hostile host has one address, or a few addresses in one block; it can
have as many identities as it can afford keys. So every limit that must
hold against one host is keyed by where packets come from, not by who
they claim to be:

* **address** (:func:`address_key`): an IPv4 address, or the IPv6 /64 it is
  in (one host normally holds a whole /64, as in WireGuard's rate limiter);
* **prefix** (:func:`prefix_key`): the IPv4 /24 or IPv6 /48 around it, what
  one operator typically holds.

:class:`ExemptPrefixes` is the one, explicit, way to lift these limits for
some sources (a test lab on 127.0.0.1 runs hundreds of honest nodes on one
address). It is empty unless configured; nothing is exempt silently.

:class:`TokenBuckets` is a bounded table of token buckets. When it is full,
the least recently used bucket goes. A bucket unused for ``burst / rate``
seconds is full again, i.e. the same as a new one, so evicting it forgets
nothing; the table is sized so that forgetting a *non*-full bucket needs
more distinct sources than one host has (``evicted_active`` counts it).
Nothing here reads a clock: ``now`` comes in.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any, Iterable

__all__ = ["address_key", "prefix_key", "ExemptPrefixes", "TokenBuckets", "Gcra", "LOOPBACK_LAB", "NO_ENTRIES"]

#: What a loopback test lab, the demo and the benches exempt (``exempt_prefixes``).
LOOPBACK_LAB = ("127.0.0.0/8", "::1/128")


@functools.lru_cache(maxsize=65536)
def address_key(host: str) -> str:
    """The IPv4 address itself, or the IPv6 /64 containing it."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


@functools.lru_cache(maxsize=65536)
def prefix_key(host: str) -> str:
    """The IPv4 /24 or IPv6 /48 containing ``host``."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))



class _NoEntries:
    """What a table that was never written answers: empty, and read-only (no ``__setitem__``,
    ``__delitem__``, ``setdefault`` or ``update``), so a write site that forgot to swap in a table
    of its own fails at once rather than share one node's entries with another. One object for every
    node: most nodes never write the tables that start as this (an empty dict is 64 bytes a table;
    bench/results/dmem14). A writer swaps in its own dict (``if t is NO_ENTRIES: t = self.t = {}``)."""

    __slots__ = ()

    def get(self, key, default=None):
        return default

    def pop(self, key, default=None):
        return default

    def __contains__(self, key) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self):
        return iter(())

    def items(self):
        return ()

    def keys(self):
        return ()

    def values(self):
        return ()


#: The one empty read-only table (see :class:`_NoEntries`).
NO_ENTRIES: Any = _NoEntries()

class ExemptPrefixes:
    """Address blocks whose sources are not subject to per-address or per-prefix limits."""

    __slots__ = ("networks", "_cache", "everything")

    def __init__(self, prefixes: Iterable[str] = ()):
        nets = []
        for p in prefixes:
            try:
                nets.append(ipaddress.ip_network(p, strict=False))
            except ValueError:
                raise ValueError(f"{p!r} is not an IP prefix such as 127.0.0.0/8") from None
        self.networks = tuple(nets)
        self._cache: dict[str, bool] = {}
        #: Every address of both families is exempt (the simulator: its endpoints are labels).
        self.everything = {n.version for n in nets if n.prefixlen == 0} == {4, 6}

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def shared(prefixes: tuple) -> "ExemptPrefixes":
        """One instance per list of prefixes, shared by every node of a process (its
        cache of answers too): a simulator of a million nodes keeps one, not a million."""
        return ExemptPrefixes(prefixes)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def covers(self, host: str) -> bool:
        if not self.networks:
            return False
        hit = self._cache.get(host)
        if hit is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                hit = False
            else:
                hit = any(ip.version == n.version and ip in n for n in self.networks)
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[host] = hit
        return hit


_NO_BUCKETS: dict = {}  # shared, never written (TokenBuckets._take swaps in a dict of its own)


class TokenBuckets:
    """Token buckets by key: ``rate`` tokens per second, at most ``burst``; at most ``max_keys`` keys."""

    __slots__ = ("rate", "burst", "max_keys", "start", "_b", "evicted", "evicted_active")

    def __init__(self, rate: float, burst: float, max_keys: int = 65536, start: float | None = None):
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        #: A new key's tokens: a full bucket by default, or less for a budget mostly
        #: earned with :meth:`credit`.
        self.start = self.burst if start is None else float(start)
        #: key -> complex(tokens, last refill), least recently used first: one 32-byte object an
        #: entry instead of a list and two floats (~120 bytes; the DHT and the admission keep one
        #: per source that talked to us), in a plain dict (an OrderedDict entry costs ~30 more)
        self._b: dict = _NO_BUCKETS  # a dict of its own from the first key (most tables of a node stay empty)
        self.evicted = 0
        self.evicted_active = 0  # evicted before it had refilled (a sign of a table too small)

    def __len__(self) -> int:
        return len(self._b)

    def _take(self, key, now: float) -> complex:
        """``key``'s bucket refilled up to ``now``, moved to the young end (a new one if none)."""
        if self._b is _NO_BUCKETS:
            self._b = {}
        b = self._b.pop(key, None)
        if b is None:
            if len(self._b) >= self.max_keys:
                old = self._b.pop(next(iter(self._b)))
                self.evicted += 1
                if self.rate and old.real + (now - old.imag) * self.rate < self.burst:
                    self.evicted_active += 1
            return complex(self.start, now)
        if now > b.imag and self.rate:
            return complex(min(self.burst, b.real + (now - b.imag) * self.rate), now)
        return b

    def allow(self, key, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        b = self._take(key, now)
        if b.real < cost:
            self._b[key] = b
            return False
        self._b[key] = b - cost
        return True

    def credit(self, key, amount: float, now: float) -> None:
        """Add tokens to ``key`` (up to ``burst``): for budgets earned rather than refilled by time."""
        b = self._take(key, now)
        self._b[key] = complex(min(self.burst, b.real + amount), b.imag)

    def refund(self, key, amount: float) -> None:
        """Give back tokens taken for something that did not happen."""
        b = self._b.get(key)
        if b is not None:
            self._b[key] = complex(min(self.burst, b.real + amount), b.imag)


#: A Gcra table sweeps its keys whose bucket is full again when it holds this many (or twice what its
#: last sweep left): 16 kept ~9 keys a node in bench/dht, most of them long full, in a dict grown for 16
#: (bench/results/dmem16).
_GCRA_SWEEP = 8


class Gcra:
    """Token buckets by key kept as one float each (GCRA, the ATM cell-rate algorithm).

    Per key, the time at which its bucket will be full again; a request is
    allowed if that time is at most ``(burst - 1) / rate`` ahead of now, and
    moves it ``1 / rate`` later. A key whose time has passed has a full
    bucket and needs no entry, so entries are swept out whenever the table has
    doubled since the last sweep (and at 8 keys at least): a table of busy keys
    only, about 100 bytes each (what a simulated million-node DHT can afford).
    It never empties for volume: past ``max_keys`` busy keys, the ones nearest
    to full go first. A table never written (most nodes' per-prefix table: a
    loopback lab's prefixes are exempt) is the shared read-only ``NO_ENTRIES``.
    """

    __slots__ = ("rate", "burst", "max_keys", "_t", "_sweep_at", "evicted_active")

    def __init__(self, rate: float, burst: float, max_keys: int = 65536):
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._t: dict = NO_ENTRIES  # a dict of its own from the first key
        self._sweep_at = _GCRA_SWEEP
        self.evicted_active = 0

    def __len__(self) -> int:
        return len(self._t)

    def allow(self, key, now: float) -> bool:
        t = self._t
        full_at = t.get(key, now)
        if full_at < now:
            full_at = now
        if full_at - now > (self.burst - 1.0) / self.rate + 1e-9:  # + rounding of the sums
            return False
        if key not in t and len(t) >= self._sweep_at:
            for k in [k for k, v in t.items() if v <= now]:
                del t[k]
            if len(t) >= self.max_keys:
                drop = sorted(t, key=t.__getitem__)[: len(t) - self.max_keys // 2]
                self.evicted_active += len(drop)
                for k in drop:
                    del t[k]
            self._sweep_at = max(_GCRA_SWEEP, 2 * len(t))
        if t is NO_ENTRIES:
            t = self._t = {}
        t[key] = full_at + 1.0 / self.rate
        return True

