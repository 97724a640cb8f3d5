"""bench/dht's joins over NodeCores wired in memory: the core's work alone, countable exactly.

    .venv/bin/python bench/dht/join_core.py [--nodes 200] [--fill N] [--set NAME=VALUE ...]
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=cg.out .venv/bin/python bench/dht/join_core.py

The same joins as ``join_phase.py`` (and ``weftnet_side.py``): node i joins through node ``joins[i]`` with
``connect(join=True)``, one after the other, then the fills run out. But no sockets and no event loop: each
datagram goes straight to the NodeCore it is addressed to (first in, first out, 50 µs of virtual time each),
and timers fire in virtual time. Every random source is seeded, so a run does the same work every time: under
callgrind its instruction count does not depend on what else the machine runs (CPU seconds on a shared
machine move by ±10% between identical runs; bench/results/djoin6). What it leaves out is what both DHTs of
bench/dht pay per datagram: system calls and the event loop.

Prints the CPU seconds of the joins (not comparable with bench/dht's, which include the above), datagrams
per join, contacts per table, the sessionless counters per join, and the DHT's requests per join by the
kind of lookup that sent them (``bootstrap``: the own-ID lookup; ``fill``: the table fill after it, also by
the depth of the bucket it fills, 0 = the farther half of the ID space).
"""

from __future__ import annotations

import argparse
import collections
import heapq
import random
import time

from weftnet.core.dht import engine
from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore

DELAY = 50e-6  # virtual seconds a datagram takes
T0 = 1_000_000.0


BY_KIND: collections.Counter = collections.Counter()


def _count_requests() -> None:
    """Count the DHT's requests by the kind of operation that sent them (``bootstrap`` = the own-ID
    lookup, ``fill`` = the table fill after it), and the fill's by the depth of the bucket it fills."""
    send = engine.Dht._request

    def counted(self, contact, msg, op_id, now, kind, hint=None, data=None):
        op = self._ops.get(op_id)
        what = op.kind if op is not None else kind
        BY_KIND["requests_" + what] += 1
        if what == "fill" and op.lookup is not None:
            BY_KIND[f"fill_depth_{self.table.bucket_for(op.lookup.target).depth}"] += 1
        return send(self, contact, msg, op_id, now, kind, hint, data)

    engine.Dht._request = counted


def main(nodes: int, seed: int, settings: dict) -> None:
    _count_requests()
    rng = random.Random(seed)
    joins = [rng.randrange(i) if i else None for i in range(nodes)]  # as common.workload_plan draws them
    node_rng = random.Random(seed + 1)  # (bench/dht's nodes share one SystemRandom: here a seeded one)
    cfg = NodeConfig.lab()
    for name, value in settings.items():
        if not hasattr(cfg.dht, name):
            raise SystemExit(f"join_core: no DHT setting {name!r}")
        setattr(cfg.dht, name, value)
    cores: list[NodeCore] = []
    by_endpoint: dict = {}
    queue: collections.deque = collections.deque()
    timers: list = []
    clock = [T0]
    sent = [0]

    def flush(core: NodeCore) -> None:
        for data, dst in core.datagrams_to_send(clock[0]):
            sent[0] += 1
            queue.append((core.endpoint, dst, data))
        t = core.get_timer()
        if t is not None:
            heapq.heappush(timers, (t, id(core), core))

    def run(done, until: float | None = None) -> None:
        """Deliver and fire timers until ``done()`` (checked when nothing is in flight), or until
        nothing is left before ``until``."""
        while True:
            while queue:
                src, dst, data = queue.popleft()
                clock[0] += DELAY
                core = by_endpoint.get(dst)
                if core is not None:
                    core.receive_datagram(data, src, clock[0])
                    flush(core)
            if done():
                return
            while timers:
                t, _, core = heapq.heappop(timers)
                due = core.get_timer()
                if due is None:
                    continue
                if due > t:
                    heapq.heappush(timers, (due, id(core), core))
                    continue
                if until is not None and t > until:
                    heapq.heappush(timers, (t, id(core), core))
                    return
                clock[0] = max(clock[0], t)
                core.handle_timer(clock[0])
                flush(core)
                break
            else:
                return

    c0 = time.process_time()
    for i in range(nodes):
        core = NodeCore(Identity.generate(rng), node_rng, clock[0], cfg)
        endpoint = ("127.0.0.1", 10_000 + i)
        core.set_local_endpoint(endpoint)
        cores.append(core)
        by_endpoint[endpoint] = core
        if joins[i] is None:
            continue
        op = core.connect(cores[joins[i]].endpoint, clock[0], join=True)
        flush(core)
        result: list = []

        def joined(core=core, op=op, result=result) -> bool:
            while (ev := core.next_event()) is not None:
                if getattr(ev, "op_id", None) == op:
                    result.append(ev)
            return bool(result)

        run(joined)
        if not result or not result[0].ok:
            raise SystemExit(f"join of node {i} failed: {result[0].error if result else 'no answer'}")
    end = clock[0] + 1.0  # the last fills (their requests and fallbacks end well within a second)
    run(lambda: False, until=end)
    cpu = time.process_time() - c0
    n = max(1, nodes - 1)
    table = sum(len(c.dht.table) for c in cores) / nodes
    per = collections.Counter()
    for c in cores:
        for k, v in c.sessionless.stats.items():
            per[k] += v
    print(f"{nodes} nodes: core CPU {cpu:.2f} s, {sent[0] / n:.1f} datagrams per join, {table:.1f} contacts per table")
    print("per join:", {k: round(v / n, 1) for k, v in sorted(per.items()) if v})
    print("requests per join:", {k: round(v / n, 2) for k, v in sorted(BY_KIND.items())})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fill", type=int, help="join_fill for this run")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a DHT setting for this run (a number, true or false); may be repeated")
    a = ap.parse_args()
    settings: dict = {}
    if a.fill is not None:
        settings["join_fill"] = a.fill
    for item in a.set:
        name, _, value = item.partition("=")
        low = value.lower()
        settings[name] = (low == "true") if low in ("true", "false") else float(value) if "." in value else int(value)
    main(a.nodes, a.seed, settings)
