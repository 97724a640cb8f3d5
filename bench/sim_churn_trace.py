"""Where lookups lose time under churn: one `bench/sim_latency.py` scenario, traced.

    .venv/bin/python bench/sim_churn_trace.py [--nodes 20000] [--churn-minutes 10] [--dht '{"k": v}'] [--oracle]
    .venv/bin/python bench/sim_churn_trace.py --scenario latency-100k --write DIR   # a bundled scenario

Runs the round-three scenario of bench/sim_latency.py (storm join, lookups, then
churn with 600 lookups a minute; its base settings, then --dht over them) with the
real code and watches every node lookup of the measured phases from outside
(wrappers that only record, so the run is the same as an untraced one). For each
lookup it keeps: latency, whether its source and its target joined during churn,
which departed nodes it asked and on which hop (depth 1 = a contact from our own
table), and the requests whose timeout fired before it ended, with how long they
had waited. Prints the latency split by those classes, with and without churn, and
the row bench/sim_latency.py would print. ``--oracle`` is an upper bound, not a
mechanism: node lookups never ask a departed node.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict

sys.path.insert(0, __file__.rsplit("/", 1)[0])

import sim_latency  # noqa: E402

from weftnet.core.dht import engine as dht_engine  # noqa: E402
from weftnet.sim import engine as sim_engine  # noqa: E402
from weftnet.sim.runner import run_size  # noqa: E402
from weftnet.sim.scenario import scenario_from_dict  # noqa: E402

TRACE: dict = {}  # (id(dht), op_id) -> {"fails": [...], "asked": [...]}
RECORDS: list = []
SIM: list = []  # the Simulation, once known


def install(n: int, oracle: bool = False) -> None:
    if oracle:
        # An upper bound, not a mechanism: node lookups know which candidates have departed
        # and never ask them (what perfect liveness knowledge would give).
        from weftnet.core.dht import lookup as lookup_mod

        orig_next = lookup_mod.Lookup.next_requests

        def next_requests(self, now=0.0, gate=None):
            if self.kind == "find_node" and SIM:
                by_key = SIM[0].by_key
                for c in self.candidates.values():
                    if c.state == lookup_mod.CANDIDATE and not by_key[c.key].alive:
                        c.state = lookup_mod.FAILED
            return orig_next(self, now, gate)

        lookup_mod.Lookup.next_requests = next_requests
    orig_failed = dht_engine.Dht._on_request_failed

    def on_request_failed(self, req, now, count_failure=True):
        op = self._ops.get(req.op_id)
        if op is not None and op.kind == "find_node" and op.lookup is not None:
            cand = op.lookup.candidates.get(req.key)
            t = TRACE.setdefault((id(self), op.op_id), {"fails": []})
            t["fails"].append({
                "waited": now - req.sent, "sent_at": req.sent - op.started, "depth": cand.depth if cand else -1,
                "timeout": req.timed_out, "measured": self._rtt.srtt(req.key) is not None,
                "in_table": self.table.get(req.key) is not None,
            })
        return orig_failed(self, req, now, count_failure)

    dht_engine.Dht._on_request_failed = on_request_failed
    orig_finish = dht_engine.Dht._finish

    def finish(self, op, now, ok, *args, **kw):
        lk = op.lookup
        if op.kind == "find_node" and lk is not None and op.op_id in self._ops and SIM:
            # Every contact this lookup asked, and whether it was a departed node: unbiased by
            # whether its timeout fired before the lookup ended.
            by_key = SIM[0].by_key
            t = TRACE.setdefault((id(self), op.op_id), {"fails": []})
            t["asked"] = [(c.depth, by_key[c.key].alive if c.key in by_key else False, c.state)
                          for c in lk.candidates.values() if c.state in (1, 2, 3)]
        return orig_finish(self, op, now, ok, *args, **kw)

    dht_engine.Dht._finish = finish

    def observe(src, dst, ev, rec):
        t = TRACE.pop((id(src.dht), ev.op_id), {"fails": []})
        RECORDS.append({"start": rec.start, "ok": rec.ok, "ms": ev.duration * 1000, "hops": ev.hops,
                        "src_new": src.index >= n, "dst_new": dst.index >= n, "fails": t["fails"],
                        "dead_asked": [d for d, alive, _ in t.get("asked", ()) if not alive],
                        "msgs": ev.messages, "op": (id(src.dht), ev.op_id)})

    orig_lookup = sim_engine.Simulation.lookup

    def lookup(self, on_done=None):
        if not SIM:  # the measured phases start: trace from here on
            SIM.append(self)
            self.lookup_observer = observe
        return orig_lookup(self, on_done)

    sim_engine.Simulation.lookup = lookup


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def describe(name: str, recs: list) -> str:
    ms = [r["ms"] for r in recs if r["ok"]]
    return (f"| {name} | {len(recs)} | {pct(ms, 0.5):.1f} | {pct(ms, 0.99):.1f} | "
            f"{statistics.fmean(r['hops'] for r in recs) if recs else 0:.2f} | "
            f"{statistics.fmean(r['msgs'] for r in recs) if recs else 0:.2f} |")


def report(recs: list, label: str) -> None:
    print(f"\n#### {label}: {len(recs)} lookups, found {sum(r['ok'] for r in recs) / max(1, len(recs)):.2%}\n")
    print("| class | lookups | p50 ms | p99 ms | hops | requests |\n|---|---|---|---|---|---|")
    print(describe("all", recs))
    for key, title in (("src_new", "source joined during churn"), ("dst_new", "target joined during churn")):
        print(describe(title, [r for r in recs if r[key]]))
        print(describe("not " + title, [r for r in recs if not r[key]]))
    fail = [r for r in recs if r["fails"]]
    print(describe("a request failed", fail))
    print(describe("no request failed", [r for r in recs if not r["fails"]]))
    for d in (1, 2, 3):
        print(describe(f"a request failed on hop {d}" + ("+" if d == 3 else ""),
                       [r for r in recs if any((f["depth"] >= d if d == 3 else f["depth"] == d) for f in r["fails"])]))
    dead = [r for r in recs if r["dead_asked"]]
    print(describe("asked a departed node (timed out or not)", dead))
    print(describe("asked no departed node", [r for r in recs if not r["dead_asked"]]))
    print(describe("asked a departed node on hop 1", [r for r in recs if 1 in r["dead_asked"]]))
    print(describe("asked a departed node only after hop 1", [r for r in recs if r["dead_asked"] and
                                                               1 not in r["dead_asked"]]))
    print(f"\ndeparted nodes asked per lookup: {sum(len(r['dead_asked']) for r in recs) / max(1, len(recs)):.3f}"
          f" (hop 1: {sum(r['dead_asked'].count(1) for r in recs) / max(1, len(recs)):.3f})")
    fails = [f for r in recs for f in r["fails"]]
    if fails:
        by = defaultdict(list)
        for f in fails:
            by[(min(f["depth"], 3), f["timeout"], f["measured"])].append(f["waited"] * 1000)
        print("\n| hop | timeout (else Leave/unreachable) | RTT measured | failed requests | waited p50 ms | p90 ms |"
              "\n|---|---|---|---|---|---|")
        for (d, to, me), w in sorted(by.items()):
            print(f"| {d}{'+' if d == 3 else ''} | {to} | {me} | {len(w)} | {pct(w, 0.5):.0f} | {pct(w, 0.9):.0f} |")
        print(f"\nfailed requests per lookup: {len(fails) / len(recs):.3f}; lookups with one: {len(fail) / len(recs):.2%};"
              f" from our own table (hop 1): {sum(f['depth'] == 1 for f in fails)}, of those still in the table:"
              f" {sum(f['depth'] == 1 and f['in_table'] for f in fails)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=20000)
    ap.add_argument("--churn-minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dht", default="{}", help="DHT settings over the round-three base (JSON)")
    ap.add_argument("--out", help="write the per-lookup records here (JSON)")
    ap.add_argument("--oracle", action="store_true", help="upper bound: node lookups never ask a departed node")
    ap.add_argument("--scenario", help="a bundled scenario (e.g. latency-100k) instead of sim_latency's; --dht "
                                       "settings go over its [dht]; --nodes and --churn-minutes are ignored")
    ap.add_argument("--write", help="also write summary.json, run.json and the plots here (as weft sim does)")
    a = ap.parse_args()
    if a.scenario:
        import dataclasses

        from weftnet.sim.cli import resolve_scenario
        from weftnet.sim.scenario import load_scenario

        sc = load_scenario(resolve_scenario(a.scenario))
        sc = dataclasses.replace(sc, dht={**sc.dht, **json.loads(a.dht)})
        a.nodes = sc.sizes[0]
    else:
        dht = {**sim_latency.BASELINE3, **json.loads(a.dht)}
        sc = scenario_from_dict(sim_latency.scenario(a.nodes, a.churn_minutes, dht), "<trace>")
    install(a.nodes, a.oracle)
    t0, c0 = time.perf_counter(), time.process_time()
    r = run_size(sc, a.nodes, a.seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if a.write:
        import os
        import pathlib
        import resource

        from weftnet.sim import report as sim_report

        info = {"wall_seconds": {str(a.nodes): round(wall, 2)}, "cpu_seconds": round(cpu, 1),
                "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "loadavg_5min_at_end": round(os.getloadavg()[1], 2), **sim_report.machine_info()}
        sim_report.write_outputs(pathlib.Path(a.write), sim_report.summary(sc, a.seed, [r]), info, [r])
    n_before = r["lookups"]["count"] if "count" in r["lookups"] else len(r["lookup_records"])
    report(RECORDS[:n_before], "without churn")
    report(RECORDS[n_before:], "under churn")
    print(f"\nsummary: no churn {r['lookups'].get('latency_ms')}; churn {r['churn'].get('lookups', {}).get('latency_ms')}")
    from weftnet.sim.sweep import _row

    row = _row(r)
    print("\nrow: | {} | {:.2f}% | {} | {} | {} | {} | {:.2f}% | {:.2f}% | {} | {} | {} | {:.0f} |".format(
        a.dht, 100 * row["lookup_success"], row["latency_p50_ms"], row["latency_p99_ms"], row["hops_mean"],
        row["requests_per_lookup"], 100 * (row["churn_success"] or 0), 100 * (row["churn_worst_minute"] or 0),
        row["churn_latency_p50_ms"], row["churn_latency_p99_ms"], row["table_mean"], cpu))
    print(f"wall {wall:.0f} s, CPU {cpu:.0f} s")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(RECORDS, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
