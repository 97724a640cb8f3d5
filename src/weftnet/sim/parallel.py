"""The simulator on several processes: conservative parallel discrete-event simulation.

``weft sim SCENARIO --procs N`` runs one size of a scenario on N processes. Each owns the nodes of
a block of underlay regions (``region * N // regions``) and runs their :class:`Dht` objects, the
same unmodified class as ever; only this scheduler and channel are partitioned.

Windows and the lookahead
-------------------------
A message from a node of one partition to a node of another takes at least the *lookahead* ``L``:
the smallest one-way delay the underlay model can give between two regions of different
partitions. Node coordinates here are a normal law around the region centre truncated at
``TRUNCATE`` standard deviations per axis (redrawn beyond, a chance of 6e-7 per draw), so with
``D`` the smallest distance between the centres of two regions on different sides, ``s`` the
spread and ``h`` the smallest access height::

    L = (max(0, D - 2 * TRUNCATE * sqrt(2) * s) + 2 h) / 2 / 1000 * min(1, 1 + jitter)   (seconds)

(35 ms for the bundled scenarios' six regions on two processes). Every process runs its events
in windows ``[T, T + L)``: nothing another process does in the window can reach it before
``T + L``, so at the window's end the processes swap the messages they sent each other (a pickled
batch per peer of plain tuples, nodes and contacts as node numbers: ``_encode``) and each knows
every event of the next window. The
windows end with each ``run_until``'s end, and skip stretches where no process has an event.

Determinism
-----------
The result must not depend on N, so nothing may depend on which events share a process:

* events run in ``(time, origin, sequence)`` order: the origin is the node that sent the
  message or armed the timer (its own counter numbers them), or -1 for the workload's calls
  (numbered by one counter that every process keeps alike);
* every node draws from its own random stream (:class:`NodeRandom`, seeded from the run's seed
  and the node's number): its DHT's draws and its messages' jitter and loss;
* the workload (arrivals, lookups, churn, partitions, the nodes' coordinates and keys) runs in
  every process from one ``random.Random(seed)``, on a replica of the membership that only
  workload calls change; each process starts the operations of its own nodes only;
* a graceful departure leaves the membership at once (no lookup or join picks it again) and the
  node stops when its Leave round ends or 10 s later, as in the classic engine;
* a record's read 30 s after its write (a call made by a node, not the workload) is sent to every
  process at the next window's end and runs everywhere at the same (time, origin, sequence).

Lookup records merge by the key of the event that completed them; counters add up. So
``--procs 1`` and ``--procs 2`` give the same bytes, but not the classic engine's (one random
source in global event order cannot be split): without ``--procs`` the classic engine runs.

The processes are forked; a worker whose parent or peer goes away sees its pipe close and exits.
"""

from __future__ import annotations

import copyreg
import heapq
import io
import math
import os
import pickle
import traceback
from math import hypot
from typing import Any, Callable

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig, MemoryStore, events
from weftnet.core.dht.messages import FindNode, Nodes
from weftnet.sim.engine import _HOSTS, _WINDOW, SIM_DHT, LookupRecord, Metrics, SimNode, Simulation
from weftnet.sim.scenario import Scenario
from weftnet.sim.underlay import REGION_CENTRES, Underlay, UnderlayConfig

__all__ = ["NodeRandom", "PSimulation", "ParallelError", "check_procs", "lookahead", "run_parallel",
           "run_size_parallel"]

_MSG, _TIMER, _CALL = 0, 1, 2
#: Node coordinates: a normal law around the region centre, truncated at this many standard deviations.
TRUNCATE = 5.0
_M64 = (1 << 64) - 1


class ParallelError(Exception):
    """A partitioned run cannot be made (bad --procs for the scenario) or a worker failed."""


class NodeRandom:
    """A node's own random stream: SplitMix64 (Steele, Lea, Flood, OOPSLA 2014), 64 bits a step.

    The few methods the DHT and the simulator call (``random``, ``getrandbits``, ``randbytes``,
    ``sample``), in 2 small objects a node instead of a Mersenne Twister's 2.5 KiB."""

    __slots__ = ("_s",)

    def __init__(self, seed: int, stream: int):
        self._s = (seed * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03 + 1) & _M64
        self._next()

    def _next(self) -> int:
        s = self._s = (self._s + 0x9E3779B97F4A7C15) & _M64
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)

    def random(self) -> float:
        s = self._s = (self._s + 0x9E3779B97F4A7C15) & _M64  # (_next inlined: a draw per message)
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0)

    def getrandbits(self, k: int) -> int:
        if k <= 64:
            return self._next() >> (64 - k) if k > 0 else 0
        out, got = 0, 0
        while got < k:
            out = (out << 64) | self._next()
            got += 64
        return out >> (got - k)

    def randbytes(self, n: int) -> bytes:
        return self.getrandbits(n * 8).to_bytes(n, "big") if n else b""

    def _below(self, n: int) -> int:
        k = n.bit_length()
        while True:
            r = self.getrandbits(k)
            if r < n:
                return r

    def sample(self, population, k: int) -> list:
        pool = list(population)
        for i in range(k):  # a partial Fisher-Yates shuffle
            j = i + self._below(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


class TruncatedUnderlay(Underlay):
    """The underlay with each coordinate's deviation from its region centre within TRUNCATE sigma,
    so that the lookahead between regions has a floor."""

    def add_node(self) -> int:
        c = self.config
        rng = self.rng
        r = rng.randrange(c.regions)
        cx, cy = REGION_CENTRES[r]
        s = c.region_spread_ms
        lim = TRUNCATE * abs(s)
        dx = rng.gauss(0.0, s)
        while abs(dx) > lim:
            dx = rng.gauss(0.0, s)
        dy = rng.gauss(0.0, s)
        while abs(dy) > lim:
            dy = rng.gauss(0.0, s)
        self.x.append(cx + dx)
        self.y.append(cy + dy)
        self.h.append(rng.uniform(c.min_access_ms, c.max_access_ms))
        self.region.append(r)
        return len(self.x) - 1


def part_of_region(region: int, regions: int, procs: int) -> int:
    return region * procs // regions


def lookahead(cfg: UnderlayConfig, procs: int) -> float:
    """The smallest one-way delay (s) between nodes of different partitions; inf for one process.

    Raises ParallelError when the scenario gives none (fewer regions than processes, or regions
    that touch with no access height)."""
    if procs == 1:
        return math.inf
    if procs > cfg.regions:
        raise ParallelError(f"--procs {procs} needs at least {procs} underlay regions (the scenario has "
                            f"{cfg.regions}): each process owns whole regions")
    d = min(math.dist(REGION_CENTRES[a], REGION_CENTRES[b])
            for a in range(cfg.regions) for b in range(cfg.regions)
            if part_of_region(a, cfg.regions, procs) != part_of_region(b, cfg.regions, procs))
    gap = max(0.0, d - 2 * TRUNCATE * math.sqrt(2) * abs(cfg.region_spread_ms))
    low = (gap + 2 * min(cfg.min_access_ms, cfg.max_access_ms)) / 2.0 / 1000.0 * min(1.0, 1.0 + cfg.jitter)
    low *= 0.999  # (float32 coordinates, float sums)
    if not low > 0:
        raise ParallelError(f"no lookahead for --procs {procs}: regions {cfg.regions}, spread "
                            f"{cfg.region_spread_ms} ms and access {cfg.min_access_ms} ms give messages "
                            "between partitions no minimum delay")
    return low


class PNode(SimNode):
    """A node as one partition sees it: every process has one per node (the membership's
    replica); only its owner has its ``dht``. ``alive``: listed in the membership (changed by the
    workload only); ``running``: answering (its owner's)."""

    __slots__ = ("part", "rng", "seq", "running")


_HOST_NUMBER = {h: i << 16 for i, h in enumerate(_HOSTS)}

# The contact table that unpickling resolves node numbers against (this process's run).
_NODES: list = []


def _contact(i: int) -> Contact:
    return _NODES[i].contact


def _nodes_msg(rid: int, ix: list) -> Nodes:
    nodes = _NODES
    return Nodes(rid, tuple([nodes[i].contact for i in ix]))


class PSimulation(Simulation):
    """One partition of a partitioned run (or the whole of a one-process run of the same model)."""

    #: ``run_until`` calls its ``progress`` after this many events (of this process), across windows.
    progress_every = 20000

    def __init__(self, seed: int, dht_config: DhtConfig | None, underlay: UnderlayConfig,
                 rank: int = 0, procs: int = 1, links: dict[int, Any] | None = None):
        super().__init__(seed, dht_config, underlay)
        self.seed = seed
        self.underlay = TruncatedUnderlay(underlay, self.rng)
        self.rank, self.procs = rank, procs
        self.links = links or {}
        self.lookahead = lookahead(underlay, procs)
        self._wstart = 0.0  # every event before this time has run, in every process
        self._outbox: dict[int, list] = {p: [] for p in self.links}
        self._bcast: list = []
        self._cur: tuple = (0.0, -1, 0)  # the running event's entry (its first three: its key)
        self._cur_n = 0
        self.lookup_keys: list = []  # beside metrics.lookups: the key of the event that ended each
        self.messages_popped = 0
        self.timer_events = 0
        self.windows = 0  # barriers passed
        self.messages_out = 0  # messages sent to another partition
        table = copyreg.dispatch_table.copy()
        table[Contact] = self._reduce_contact
        table[Nodes] = self._reduce_nodes
        table[FindNode] = _reduce_find_node
        self._dispatch = table

    # -- pickling of cross-partition batches ---------------------------------------
    def _reduce_contact(self, c: Contact):
        # Every contact in the simulator is a node's own (made once, in add_node): its number
        # names it. (Equal contacts made elsewhere would come back as the node's object, which
        # the DHT treats alike: its identity tests are shortcuts before an equality test.)
        node = self.by_key.get(c.key)
        if node is None:
            return (Contact, (c.public_key, c.endpoint))
        return (_contact, (node.index,))

    def _reduce_nodes(self, m: Nodes):
        by_key = self.by_key
        try:
            return (_nodes_msg, (m.rid, [by_key[c.key].index for c in m.contacts]))
        except KeyError:
            return (Nodes, (m.rid, m.contacts))

    def _dumps(self, obj) -> bytes:
        f = io.BytesIO()
        p = pickle.Pickler(f, protocol=pickle.HIGHEST_PROTOCOL)
        p.dispatch_table = self._dispatch
        p.dump(obj)
        return f.getvalue()

    # -- scheduling ------------------------------------------------------------------
    def _push(self, when: float, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        # A workload call (the only caller with kind _CALL from outside) or a node's timer.
        if kind == _CALL:
            self._seq += 1
            entry = (when, -1, self._seq, kind, a, b, c)
        else:
            a.seq += 1
            entry = (when, a.index, a.seq, kind, a, b, c)
        self._enter(entry)

    def _enter(self, entry: tuple) -> None:
        if entry[0] < self._horizon:
            heapq.heappush(self._heap, entry)
        else:
            self._push_far(entry)

    def _next_time(self) -> float:
        if self._heap:  # (every waiting event is at or after the horizon, so later than the heap's)
            return self._heap[0][0]
        return min(self._far) * _WINDOW if self._far else math.inf  # (a lower bound: its second's start)

    def run_until(self, t_end: float, progress: Callable[[float], None] | None = None) -> None:
        # progress(now) after every 20,000 events, counted across windows (a window of scale-1m has
        # ~300 a process: counted within one, the count would never get there).
        told = self.events_processed
        every = self.progress_every
        while True:
            end = self._wstart + self.lookahead
            final = end > t_end
            self._run_window(t_end if final else end, final)
            nxt = self._exchange()
            if progress is not None and self.events_processed - told >= every:
                told = self.events_processed
                progress(self.now)
            if final:
                self._wstart = t_end
                break
            self._wstart = max(end, nxt)
        self.now = max(self.now, t_end)

    def _run_window(self, end: float, inclusive: bool) -> None:
        heap = self._heap
        pop = heapq.heappop
        after = self._after
        horizon = self._horizon
        tick = popped = timers = delivered = 0
        try:
            while True:
                if not heap or heap[0][0] >= horizon:
                    if horizon > end or not self._next_window():
                        break
                    horizon = self._horizon
                    continue
                top = heap[0][0]
                if top > end or (top == end and not inclusive):
                    break
                entry = pop(heap)
                when, _origin, _seq, kind, a, b, c = entry
                self.now = when
                self._cur = entry
                self._cur_n = 0
                tick += 1
                if kind == _MSG:
                    popped += 1
                    if b.running:
                        delivered += 1
                        b.dht.on_message(a, c, when)
                        after(b)
                elif kind == _TIMER:
                    timers += 1
                    node = a
                    if node.running and node.timer_at == when:
                        self.timers_fired += 1
                        node.timer_at = None
                        dht = node.dht
                        t = dht.get_timer()
                        if t is not None and t > when:
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
                    if callable(a):
                        a()
                    else:
                        self._broadcast_call(a)
        finally:
            self.events_processed += tick
            self.messages_popped += popped
            self.timer_events += timers
            self.messages_delivered += delivered

    def _exchange(self) -> float:
        """The window's barrier: swap batches with every peer; returns the time of the next event anywhere."""
        global _NODES
        nxt = self._next_time()
        self.windows += 1
        if not self.links:
            return nxt
        _NODES = self.nodes
        out = self._outbox
        bcast = self._bcast
        self._bcast = []
        low = min([nxt] + [b[0] for b in bcast])
        got: list = []
        for p in sorted(self.links):
            conn = self.links[p]
            batch = out[p]
            out[p] = []
            self.messages_out += len(batch)
            if batch:
                low = min(low, min(batch)[0])
            payload = self._dumps(("ok", low, self._encode(batch), bcast))
            try:
                if self.rank < p:
                    conn.send_bytes(payload)
                    data = conn.recv_bytes()
                else:
                    data = conn.recv_bytes()
                    conn.send_bytes(payload)
            except (EOFError, OSError):
                raise ParallelError(f"process {p} of the run went away") from None
            msg = pickle.loads(data)
            if msg[0] != "ok":
                raise ParallelError(f"process {p} failed: {msg[1]}")
            got.append(msg)
        for _tag, peer_low, msgs, calls in got:
            low = min(low, peer_low)
            self._decode(msgs)
            for when, origin, seq, spec in calls:
                self._enter((when, origin, seq, _CALL, spec, None, None))
        return low

    def _encode(self, batch: list) -> list:
        """A peer's messages as tuples of numbers and bytes (the C pickler's fast path, no reducer
        called): a FIND_NODE as its request ID and target, a NODES answer as its request ID and its
        contacts' node numbers; anything else (rare: Leave, Store, ...) as itself, for the reducers."""
        # A node's number from its contact's endpoint, (_HOSTS[number >> 16], number & 0xFFFF)
        # (add_node): no lookup in by_key, whose 256-bit keys and nodes are out of cache at a
        # million nodes (12-15 us for a NODES of 20 at 100,000 nodes against 21-24). Every contact
        # in a run is a node's own (made in add_node), so its endpoint names it.
        host = _HOST_NUMBER if len(self.nodes) <= 1 << 24 else {}  # (beyond, endpoints repeat: the reducers)
        enc = []
        add = enc.append
        for when, a, seq, b, m in batch:
            t = type(m)
            if t is FindNode:
                add((when, a, seq, b, 0, m.rid, m.target))
            elif t is Nodes:
                try:
                    add((when, a, seq, b, 1, m.rid, [host[c.endpoint[0]] | c.endpoint[1] for c in m.contacts]))
                except KeyError:  # (a contact that is no node's: not in the simulator's own runs)
                    add((when, a, seq, b, 2, m, None))
            else:
                add((when, a, seq, b, 2, m, None))
        return enc

    def _decode(self, msgs: list) -> None:
        """Queue a peer's batch (made by ``_encode``)."""
        nodes = self.nodes
        heap, push, horizon, far = self._heap, heapq.heappush, self._horizon, self._push_far
        for when, a, seq, b, kind, x, y in msgs:
            if kind == 0:
                m = FindNode(x, y)
            elif kind == 1:
                m = Nodes(x, tuple([nodes[i].contact for i in y]))
            else:
                m = x
            entry = (when, a, seq, _MSG, nodes[a].contact, nodes[b], m)
            if when < horizon:
                push(heap, entry)
            else:
                far(entry)

    def _broadcast_call(self, spec: tuple) -> None:
        if spec[0] == "get":
            _, value, src, quorum = spec
            self._get(value, self.nodes[src], quorum)

    # -- nodes ------------------------------------------------------------------------
    def add_node(self) -> PNode:
        index = len(self.nodes)
        u = self.underlay
        u.add_node()
        contact = Contact(self.rng.randbytes(32), (_HOSTS[(index >> 16) & 0xFF], index & 0xFFFF))
        part = part_of_region(u.region[index], u.config.regions, self.procs)
        mine = part == self.rank
        if mine:
            rng = NodeRandom(self.seed, index)
            dht = Dht(contact, rng, self.now, self.dht_config, MemoryStore())
        else:
            rng = dht = None
        node = PNode(index, dht, contact)
        node.part, node.rng, node.seq, node.running = part, rng, 0, mine
        self.nodes.append(node)
        self.by_key[contact.key] = node
        node.slot = len(self.alive)
        self.alive.append(node)
        return node

    def _unlist(self, node: PNode) -> None:
        if not node.alive:
            return
        node.alive = False
        last = self.alive.pop()
        if last is not node:
            last.slot = node.slot
            self.alive[node.slot] = last
        node.slot = -1

    def kill(self, node: PNode) -> None:
        self._unlist(node)
        node.running = False

    def table_sizes(self) -> list[int]:
        return [len(n.dht.table) for n in self.alive if n.dht is not None]

    # -- the channel --------------------------------------------------------------------
    def _after(self, node: PNode) -> None:
        dht = node.dht
        out = dht._out
        if out:
            dht._out = []
            u = self.underlay
            blocked, loss = u._blocked, u.config.loss
            jitter = u.config.jitter
            rand = node.rng.random
            ux, uy, uh, ureg = u.x, u.y, u.h, u.region
            a = node.index
            src = node.contact
            xa, ya, ha = ux[a], uy[a], uh[a]
            by_key = self.by_key
            now = self.now
            rank = self.rank
            heap, push, horizon = self._heap, heapq.heappush, self._horizon
            outbox = self._outbox
            seq = node.seq
            for dst_contact, msg in out:
                dst = by_key.get(dst_contact.key)
                if dst is None:
                    continue
                b = dst.index
                if blocked and (ureg[a], ureg[b]) in blocked:
                    self.messages_lost += 1
                    continue
                if loss and rand() < loss:
                    self.messages_lost += 1
                    continue
                delay = (hypot(xa - ux[b], ya - uy[b]) + ha + uh[b]) / 1000.0 / 2.0 * (1.0 + jitter * rand())
                seq += 1
                if dst.part == rank:
                    when = now + delay
                    if when < horizon:
                        push(heap, (when, a, seq, _MSG, src, dst, msg))
                    else:
                        self._push_far((when, a, seq, _MSG, src, dst, msg))
                else:
                    outbox[dst.part].append((now + delay, a, seq, b, msg))
            node.seq = seq
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

    def call(self, node: PNode, start: Callable[[Dht, float], int], done: Callable[[Any], None]) -> None:
        if node.dht is None or not node.running:
            return  # another process's node: its owner starts the operation
        op_id = start(node.dht, self.now)
        self._waiting[(node.index, op_id)] = done
        self._after(node)

    # -- workloads -----------------------------------------------------------------------
    def join(self, node: PNode, via: PNode | None) -> None:
        if via is None:
            if node.dht is not None:
                self._after(node)
            return
        super().join(node, via)

    def _record(self, rec: LookupRecord) -> None:
        self._cur_n += 1
        self.metrics.lookups.append(rec)
        cur = self._cur
        self.lookup_keys.append((cur[0], cur[1], cur[2], self._cur_n))

    def lookup(self, on_done: Callable[[LookupRecord], None] | None = None) -> None:
        if self.lookup_observer is not None:
            raise ParallelError("a lookup observer needs the classic engine (no --procs)")
        if len(self.alive) < 2:
            return
        src = self.random_alive()
        dst = self.random_alive(exclude=src)
        if src.dht is None:
            return
        target = dst.contact.node_id
        start = self.now

        def done(ev: events.LookupDone) -> None:
            ok = ev.ok and bool(ev.contacts) and ev.contacts[0].node_id == target
            rec = LookupRecord(start, ok, ev.hops, ev.duration, ev.messages)
            self._record(rec)
            if on_done:
                on_done(rec)

        self.call(src, lambda d, t: d.find_node(target, t), done)

    def put_then_get(self, value: bytes, get_delay: float, quorum: int = 1) -> None:
        src = self.random_alive()
        if src.dht is None:
            return
        from weftnet.core.dht import ImmutableRecord
        rec = ImmutableRecord(value)

        def put_done(ev: events.LookupDone) -> None:
            if ev.ok:
                self.metrics.puts_ok += 1
            else:
                self.metrics.puts_failed += 1
            # The read is the workload's (it picks a reader among all nodes): every process runs it.
            src.seq += 1
            entry = (self.now + get_delay, src.index, src.seq, _CALL, ("get", value, src.index, quorum), None, None)
            if self.links:
                self._bcast.append(entry[:3] + (entry[4],))
            self._enter(entry)

        self.call(src, lambda d, t: d.put(rec, t), put_done)

    def _get(self, value: bytes, src: PNode, quorum: int) -> None:
        from weftnet.core.dht import ImmutableRecord
        key = ImmutableRecord(value).key
        reader = self.random_alive(exclude=src)

        def got(gev: events.LookupDone) -> None:
            if gev.ok and gev.values and gev.values[0].value == value:
                self.metrics.gets_ok += 1
            else:
                self.metrics.gets_failed += 1

        self.call(reader, lambda d, t: d.get(key, t, quorum=quorum), got)

    def depart(self, node: PNode, graceful: bool) -> None:
        if not node.alive:
            return
        if graceful:
            self.metrics.departures_graceful += 1
            self._unlist(node)  # out of the membership now; it stops when its Leave round ends

            def stop(_ev=None) -> None:
                node.running = False

            self.call(node, lambda d, t: d.leave(t), stop)
            self.at(self.now + 10.0, stop)
        else:
            self.metrics.departures_crash += 1
            self.kill(node)

    def warm_tables(self) -> None:
        import bisect

        keys = sorted(self.by_key)
        k = self.dht_config.k
        n = len(keys)
        depth = min(256, n.bit_length() + 12)
        for node in self.nodes:
            if node.dht is None:
                continue
            own = node.contact.key
            table = node.dht.table
            for b in range(depth):
                bit = 255 - b
                lo = ((own >> (bit + 1)) << (bit + 1)) | (((~own >> bit) & 1) << bit)
                hi = lo | ((1 << bit) - 1)
                i, j = bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)
                if i >= j:
                    continue
                picks = range(i, j) if j - i <= k else node.rng.sample(range(i, j), k)
                for p in picks:
                    table.add(self.by_key[keys[p]].contact, self.now, keys[p])


def _reduce_find_node(m: FindNode):
    return (FindNode, (m.rid, m.target))


# -- running a size on N processes ---------------------------------------------------------------

def _partial(sim: PSimulation, marks: dict) -> dict:
    """What one process contributes to the result."""
    lk, recs = sim.lookup_keys, sim.metrics.lookups
    return {
        "marks": marks,
        "lookups": list(zip(lk[:marks["lookups_end"]], recs[:marks["lookups_end"]])),
        "churn": list(zip(lk[marks["churn_before"]:], recs[marks["churn_before"]:])),
        "metrics": sim.metrics.__dict__ | {"lookups": []},
        "tables": sim.table_sizes(),
        "alive": len(sim.alive),
        "node_events": sim.messages_popped + sim.timer_events,
        "calls": sim.calls_run,
        "delivered": sim.messages_delivered,
        "lost": sim.messages_lost,
        "underlay_bytes": sim.underlay.memory_bytes(),
        "usage": _usage(),
    }


def _usage() -> dict:
    """This process's CPU (user + system) and peak RSS so far: for run.json, not the result's bytes."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"pid": os.getpid(), "cpu_s": round(r.ru_utime + r.ru_stime, 2), "peak_rss_mib": round(r.ru_maxrss / 1024, 1)}


def _drive(sim: PSimulation, sc: Scenario, n: int, progress) -> dict:
    from weftnet.sim.runner import drive
    marks = drive(sim, sc, n, sim.dht_config, progress)
    return _partial(sim, marks)


def _worker(make: Callable, body: Callable, rank: int, procs: int, links: dict, drop: list) -> None:
    for c in drop:  # the other processes' pipe ends: closed, so that a peer's exit reads as EOF here
        c.close()
    try:
        part = body(make(rank, procs, links), None)
        payload = pickle.dumps(("done", part), protocol=pickle.HIGHEST_PROTOCOL)
    except ParallelError as e:
        payload = pickle.dumps(("error", str(e)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        payload = pickle.dumps(("error", f"{type(e).__name__}: {e} ({traceback.format_exc(limit=3)!r})"))
    try:
        for p, conn in links.items():
            if p == 0:
                conn.send_bytes(payload)
            else:
                conn.close()
    except OSError:
        pass
    os._exit(0)


def run_parallel(procs: int, make: Callable[[int, int, dict], PSimulation],
                 body: Callable[[PSimulation, Any], Any], progress: Any = None) -> list:
    """``body(make(rank, procs, links), progress)`` in ``procs`` processes (rank 0 is this one,
    the others forked); returns their results by rank. A failure anywhere raises ParallelError
    here, and no worker outlives the call."""
    import multiprocessing

    if procs < 1:
        raise ParallelError(f"--procs must be at least 1, not {procs}")
    pipes = {}
    for a in range(procs):
        for b in range(a + 1, procs):
            pipes[(a, b)] = multiprocessing.Pipe()

    def ends(rank: int) -> dict:
        return {(b if a == rank else a): (pipes[(a, b)][0] if a == rank else pipes[(a, b)][1])
                for (a, b) in pipes if rank in (a, b)}

    def others(mine: dict) -> list:
        return [c for pair in pipes.values() for c in pair if all(c is not m for m in mine.values())]

    ctx = multiprocessing.get_context("fork")
    workers = []
    mine = ends(0)
    try:
        for rank in range(1, procs):
            theirs = ends(rank)
            w = ctx.Process(target=_worker, args=(make, body, rank, procs, theirs, others(theirs)), daemon=True,
                            name=f"weft-sim-{rank}")
            w.start()
            workers.append(w)
        for c in others(mine):
            c.close()
        parts = [body(make(0, procs, mine), progress)]
        for rank in range(1, procs):
            try:
                msg = pickle.loads(mine[rank].recv_bytes())
            except (EOFError, OSError):
                raise ParallelError(f"process {rank} of the run went away") from None
            if msg[0] != "done":
                raise ParallelError(f"process {rank} failed: {msg[1]}")
            parts.append(msg[1])
    finally:
        for c in mine.values():
            c.close()
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
                w.join()
    return parts


def check_procs(sc: Scenario, procs: int) -> float:
    """The lookahead of ``sc`` on ``procs`` processes; ParallelError (one line) if it cannot run so."""
    if procs < 1:
        raise ParallelError(f"--procs must be at least 1, not {procs}")
    if sc.nat is not None:
        raise ParallelError("--procs does not run NAT scenarios (they have their own experiment)")
    return lookahead(UnderlayConfig(**sc.underlay), procs)


def run_size_parallel(sc: Scenario, n: int, seed: int, procs: int,
                      progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """One size of ``sc`` on ``procs`` processes (this one is the first); the same bytes for any ``procs``."""
    check_procs(sc, procs)
    dcfg = DhtConfig(**{**SIM_DHT, **sc.dht})

    def make(rank: int, procs: int, links: dict) -> PSimulation:
        return PSimulation(seed, dcfg, UnderlayConfig(**sc.underlay), rank, procs, links)

    parts = run_parallel(procs, make, lambda sim, prog: _drive(sim, sc, n, prog), progress)
    return _merge(sc, n, parts)


def _merge(sc: Scenario, n: int, parts: list[dict]) -> dict[str, Any]:
    from weftnet.sim.runner import assemble

    first = parts[0]
    m = Metrics()
    for field in ("joins_ok", "joins_failed", "puts_ok", "puts_failed", "gets_ok", "gets_failed"):
        setattr(m, field, sum(p["metrics"][field] for p in parts))
    for field in ("departures_crash", "departures_graceful", "arrivals"):  # the workload's: alike everywhere
        setattr(m, field, first["metrics"][field])
    lookups = [r for _k, r in sorted((kr for p in parts for kr in p["lookups"]), key=lambda kr: kr[0])]
    churn = [r for _k, r in sorted((kr for p in parts for kr in p["churn"]), key=lambda kr: kr[0])]
    tables = [s for p in parts for s in p["tables"]]
    events = sum(p["node_events"] for p in parts) + first["calls"]
    out = assemble(sc, n, first["marks"], m, lookups, churn, tables, first["alive"], events,
                   sum(p["delivered"] for p in parts), sum(p["lost"] for p in parts), first["underlay_bytes"])
    out["processes"] = [p["usage"] for p in parts]  # measured on the host: run.json's, not summary.json's
    return out
