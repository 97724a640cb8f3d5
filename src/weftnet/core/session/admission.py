"""Who gets the responder's work: load detection and per-source limits for handshakes and hellos.

The transport (transport.py) asks this module before spending anything on
an unauthenticated packet, cheapest check first (docs/security.md, item 1):

1. ``mac1`` (one keyed hash; in the transport, before this module);
2. **load**: Inits with a valid mac1 draw on a budget of
   ``handshakes_per_second_under_load`` a second with a burst of a tenth of
   that; once it is spent the node is *under load* for a second at least
   (sticky, as WireGuard's). The small burst matters: every Init worked
   outside load costs a DH, and 200 in a row stalled a busy node for half a
   second on this machine, so a flood's first moments cost at most 20;
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

from weftnet.core.limits import NO_ENTRIES, ExemptPrefixes, TokenBuckets, address_key, prefix_key

__all__ = ["Admission"]

Addr = tuple[str, int]


class Admission:
    # Slots, and each table of buckets made at its first use (_buckets): a DHT node answers few
    # handshakes and hellos, and seven tables built at once with an instance dict were ~1 KB of every
    # node (bench/results/dmem15). Made from the config when first used, with the same rate and burst.
    __slots__ = ("config", "exempt", "_hs_addr", "_hs_prefix", "_hello_addr", "_hello_prefix", "_hello_all",
                 "_known", "_budget", "_under_load_until")

    def __init__(self, config) -> None:
        c = config
        self.config = c
        self.exempt = ExemptPrefixes.shared(tuple(c.exempt_prefixes))  # one per list of prefixes in a process
        self._hs_addr: TokenBuckets | None = None
        self._hs_prefix: TokenBuckets | None = None
        self._hello_addr: TokenBuckets | None = None
        self._hello_prefix: TokenBuckets | None = None
        self._hello_all: TokenBuckets | None = None
        self._known: dict[Addr, float] = NO_ENTRIES  # oldest first (a plain dict from its first entry)
        self._budget: TokenBuckets | None = None
        self._under_load_until = float("-inf")

    def _buckets(self, name: str) -> TokenBuckets:
        """The table ``name``, made now if it is not yet."""
        c = self.config
        if name == "_budget":
            rate = c.handshakes_per_second_under_load
            b = TokenBuckets(rate, rate / 10, 1)
        elif name == "_hs_addr":
            b = TokenBuckets(c.handshake_rate_per_address, c.handshake_burst_per_address)
        elif name == "_hs_prefix":
            b = TokenBuckets(c.handshake_rate_per_prefix, c.handshake_burst_per_prefix)
        elif name == "_hello_addr":
            b = TokenBuckets(c.hello_per_source_per_second, c.hello_per_source_per_second)
        elif name == "_hello_prefix":
            b = TokenBuckets(c.hello_per_prefix_per_second, c.hello_per_prefix_per_second)
        else:
            b = TokenBuckets(c.hello_per_second, c.hello_per_second, 1)
        setattr(self, name, b)
        return b

    # -- load -----------------------------------------------------------------
    def note_init(self, now: float) -> bool:
        """One Init with a valid mac1 arrived; True if the responder is under load."""
        # Every Init draws on the budget, under load too: a flood keeps it empty, so load
        # ends only a second after the arrivals fall below the rate.
        b = self._budget
        if b is None:
            b = self._buckets("_budget")
        if not b.allow("*", now):
            self._under_load_until = now + 1.0
        return now < self._under_load_until

    # -- handshakes -----------------------------------------------------------
    def allow_handshake(self, addr: Addr, now: float) -> bool:
        """Under load, with a valid mac2: may this source have a handshake now?"""
        host = addr[0]
        if self.exempt.covers(host):
            return True
        b = self._hs_addr
        if b is None:
            b = self._buckets("_hs_addr")
        if not b.allow(address_key(host), now):
            return False
        if addr in self._known:
            return True  # a source that completed a handshake keeps its place, whatever its block does
        b = self._hs_prefix
        if b is None:
            b = self._buckets("_hs_prefix")
        return b.allow(prefix_key(host), now)

    def remember(self, addr: Addr, now: float) -> None:
        """``addr`` completed a handshake or confirmed a session (proven return routability)."""
        known = self._known
        if known is NO_ENTRIES:
            known = self._known = {}
        if known.pop(addr, None) is None and len(known) >= self.config.max_peers:
            del known[next(iter(known))]
        known[addr] = now  # (re)inserted: the youngest

    def is_known(self, addr: Addr) -> bool:
        return addr in self._known

    # -- hellos ---------------------------------------------------------------
    def allow_hello(self, addr: Addr, now: float) -> bool:
        host = addr[0]
        if not self.exempt.covers(host):
            b = self._hello_addr
            if b is None:
                b = self._buckets("_hello_addr")
            if not b.allow(address_key(host), now):
                return False
            b = self._hello_prefix
            if b is None:
                b = self._buckets("_hello_prefix")
            if not b.allow(prefix_key(host), now):
                return False
        b = self._hello_all
        if b is None:
            b = self._buckets("_hello_all")
        return b.allow("*", now)
