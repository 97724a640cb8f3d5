"""The join phase of bench/dht's weftnet side alone, with what a join sends, and optionally a profile.

    .venv/bin/python bench/dht/join_phase.py [--nodes 500] [--fill N] [--profile out.prof]

Same joins as weftnet_side.py (same seed, nodes joined one by one from a random joined node with
``connect(join=True)``, one process). Prints the CPU seconds of the phase, the datagrams sent per join,
the mean routing-table size, and per join: the DHT requests by lookup kind (``bootstrap`` = the own-ID
lookup, ``fill`` = the table fill after it) and the sessionless counters (queries, answers, proofs).
``--fill``: ``join_fill`` for this run (default: the library's). ``--profile``: cProfile stats of the
phase to that file (read them with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import random
import time

from weftnet.core.dht import engine
from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig
from weftnet.runtime.driver import start_node

BY_KIND: collections.Counter = collections.Counter()


def _count_requests() -> None:
    """Count the DHT's requests by the kind of operation that sent them."""
    send = engine.Dht._request

    def counted(self, contact, msg, op_id, now, kind, hint=None, data=None):
        op = self._ops.get(op_id)
        BY_KIND["requests_" + (op.kind if op is not None else kind)] += 1
        return send(self, contact, msg, op_id, now, kind, hint, data)

    engine.Dht._request = counted


async def main(nodes: int, seed: int, fill: int | None, prof: cProfile.Profile | None,
               settings: dict | None = None) -> None:
    rng = random.Random(seed)
    joins = [rng.randrange(i) if i else None for i in range(nodes)]  # as common.workload_plan draws them
    system_rng = random.SystemRandom()
    cfg = NodeConfig.lab()
    if fill is not None:
        cfg.dht.join_fill = fill
    for name, value in (settings or {}).items():
        if not hasattr(cfg.dht, name):
            raise SystemExit(f"join_phase: no DHT setting {name!r}")
        setattr(cfg.dht, name, value)
    drivers = []
    c0 = time.process_time()
    if prof is not None:
        prof.enable()
    for i in range(nodes):
        d = await start_node(Identity.generate(rng), rng=system_rng, config=cfg)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            if not ev.ok:
                raise SystemExit(f"join of node {i} failed: {ev.error}")
        drivers.append(d)
    await asyncio.sleep(0.3 + getattr(cfg.dht, "fill_delay", 0.0))  # the last fills
    if prof is not None:
        prof.disable()
    cpu = time.process_time() - c0
    n = max(1, nodes - 1)
    table = sum(len(d.core.dht.table) for d in drivers) / nodes
    print(f"{nodes} nodes: join CPU {cpu:.2f} s, {sum(d.sent for d in drivers) / n:.1f} datagrams sent per join, "
          f"{table:.1f} contacts per table")
    per = collections.Counter(BY_KIND)
    for d in drivers:
        for k, v in d.core.sessionless.stats.items():
            per["sessionless_" + k] += v
    print("per join:", {k: round(v / n, 1) for k, v in sorted(per.items()) if v})
    for d in drivers:
        d.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fill", type=int, help="join_fill for this run")
    ap.add_argument("--profile", help="write cProfile stats of the join phase here")
    ap.add_argument("--per-node-caches", action="store_true",
                    help="each node its own caches of contacts, node IDs and key conversions (bench/dht/pernode.py)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a DHT setting for this run (a number, true or false); may be repeated")
    a = ap.parse_args()
    _count_requests()
    if a.per_node_caches:
        import pernode

        pernode.install()
    profile = cProfile.Profile() if a.profile else None
    settings = {}
    for item in a.set:
        name, _, value = item.partition("=")
        settings[name] = {"true": True, "false": False}.get(value.lower()) if value.lower() in ("true", "false") \
            else float(value) if "." in value else int(value)
    asyncio.run(main(a.nodes, a.seed, a.fill, profile, settings))
    if profile is not None:
        profile.dump_stats(a.profile)
