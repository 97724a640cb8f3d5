"""Who gets the responder's work: load detection and per-source limits for handshakes and hellos.

The transport (transport.py) asks this module before spending anything on
an unauthenticated packet, cheapest check first (docs/security.md, item 1):

1. ``mac1`` (one keyed hash; in the transport, before this module);
2. **load**: more than ``handshakes_per_second_under_load`` Inits with a
   valid mac1 in the last second (a sliding two-window count, O(1) memory);
3. under load, a valid **mac2** (the cookie proves the source receives at its
   address; the transport sends a CookieReply otherwise);
4. under load, a **token bucket per source address and per prefix**, as
   WireGuard's rate limiter does: a sender that echoes cookies still gets at
   most ``handshake_rate_per_address`` handshakes a second, and one address
   block at most ``handshake_rate_per_prefix``. Sources that recently
   completed a handshake or confirmed a session (**known** endpoints) skip
   the prefix bucket, so a flood from their block cannot lock them out;

and only then does the transport decode the Init and spend a Diffie-Hellman.

Hellos (key discovery, no cryptography) get a bucket per address, one per
prefix and a global ceiling, so many addresses of one block cannot use up
what a joiner elsewhere needs.

Sources covered by ``exempt_prefixes`` skip the per-address and per-prefix
buckets (never the global ones); the list is empty unless configured.
Sans-IO: ``now`` comes in.
"""

from __future__ import annotations

from collections import OrderedDict

from weftnet.core.limits import ExemptPrefixes, TokenBuckets, address_key, prefix_key

__all__ = ["Admission"]

Addr = tuple[str, int]


class Admission:
    def __init__(self, config) -> None:
        c = config
        self.config = c
        self.exempt = ExemptPrefixes(c.exempt_prefixes)
        self._hs_addr = TokenBuckets(c.handshake_rate_per_address, c.handshake_burst_per_address)
        self._hs_prefix = TokenBuckets(c.handshake_rate_per_prefix, c.handshake_burst_per_prefix)
        self._hello_addr = TokenBuckets(c.hello_per_source_per_second, c.hello_per_source_per_second)
        self._hello_prefix = TokenBuckets(c.hello_per_prefix_per_second, c.hello_per_prefix_per_second)
        self._hello_all = TokenBuckets(c.hello_per_second, c.hello_per_second, 1)
        self._known: OrderedDict[Addr, float] = OrderedDict()
        self._window = 0.0  # start of the current one-second window
        self._count = 0  # Inits in the current window
        self._previous = 0  # Inits in the window before it

    # -- load -----------------------------------------------------------------
    def note_init(self, now: float) -> bool:
        """Count one Init with a valid mac1; True if the responder is under load."""
        if now - self._window >= 1.0:
            self._previous = self._count if now - self._window < 2.0 else 0
            self._count = 0
            self._window = now
        self._count += 1
        # Sliding estimate of the last second: this window plus the unexpired part of the last.
        rate = self._count + self._previous * max(0.0, 1.0 - (now - self._window))
        return rate > self.config.handshakes_per_second_under_load

    # -- handshakes -----------------------------------------------------------
    def allow_handshake(self, addr: Addr, now: float) -> bool:
        """Under load, with a valid mac2: may this source have a handshake now?"""
        host = addr[0]
        if self.exempt.covers(host):
            return True
        if not self._hs_addr.allow(address_key(host), now):
            return False
        if addr in self._known:
            return True  # a source that completed a handshake keeps its place, whatever its block does
        return self._hs_prefix.allow(prefix_key(host), now)

    def remember(self, addr: Addr, now: float) -> None:
        """``addr`` completed a handshake or confirmed a session (proven return routability)."""
        known = self._known
        if addr in known:
            known.move_to_end(addr)
        elif len(known) >= self.config.max_peers:
            known.popitem(last=False)
        known[addr] = now

    def is_known(self, addr: Addr) -> bool:
        return addr in self._known

    # -- hellos ---------------------------------------------------------------
    def allow_hello(self, addr: Addr, now: float) -> bool:
        host = addr[0]
        if not self.exempt.covers(host):
            if not self._hello_addr.allow(address_key(host), now):
                return False
            if not self._hello_prefix.allow(prefix_key(host), now):
                return False
        return self._hello_all.allow("*", now)
