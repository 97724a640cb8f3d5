"""bench/dht's joins, puts and gets over NodeCores wired in memory (as bench/dht/join_core.py wires them: no
sockets, no event loop, every random source seeded), so that under callgrind the puts' and gets' instruction
counts do not depend on the machine's load. Prints the CPU seconds of each phase, records held per node,
datagrams, and puts and gets that succeeded.
    cd bench/dht && PYTHONPATH=<tree>/src python ../results/dmem17/put_core.py --nodes 100 [--phase put]
    cd bench/dht && PYTHONHASHSEED=0 PYTHONPATH=<tree>/src valgrind --tool=callgrind python ../results/dmem17/put_core.py ...
``--phase join``: stop after the joins; ``put``: after the puts; ``get`` (default): all three. The difference
between two runs' instruction counts is the cost of the later phase."""
from __future__ import annotations

import argparse
import collections
import heapq
import random
import sys
import time

sys.path.insert(0, ".")
from common import workload_plan  # noqa: E402

from weftnet.core.identity import Identity  # noqa: E402
from weftnet.core.node import NodeConfig, NodeCore  # noqa: E402

DELAY = 50e-6
T0 = 1_000_000.0


def main(nodes: int, records: int, seed: int, phase: str) -> None:
    joins, puts, gets = workload_plan(seed, nodes, records)
    rng = random.Random(seed)
    node_rng = random.Random(seed + 1)
    cfg = NodeConfig.lab()
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

    def run(done) -> None:
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
                clock[0] = max(clock[0], t)
                core.handle_timer(clock[0])
                flush(core)
                break
            else:
                return

    def request(core: NodeCore, start):
        op = start(core, clock[0])
        flush(core)
        result: list = []

        def finished() -> bool:
            while (ev := core.next_event()) is not None:
                if getattr(ev, "op_id", None) == op:
                    result.append(ev)
            return bool(result)

        run(finished)
        return result[0] if result else None

    cpu = {}
    c0 = time.process_time()
    for i in range(nodes):
        core = NodeCore(Identity.generate(rng), node_rng, clock[0], cfg)
        endpoint = ("127.0.0.1", 10_000 + i)
        core.set_local_endpoint(endpoint)
        cores.append(core)
        by_endpoint[endpoint] = core
        if joins[i] is not None:
            ev = request(core, lambda c, t, ep=cores[joins[i]].endpoint: c.connect(ep, t, join=True))
            if ev is None or not ev.ok:
                raise SystemExit(f"join of node {i} failed")
    cpu["join"] = time.process_time() - c0
    n_join = sent[0]
    put_ok = get_ok = 0
    keys = []
    if phase in ("put", "get"):
        c0 = time.process_time()
        for _key, value, who in puts:
            ev = request(cores[who], lambda c, t, v=value: c.put(v, t))
            put_ok += bool(ev and ev.ok)
            keys.append(ev.key if ev else None)
        cpu["put"] = time.process_time() - c0
    n_put = sent[0] - n_join
    if phase == "get":
        c0 = time.process_time()
        for (_key, value, _), rkey, who in zip(puts, keys, gets):
            ev = request(cores[who], lambda c, t, k=rkey: c.get(k, t))
            get_ok += bool(ev and ev.ok and ev.value == value)
        cpu["get"] = time.process_time() - c0
    held = sum(len(c.dht.index) for c in cores) / nodes
    print(f"{nodes} nodes: CPU {', '.join(f'{k} {v:.2f} s' for k, v in cpu.items())}; datagrams: joins {n_join}, "
          f"puts {n_put}, gets {sent[0] - n_join - n_put}; records held per node {held:.1f}; "
          f"put {put_ok}/{len(puts) if phase != 'join' else 0}, read {get_ok}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--phase", choices=("join", "put", "get"), default="get")
    ap.add_argument("--per-node-caches", action="store_true")
    a = ap.parse_args()
    if a.per_node_caches:
        import pernode

        pernode.install()
    main(a.nodes, a.records, a.seed, a.phase)
