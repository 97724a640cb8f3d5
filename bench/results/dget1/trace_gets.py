"""Per-get trace of bench/dht's weftnet side (the same workload, per-node caches, Python's collector).

    cd bench/dht && PYTHONPATH=../../src python ../results/dget1/trace_gets.py --nodes 100 [--out F.json]

For each get: wall and CPU time, datagrams received by all nodes, the lookup's requests and hops,
X25519 static DHs computed (first contacts) on either end, collector passes, driver timer wake-ups,
sessionless fallbacks, proofs sent, and which nodes answered with the record (over a session or
sessionless). Prints a summary of the slowest 10% and the gets grouped by (requests, hops, X25519s,
collections). ``--stages``: wall time per stage; ``--profile KEY``: cProfile of the gets only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "dht"))
from common import cpu_now, now, pct, workload_plan  # noqa: E402

from weftnet.core.identity import Identity  # noqa: E402
from weftnet.runtime.driver import start_node, UdpDriver  # noqa: E402
import weftnet.core.dht.sessionless as sl  # noqa: E402

PROFILE = ""
STAGES = False
COLD_ALL = False
C = {"value_from": [], "dh_again": 0, "stage": {}, "asker": None, "dh": 0, "gc": 0, "gc_gen": [], "timers": 0, "reads": 0}


def _install_counters() -> None:
    plain = sl.static_dh

    seen = set()

    def counted(identity, peer):
        C["dh"] += 1
        pair = (identity.public_key, peer)
        if pair in seen:
            C["dh_again"] += 1  # computed before by this node: evicted from its kept keys since
        seen.add(pair)
        return plain(identity, peer)

    sl.static_dh = counted
    gc.callbacks.append(lambda phase, info: (phase == "start") and (C.__setitem__("gc", C["gc"] + 1),
                                                                    C["gc_gen"].append(info["generation"])))
    ot = UdpDriver._on_timer

    def on_timer(self):
        C["timers"] += 1
        return ot(self)

    UdpDriver._on_timer = on_timer
    orr = UdpDriver._on_readable

    def on_readable(self):
        C["reads"] += 1
        return orr(self)

    UdpDriver._on_readable = on_readable

    def timed(cls, name, key):
        fn = getattr(cls, name)

        def wrapper(self, *a, **kw):
            t = now()
            try:
                return fn(self, *a, **kw)
            finally:
                k = key(self) if callable(key) else key
                C["stage"][k] = C["stage"].get(k, 0.0) + now() - t

        setattr(cls, name, wrapper)

    if STAGES:
        from weftnet.core.node import NodeCore

        timed(UdpDriver, "_on_readable", lambda d: "read (asker)" if d is C["asker"] else "read (answerer)")
        timed(NodeCore, "get", "core.get")
        timed(UdpDriver, "transmit", lambda d: "transmit (asker)" if d is C["asker"] else "transmit (answerer)")
        import weftnet.core.dht.sessionless as m
        for cls_, name in ((m.Sessionless, "_on_query"), (m.Sessionless, "_on_answer"), (m.Sessionless, "ask")):
            timed(cls_, name, "sl." + name)
        import weftnet.core.session.transport as tr
        timed(tr.SecureTransport, "receive_datagrams", lambda t: "transport.receive_datagrams")
        timed(NodeCore, "_pump", lambda c: "core._pump")
        timed(NodeCore, "_on_dht_event", "core._on_dht_event")
        from weftnet.core.dht.engine import Dht as D
        for name in ("on_message", "on_reply", "answer", "get", "_finish"):
            timed(D, name, "dht." + name)
    from weftnet.core.dht.engine import Dht

    cg = Dht._complete_get

    def complete_get(self, op, values, now, hops, messages):
        C["last"] = (hops, messages, op.lookup.reseeds if op.lookup else None)
        return cg(self, op, values, now, hops, messages)

    Dht._complete_get = complete_get
    onr, onm = Dht.on_reply, Dht.on_message

    def on_reply(self, sender, msg, now, learn):  # an answer to a sessionless query
        if type(msg).__name__ == "Value":
            C["value_from"].append((sender.key, "sessionless"))
        return onr(self, sender, msg, now, learn)

    def on_message(self, sender, msg, now, *a, **kw):  # a message over a session
        if type(msg).__name__ == "Value":
            C["value_from"].append((sender.key, "session"))
        return onm(self, sender, msg, now, *a, **kw)

    Dht.on_reply, Dht.on_message = on_reply, on_message


async def main(nodes: int, records: int, seed: int, out: str | None) -> None:
    import weftnet_side

    joins, puts, gets = workload_plan(seed, nodes, records)
    rng = random.Random(seed)
    system_rng = random.SystemRandom()
    config = weftnet_side._config(True)
    drivers = []
    for i in range(nodes):
        d = await start_node(Identity.generate(rng), rng=system_rng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            assert ev.ok
        drivers.append(d)
    keys = []
    for key, value, who in puts:
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        keys.append(ev.key)
    if COLD_ALL:
        for d in drivers:
            d.core.dht.has_session = lambda c: False
    index = {d.core.dht.key: i for i, d in enumerate(drivers)}
    rows = []

    def fallbacks():
        return sum(d.core.sessionless.stats["fallbacks"] for d in drivers)

    def proofs():
        return sum(d.core.sessionless.stats["proofs_sent"] for d in drivers)

    prof = None
    if PROFILE:
        import cProfile
        prof = cProfile.Profile()
    for n, ((key, value, putter), rkey, who) in enumerate(zip(puts, keys, gets)):
        base = sum(d.received for d in drivers)
        snap = dict(C, gc_gen=len(C["gc_gen"]))
        f0, p0 = fallbacks(), proofs()
        if prof is not None:
            prof.enable()
        C["asker"] = drivers[who]
        C["value_from"] = []
        C["stage"] = {}
        t, c = now(), cpu_now()
        ev = await drivers[who].request(lambda core, tt, k=rkey: core.get(k, tt))
        lat, cpu = now() - t, cpu_now() - c
        if prof is not None:
            prof.disable()
        rows.append({
            "i": n, "who": who, "ms": round(lat * 1000, 3), "cpu_ms": round(cpu * 1000, 3),
            "ok": ev.ok and ev.value == value, "dgrams": sum(d.received for d in drivers) - base,
            "values_from": [(index[k], how) for k, how in C["value_from"]],
            "requests": C["last"][1], "hops": C["last"][0], "dh": C["dh"] - snap["dh"], "dh_again": C["dh_again"] - snap["dh_again"], "gc": C["gc"] - snap["gc"],
            "gc_gen": C["gc_gen"][snap["gc_gen"]:], "timers": C["timers"] - snap["timers"],
            "reads": C["reads"] - snap["reads"], "fallbacks": fallbacks() - f0, "proofs": proofs() - p0,
            **({"stages": {k: round(v * 1000, 3) for k, v in C["stage"].items()}} if STAGES else {}),
        })
    if prof is not None:
        import pstats
        pstats.Stats(prof).sort_stats(PROFILE).print_stats(45)
    for d in drivers:
        d.close()
    lat = [r["ms"] for r in rows]
    cpu = [r["cpu_ms"] for r in rows]
    print(f"p50 {pct(lat, 50):.3f} p95 {pct(lat, 95):.3f} mean {statistics.fmean(lat):.3f} ms; ok {sum(r['ok'] for r in rows)}; "
          f"CPU p50 {pct(cpu, 50):.3f} p95 {pct(cpu, 95):.3f} mean {statistics.fmean(cpu):.3f} ms")
    slow = sorted(rows, key=lambda r: -r["ms"])[: max(1, len(rows) // 10)]
    keys_ = ["ms", "cpu_ms", "dgrams", "requests", "hops", "dh", "dh_again", "gc", "timers", "reads", "fallbacks", "proofs"]
    for name, sel in (("all", rows), ("slowest 10%", slow)):
        print(name, {k: round(statistics.fmean(r[k] for r in sel), 3) for k in keys_})
    for r in slow:
        print(json.dumps(r))
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["requests"], r["hops"], r["dh"], r["gc"]), []).append(r["ms"])
    print("(requests, hops, X25519s, collections): gets, median ms, max ms")
    for g in sorted(groups):
        print(g, len(groups[g]), round(statistics.median(groups[g]), 3), round(max(groups[g]), 3))
    answers = [how for r in rows for _, how in r["values_from"]]
    print("Value answers per get:", round(len(answers) / len(rows), 2), {h: answers.count(h) for h in set(answers)})
    if STAGES:
        for name, sel in (("all (remote)", [r for r in rows if r["requests"]]), ("slowest 10%", slow),
                          ("1 request", [r for r in rows if r["requests"] == 1]),
                          ("3 requests", [r for r in rows if r["requests"] == 3])):
            ks = sorted({k for r in sel for k in r["stages"]})
            print(name, len(sel), {k: round(sum(r["stages"].get(k, 0) for r in sel) / len(sel), 3) for k in ks})
    if out:
        pathlib.Path(out).write_text(json.dumps(rows) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--cold-all", action="store_true", help="experiment: gets treat every contact as cold")
    ap.add_argument("--stages", action="store_true", help="wall time per stage (nested: a stage includes those it calls)")
    ap.add_argument("--profile", default="", help="cProfile the get phase, sorted by this key (tottime, cumtime)")
    a = ap.parse_args()
    PROFILE = a.profile
    STAGES = a.stages
    COLD_ALL = a.cold_all
    import pernode

    pernode.install()
    _install_counters()
    asyncio.run(main(a.nodes, a.records, a.seed, a.out))
