"""The discrete-event simulator: the real `Dht` class, many thousands of times, on a virtual clock.

Theory of operation
-------------------
Every simulated node is an unmodified :class:`weftnet.core.dht.Dht` — the
same class the daemon runs. What the simulator replaces is only what lies
under it: the secure transport becomes a *simulated authenticated channel*
(a message object is handed to the receiver together with the true sender's
contact, exactly what the real transport guarantees after its handshake, but
with no cryptography per message), and the UDP network becomes the latency
model of :mod:`weftnet.sim.underlay`.

Events run in ``(time, seq)`` order; ``seq`` breaks ties, so equal times
always run in the same order. The events of the next second sit in a heap;
later ones (a joined node's next maintenance, minutes away) wait in a list per
second of virtual time and enter the heap when the clock reaches their second.
The order is the same as one heap's, but the heap holds the few thousand
events in flight instead of one timer per node (a pop from a million-entry
heap walks twenty levels of tuples scattered over the memory). One ``random.Random(seed)`` is the only
source of randomness and is passed down to the underlay, the workloads and
every Dht, so a scenario file and a seed give one run, byte for byte.

Timers are armed lazily: after a node handles anything, its next deadline
(``get_timer()``) is pushed only if it is earlier than the one already in the
heap; a stale heap entry is recognised and skipped when it pops. A message
to a node that has crashed is simply never answered: the sender's lookup
times out and its routing table counts a failure, as over a real network.

As the heap grows, the simulator asks the kernel to back it with 2 MiB pages
(:mod:`weftnet.sim.hugepages`, Linux): at a million nodes nearly every read of
another node's objects is a TLB miss with 4 KiB pages. It changes no result.
"""

from __future__ import annotations

import heapq
import random
from math import hypot
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MemoryStore, events
from weftnet.sim.hugepages import Collapser
from weftnet.sim.underlay import Underlay, UnderlayConfig

__all__ = ["Simulation", "SimNode"]

_MSG, _TIMER, _CALL = 0, 1, 2
#: Width of the heap's window in virtual seconds: later events wait outside it (see above).
_WINDOW = 1.0
_HOSTS = [f"10.{i}.0.0" for i in range(256)]
#: The simulator's endpoints are labels (65,536 nodes share one "host"), and its channel
#: has no handshakes: limits keyed by source address would model nothing real here, so
#: every address is exempt (docs/simulator.md). The ID puzzle's cost is modelled by
#: bench/hostile/sybil_cost.py instead of paid per node.
SIM_DHT = {"per_prefix": None, "exempt_prefixes": ("0.0.0.0/0", "::/0")}


class SimNode:
    __slots__ = ("index", "dht", "contact", "alive", "timer_at", "slot")

    def __init__(self, index: int, dht: Dht, contact: Contact):
        self.index = index
        self.dht = dht
        self.contact = contact
        self.alive = True
        self.timer_at: float | None = None
        self.slot = -1  # position in Simulation.alive (swap-remove)


@dataclass
class LookupRecord:
    start: float
    ok: bool
    hops: int
    latency: float
    messages: int


@dataclass
class Metrics:
    lookups: list = field(default_factory=list)  # LookupRecord
    joins_ok: int = 0
    joins_failed: int = 0
    puts_ok: int = 0
    puts_failed: int = 0
    gets_ok: int = 0
    gets_failed: int = 0
    departures_crash: int = 0
    departures_graceful: int = 0
    arrivals: int = 0


class Simulation:
    def __init__(self, seed: int, dht_config: DhtConfig | None = None,
                 underlay: UnderlayConfig | None = None):
        self.rng = random.Random(seed)
        self.now = 0.0
        self._heap: list = []  # the events before self._horizon
        self._far: dict[int, list] = {}  # the later ones, by second (int(time // _WINDOW))
        self._horizon = _WINDOW
        self._seq = 0
        self.underlay = Underlay(underlay or UnderlayConfig(), self.rng)
        self.dht_config = dht_config or DhtConfig(**SIM_DHT)
        self.nodes: list[SimNode] = []
        self.by_key: dict[int, SimNode] = {}
        self.alive: list[SimNode] = []
        self._waiting: dict[tuple[int, int], Callable[[Any], None]] = {}
        self.metrics = Metrics()
        self.events_processed = 0
        # Events by kind, beside events_processed (messages: what the other counts leave):
        # live timers that fired (some only re-armed), timers of departed nodes or re-armed
        # since, and workload calls.
        self.timers_fired = 0
        self.timers_rearmed = 0
        self.timers_stale = 0
        self.calls_run = 0
        self.messages_delivered = 0
        self.messages_lost = 0
        #: Called as ``lookup_observer(src, dst, event, record)`` when a :meth:`lookup` ends
        #: (a tracer's hook; None: nothing is called).
        self.lookup_observer: Callable[[SimNode, SimNode, events.LookupDone, LookupRecord], None] | None = None
        #: The heap in 2 MiB pages as it grows (sim/hugepages.py; results do not depend on it).
        self.hugepages = Collapser()

    # -- scheduling -----------------------------------------------------------
    def _push(self, when: float, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        if when < self._horizon:
            heapq.heappush(self._heap, (when, self._seq, kind, a, b, c))
        else:
            self._push_far((when, self._seq, kind, a, b, c))

    def _push_far(self, entry: tuple) -> None:
        w = int(entry[0] // _WINDOW)
        far = self._far.get(w)
        if far is None:
            self._far[w] = [entry]
        else:
            far.append(entry)

    def _next_window(self) -> bool:
        """Move the next second of waiting events into the heap; False if none wait."""
        far = self._far
        if not far:
            return False
        self.hugepages.maybe()  # (once a virtual second: a read of the resident size)
        w = int(self._horizon // _WINDOW)
        if w not in far:
            w = min(far)  # skip the empty seconds at once
        self._horizon = (w + 1) * _WINDOW
        heap, push = self._heap, heapq.heappush
        for entry in far.pop(w):
            push(heap, entry)
        return True

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``when`` (a workload action)."""
        self._push(when, _CALL, fn)

    def run_until(self, t_end: float, progress: Callable[[float], None] | None = None) -> None:
        heap = self._heap
        pop = heapq.heappop
        after = self._after
        tick = 0
        # The per-event counters are kept in locals and written back when the loop ends (also
        # by an exception): an attribute write of the Simulation per event saved, twice.
        delivered = 0
        horizon = self._horizon
        try:
            while True:
                if not heap or heap[0][0] >= horizon:
                    # Every event before the horizon is in the heap: the next ones are outside.
                    if horizon > t_end or not self._next_window():
                        break
                    horizon = self._horizon
                    continue
                if heap[0][0] > t_end:
                    break
                when, _seq, kind, a, b, c = pop(heap)
                self.now = when
                tick += 1
                if kind == _MSG:
                    # A message: (sender's contact, receiving SimNode, message), the objects
                    # themselves, not indices: two fewer reads of random memory per message.
                    if b.alive:
                        delivered += 1
                        b.dht.on_message(a, c, when)
                        after(b)
                elif kind == _TIMER:
                    node = a  # the SimNode itself (as for a message)
                    if node.alive and node.timer_at == when:
                        self.timers_fired += 1
                        node.timer_at = None
                        dht = node.dht
                        t = dht.get_timer()
                        if t is not None and t > when:
                            # Nothing is due (the request this timer was for was answered):
                            # handle_timer would do nothing and send nothing. Re-arm only.
                            self.timers_rearmed += 1
                            node.timer_at = t
                            self._push(t, _TIMER, node)
                        else:
                            dht.handle_timer(when)
                            after(node)
                    else:
                        self.timers_stale += 1
                else:
                    self.calls_run += 1
                    a()
                if progress is not None and tick % 20000 == 0:
                    progress(self.now)
        finally:
            self.events_processed += tick
            self.messages_delivered += delivered
        self.now = max(self.now, t_end)

    # -- nodes -----------------------------------------------------------------
    def add_node(self) -> SimNode:
        index = len(self.nodes)
        self.underlay.add_node()
        contact = Contact(self.rng.randbytes(32), (_HOSTS[(index >> 16) & 0xFF], index & 0xFFFF))
        # One random source for the whole run: deterministic, and no 2.5 KiB
        # Mersenne state per node at a million nodes.
        dht = Dht(contact, self.rng, self.now, self.dht_config, MemoryStore())
        node = SimNode(index, dht, contact)
        self.nodes.append(node)
        self.by_key[contact.key] = node
        node.slot = len(self.alive)
        self.alive.append(node)
        return node

    def kill(self, node: SimNode) -> None:
        if not node.alive:
            return
        node.alive = False
        last = self.alive.pop()
        if last is not node:
            last.slot = node.slot
            self.alive[node.slot] = last
        node.slot = -1

    def random_alive(self, exclude: SimNode | None = None) -> SimNode:
        while True:
            n = self.alive[self.rng.randrange(len(self.alive))]
            if n is not exclude or len(self.alive) == 1:
                return n

    # -- the simulated authenticated channel -----------------------------------
    def _after(self, node: SimNode) -> None:
        """Put what a node wants to send on the wire, hand out its events, re-arm its timer."""
        dht = node.dht
        # Three calls into the Dht per event, made only when they can return something: the
        # node sends nothing, reports nothing, or has no request or operation deadline (so its
        # next deadline is its periodic one, which changes only in handle_timer, after which
        # timer_at is None) as often as not.
        out = dht._out  # (Dht.messages_to_send, inlined: the list is taken, a new one left)
        if out:
            dht._out = []
            # Underlay.one_way, inlined (the same arithmetic and the same draws, so a
            # run is the same bytes): this loop runs once per message sent.
            u = self.underlay
            blocked, loss = u._blocked, u.config.loss
            jitter, rand = u.config.jitter, u.rng.random
            ux, uy, uh = u.x, u.y, u.h
            a = node.index
            src = node.contact
            xa, ya, ha = ux[a], uy[a], uh[a]
            by_key = self.by_key
            heap, now, push = self._heap, self.now, heapq.heappush
            horizon = self._horizon
            seq = self._seq
            for dst_contact, msg in out:
                dst = by_key.get(dst_contact.key)
                if dst is None:
                    continue
                b = dst.index
                if blocked or loss:
                    delay = u.one_way(a, b)
                    if delay is None:
                        self.messages_lost += 1
                        continue
                else:
                    delay = (hypot(xa - ux[b], ya - uy[b]) + ha + uh[b]) / 1000.0 / 2.0 * (1.0 + jitter * rand())
                seq += 1
                when = now + delay
                if when < horizon:
                    push(heap, (when, seq, _MSG, src, dst, msg))
                else:
                    self._push_far((when, seq, _MSG, src, dst, msg))
            self._seq = seq
        if dht._events:
            while (ev := dht.next_event()) is not None:
                cb = self._waiting.pop((node.index, getattr(ev, "op_id", -1)), None)
                if cb is not None:
                    cb(ev)
        at = node.timer_at
        if at is None or dht._timers:
            t = dht.get_timer()
            if t is not None and (at is None or t < at):
                node.timer_at = t
                self._push(t, _TIMER, node)

    def call(self, node: SimNode, start: Callable[[Dht, float], int], done: Callable[[Any], None]) -> None:
        """Start an operation on a node; ``done(event)`` runs when it completes."""
        op_id = start(node.dht, self.now)
        self._waiting[(node.index, op_id)] = done
        self._after(node)

    # -- workloads ---------------------------------------------------------------
    def join(self, node: SimNode, via: SimNode | None) -> None:
        if via is None:
            self._after(node)
            return

        def done(ev: events.LookupDone) -> None:
            if ev.ok:
                self.metrics.joins_ok += 1
            else:
                self.metrics.joins_failed += 1

        self.call(node, lambda d, t: d.bootstrap([via.contact], t), done)

    def warm_tables(self) -> None:
        """Fill every routing table from the ID space at once (scenario join mode "warm").

        For each node and each prefix length b, up to k random nodes whose IDs
        share exactly b leading bits with it — the contacts a long-lived
        Kademlia node's buckets converge to. A documented shortcut for very
        large runs; the lookups measured afterwards run through the real code.
        """
        import bisect

        keys = sorted(self.by_key)
        k = self.dht_config.k
        n = len(keys)
        # Beyond about log2(n) + 12 shared bits, a range holds another node with
        # probability under n / 2^(log2 n + 12) = 1/4096: stop there.
        depth = min(256, n.bit_length() + 12)
        for node in self.nodes:
            own = node.contact.key
            table = node.dht.table
            for b in range(depth):
                bit = 255 - b
                lo = ((own >> (bit + 1)) << (bit + 1)) | (((~own >> bit) & 1) << bit)
                hi = lo | ((1 << bit) - 1)
                i, j = bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)
                if i >= j:
                    continue
                picks = range(i, j) if j - i <= k else self.rng.sample(range(i, j), k)
                for p in picks:
                    table.add(self.by_key[keys[p]].contact, self.now, keys[p])

    def lookup(self, on_done: Callable[[LookupRecord], None] | None = None) -> None:
        if len(self.alive) < 2:
            return
        src = self.random_alive()
        dst = self.random_alive(exclude=src)
        target = dst.contact.node_id
        start = self.now

        def done(ev: events.LookupDone) -> None:
            ok = ev.ok and bool(ev.contacts) and ev.contacts[0].node_id == target
            rec = LookupRecord(start, ok, ev.hops, ev.duration, ev.messages)
            self.metrics.lookups.append(rec)
            if self.lookup_observer is not None:
                self.lookup_observer(src, dst, ev, rec)
            if on_done:
                on_done(rec)

        self.call(src, lambda d, t: d.find_node(target, t), done)

    def put_then_get(self, value: bytes, get_delay: float, quorum: int = 1) -> None:
        src = self.random_alive()
        rec = ImmutableRecord(value)

        def put_done(ev: events.LookupDone) -> None:
            if ev.ok:
                self.metrics.puts_ok += 1
            else:
                self.metrics.puts_failed += 1

            def get() -> None:
                reader = self.random_alive(exclude=src)

                def got(gev: events.LookupDone) -> None:
                    if gev.ok and gev.values and gev.values[0].value == value:
                        self.metrics.gets_ok += 1
                    else:
                        self.metrics.gets_failed += 1

                self.call(reader, lambda d, t: d.get(rec.key, t, quorum=quorum), got)

            self.at(self.now + get_delay, get)

        self.call(src, lambda d, t: d.put(rec, t), put_done)

    def depart(self, node: SimNode, graceful: bool) -> None:
        if not node.alive:
            return
        if graceful:
            self.metrics.departures_graceful += 1
            self.call(node, lambda d, t: d.leave(t), lambda ev: self.kill(node))
            # A leaving node that never hears back still goes after a while.
            self.at(self.now + 10.0, lambda: self.kill(node))
        else:
            self.metrics.departures_crash += 1
            self.kill(node)

    def table_sizes(self) -> list[int]:
        return [len(n.dht.table) for n in self.alive]


def lookup_windows(records: list[LookupRecord], start: float, end: float, width: float = 60.0) -> list[dict]:
    buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if start <= r.start < end:
            b = buckets[int((r.start - start) // width)]
            b[0] += 1
            b[1] += r.ok
    return [
        {"t": round(i * width, 3), "lookups": v[0], "ok": v[1], "success_rate": round(v[1] / v[0], 6)}
        for i, v in sorted(buckets.items())
    ]
