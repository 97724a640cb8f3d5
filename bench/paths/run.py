#!/usr/bin/env python3
"""Paths: failover time over link cuts, a duplicated class under loss, two links load-balanced against
one, and the simulator's RON experiment.

    sudo .venv/bin/python bench/paths/run.py                      # everything
    sudo .venv/bin/python bench/paths/run.py --only failover --cuts 30

The lab is tests/sdwan_lab.py's: sites A and B joined by two veth links (l1: cost 1, A's and B's
main sockets; l2: cost 10, a [[link]] each) and a third site C reached over a third link (cost 50).
Everything runs on one machine, so links have no propagation delay: the times are detection,
protocol and process time. Measurements:

1. **failover** (``--cuts`` times, for each probe setting in ``--settings``): UDP streams A->B and
   B->A at 500 packets a second over the overlay interface (one 2 ms slot per packet); the link in
   use (l1) is set down at A (its veth peer loses carrier: both directions fail at once); the
   failover time of each direction is the longest gap between arrivals around the cut. After 3 s
   the link comes back and both ends return to it (it is cheaper) before the next cut. The
   settings compare the defaults (probe every 200 ms, down after 600 ms) with a faster pair.
   During the first cuts an iperf3 TCP transfer runs A->B: it must end without a reset.
   Anchors (not measured here): RON recovered in ~18 s on average, Tailscale trusts a path for
   ~6.5 s, SD-WAN products with BFD quote ~1 s.
2. **duplicate**: 5% random loss (nftables ``numgen`` on a netdev ingress hook) on both links into
   B; UDP at 500 packets a second, once in a class duplicated on l1 and l2, once in a class held
   to l1 only. Goal: the duplicated class loses < 0.3%.
3. **load balance**: both links shaped to ``--rate`` Mbit/s (``tbf``); iperf3 TCP with 8 streams
   A->B, once in a class balanced over both links (flows hashed), once in a class held to l1.
4. **simulator**: ``weftnet.sim.paths.run_ron``: nodes in 6 regions, traffic between random pairs,
   outages per region pair or node pair (log-normal durations), with and without detours;
   share of outages routed around, recovery time, path stretch; plots.

Writes paths.json and paths.md (and paths/*.png) into --out (default bench/results/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from sdwan_lab import LINKS, TOOL, SdwanLab, wait_for  # noqa: E402

CLASSES = """
[[class]]
name = "critical"
proto = "udp"
dport = 6000
policy = "duplicate"
links = ["l1", "l2"]

[[class]]
name = "single"
proto = "udp"
dport = 6001
policy = "cheapest"
links = ["l1"]

[[class]]
name = "balanced"
proto = "tcp"
ports = 5202
policy = "balance"
links = ["l1", "l2"]

[[class]]
name = "one-link"
proto = "tcp"
ports = 5203
policy = "cheapest"
links = ["l1"]
"""

SETTINGS = {"default": "", "fast": "interval = 0.05\ndetect = 0.15\n"}


def load() -> float:
    return os.getloadavg()[0]


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
    return (f"{model}, {os.cpu_count()} cores, {mem / 2**20:.1f} GiB RAM, kernel {platform.release()}, "
            f"Python {platform.python_version()}")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def dist(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50": round(statistics.median(values), 4), "p90": round(pct(values, 90), 4),
            "p99": round(pct(values, 99), 4), "max": round(max(values), 4), "mean": round(statistics.mean(values), 4)}


def in_use(lab: SdwanLab, x: str, y: str) -> str | None:
    for p in lab.paths(x)["peers"]:
        if p["node_id"] == lab.ids[y]:
            return next((r["link"] for r in p["paths"] if r["in_use"]), None)
    return None


def receiver(lab: SdwanLab, host: str, port: int, seconds: float):
    rx = lab.popen(host, *TOOL, "recv", str(port), str(seconds))
    assert rx.stdout.readline().strip() == "listening"
    return rx


def gap_around(times: list[float], t: float, before: float = 0.5, after: float = 4.0) -> float:
    w = [x for x in times if t - before <= x <= t + after]
    edges = [t - before] + w + [t + after]
    return max(b - a for a, b in zip(edges, edges[1:]))


# -- 1. failover ---------------------------------------------------------------------------

def failover(tmp: Path, cuts: int, setting: str, tcp_cuts: int) -> dict:
    lab = SdwanLab(tmp / f"fo-{setting}", classes=CLASSES, paths=SETTINGS[setting])
    try:
        lab.build()
        lab.start()
        lab.overlay_ready("A", "B")
        lab.overlay_ready("B", "A")
        lab.weft("A", "allow", "udp", "5004")
        period = 8.0
        total = cuts * (period + 30) + 60  # an upper bound: the streams are stopped when the cuts are done
        rx_b = receiver(lab, "B", 5004, total)
        rx_a = receiver(lab, "A", 5004, total)
        started = time.time()
        probes_before = lab.paths("A")["stats"]["probes_sent"]
        tx_ab = lab.popen("A", *TOOL, "send", lab.addr["B"], "5004", str(total - 5), "500")
        tx_ba = lab.popen("B", *TOOL, "send", lab.addr["A"], "5004", str(total - 5), "500")
        iperf = None
        if tcp_cuts:
            lab.popen("B", "iperf3", "-s", "-1", "-p", "5201")
            wait_for(lambda: "5201" in lab.in_ns("B", "ss", "-Hltn").stdout, 10, "iperf3 in B")
            iperf = lab.popen("A", "iperf3", "-c", lab.addr["B"], "-p", "5201", "-t", str(int(tcp_cuts * period + 6)),
                              "-i", "0.1", "-J")
        time.sleep(4.0)
        rows = []
        stuck = []
        for i in range(cuts):
            try:  # both ends back on l1 (the cheaper link) before the next cut
                wait_for(lambda: in_use(lab, "A", "B") == "l1" and in_use(lab, "B", "A") == "l1", 30, "l1")
            except AssertionError:
                stuck.append({"before_cut": i + 1, "a": lab.paths("A")["peers"], "b": lab.paths("B")["peers"]})
                continue
            time.sleep(1.0)
            t = time.time()
            lab.link("A", "l1", up=False)
            time.sleep(3.0)
            moved = (in_use(lab, "A", "B"), in_use(lab, "B", "A"))
            lab.link("A", "l1", up=True)
            rows.append({"cut": i + 1, "at": t, "moved_to": moved, "load": round(load(), 2)})
            time.sleep(period - 4.0 - 1.0)
        tcp = None
        if iperf is not None:
            out, _ = iperf.communicate(timeout=120)
            res = json.loads(out)
            intervals = [(iv["sum"]["start"], iv["sum"]["bytes"]) for iv in res.get("intervals", [])]
            longest = run = 0
            for _, b in intervals:
                run = run + 1 if b == 0 else 0
                longest = max(longest, run)
            tcp = {"error": res.get("error"), "cuts_during": tcp_cuts,
                   "bytes": res.get("end", {}).get("sum_received", {}).get("bytes"),
                   "longest_stall_s": round(longest * 0.1, 1)}
        time.sleep(2.0)
        for p in (tx_ab, tx_ba, rx_b, rx_a):
            p.terminate()
        got_b = json.loads(rx_b.stdout.readline())
        got_a = json.loads(rx_a.stdout.readline())
        t_b = [t for _, t in got_b["arrivals"]]
        t_a = [t for _, t in got_a["arrivals"]]
        for r in rows:
            r["gap_ab"] = round(gap_around(t_b, r["at"]), 4)
            r["gap_ba"] = round(gap_around(t_a, r["at"]), 4)
        st = lab.paths("A")
        return {"setting": setting,
                "paths": SETTINGS[setting].strip().replace("\n", ", ") or "interval = 0.2, detect = 0.6 (defaults)",
                "cuts": rows, "not_back_on_l1": stuck, "a_to_b": dist([r["gap_ab"] for r in rows]),
                "b_to_a": dist([r["gap_ba"] for r in rows]), "tcp": tcp,
                "probes_per_second_a": round((st["stats"]["probes_sent"] - probes_before)
                                             / max(1.0, time.time() - started), 1)}
    finally:
        lab.close()


# -- 2. duplicate under loss -----------------------------------------------------------------

def duplicate(tmp: Path, seconds: float) -> dict:
    lab = SdwanLab(tmp / "dup", classes=CLASSES)
    try:
        lab.build()
        lab.start()
        lab.overlay_ready("A", "B")
        for dev in LINKS:
            lab.drop("B", dev, f"loss{dev}", "udp dport 4500 numgen random mod 100 < 5 drop")
        out = {}
        for name, port in (("duplicated (l1 + l2)", 6000), ("one link (l1)", 6001)):
            rx = receiver(lab, "B", port, seconds + 4)
            tx = lab.popen("A", *TOOL, "send", lab.addr["B"], str(port), str(seconds), "500")
            tx.wait(seconds + 60)
            sent = int(tx.stdout.read().split()[1])
            got = json.loads(rx.stdout.readline())
            out[name] = {"sent": sent, "received": got["received"], "loss": round(1 - got["received"] / sent, 5)}
        b = lab.status("B")
        out["duplicates_dropped_at_b"] = b["transport"]["duplicates_dropped"]
        return out
    finally:
        lab.close()


# -- 3. load balance ---------------------------------------------------------------------

def balance(tmp: Path, rate: int, seconds: int) -> dict:
    lab = SdwanLab(tmp / "lb", classes=CLASSES)
    try:
        lab.build()
        for dev in LINKS:
            for host in "AB":
                lab.in_ns(host, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate}mbit",
                          "burst", "64kb", "latency", "50ms")
        lab.start()
        lab.overlay_ready("A", "B")
        for port in ("5202", "5203"):
            lab.weft("B", "allow", "tcp", port)
        out = {"link_rate_mbit": rate}
        for name, port in (("two links balanced", 5202), ("one link", 5203)):
            lab.popen("B", "iperf3", "-s", "-1", "-p", str(port))
            wait_for(lambda: str(port) in lab.in_ns("B", "ss", "-Hltn").stdout, 10, "iperf3 in B")
            before = load()
            r = lab.in_ns("A", "iperf3", "-c", lab.addr["B"], "-p", str(port), "-t", str(seconds), "-P", "8", "-J",
                          timeout=seconds + 60)
            res = json.loads(r.stdout)
            out[name] = {"mbit_s": round(res["end"]["sum_received"]["bits_per_second"] / 1e6, 1),
                         "error": res.get("error"), "load_before": round(before, 2)}
        classes = {c["name"]: c["links"] for c in lab.paths("A")["classes"]}
        out["packets_by_link"] = {"balanced": classes.get("balanced"), "one-link": classes.get("one-link")}
        return out
    finally:
        lab.close()


# -- 4. the simulator's RON experiment -----------------------------------------------------------

def ron(out_dir: Path, nodes: int, pairs: int, duration: float, seed: int) -> dict:
    from weftnet.sim.paths import OutageModel, run_ron

    model = OutageModel()
    res = {}
    for detour in (True, False):
        t0 = time.perf_counter()
        r = run_ron(nodes=nodes, pairs=pairs, duration=duration, seed=seed, model=model, detour=detour)
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        res["with detours" if detour else "without detours"] = r
    summary = {}
    for name, r in res.items():
        rows = r["affected"]
        cuts = [x for x in rows if x["cut"]]
        deg = [x for x in rows if not x["cut"]]
        summary[name] = {
            "outages": len(r["outages"]),
            "affected pair-outages": len(rows),
            "cuts routed around": f"{sum(x['routed_around'] for x in cuts)}/{len(cuts)}",
            "share of cuts routed around": round(sum(x["routed_around"] for x in cuts) / max(1, len(cuts)), 3),
            "recovery s (cuts routed around)": dist([x["recovery"] for x in cuts if x["routed_around"]]),
            "delivered during cuts": round(statistics.mean([x["delivered"] for x in cuts]), 3) if cuts else None,
            "delivered during degradations": round(statistics.mean([x["delivered"] for x in deg]), 3) if deg else None,
            "stretch (one-way latency / direct)": dist([x["stretch"] for x in cuts if x["stretch"]]),
            "probes per node per second": r["probes_per_node_per_second"],
            "wall s": r["wall_s"],
        }
    plots(out_dir, res)
    return {"nodes": nodes, "pairs": pairs, "duration_s": duration, "seed": seed,
            "model": {k: v for k, v in model.__dict__.items()}, "summary": summary, "runs": res}


def plots(out_dir: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in res.items():
        rec = sorted(x["recovery"] if x["routed_around"] else x["duration"] for x in r["affected"] if x["cut"])
        if rec:
            ax.step(rec, [(i + 1) / len(rec) for i in range(len(rec))], where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("time without delivery after a cut began (s, log)")
    ax.set_ylabel("share of affected pair-outages")
    ax.set_title("Recovery from path cuts (simulator)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "ron_recovery_cdf.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(res)
    cut_share = [statistics.mean([x["delivered"] for x in res[n]["affected"] if x["cut"]] or [0]) for n in names]
    deg_share = [statistics.mean([x["delivered"] for x in res[n]["affected"] if not x["cut"]] or [0]) for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], cut_share, width=0.4, label="during cuts")
    ax.bar([x + 0.2 for x in xs], deg_share, width=0.4, label="during degradations")
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of packets delivered")
    ax.set_title("Traffic delivered while its direct path was impaired")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "ron_delivered.png", dpi=110)
    plt.close(fig)
    st = [x["stretch"] for x in res.get("with detours", {}).get("affected", []) if x["cut"] and x["stretch"]]
    if st:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(st, bins=20)
        ax.set_xlabel("one-way latency during the cut / direct path's latency")
        ax.set_ylabel("pair-outages")
        ax.set_title("Path stretch of detours (simulator)")
        fig.tight_layout()
        fig.savefig(out_dir / "ron_stretch.png", dpi=110)
        plt.close(fig)


# -- report ----------------------------------------------------------------------------------

def report(res: dict) -> str:
    runs = res.get("runs") or {}
    when = "; ".join(f"{k}: {v['date']} (load average before {v['load_before']})" for k, v in sorted(runs.items()))
    lines = ["# Paths (bench/paths/run.py)", "",
             f"- date: {when or res['date']}" if when else f"- date: {res['date']}",
             f"- machine: {res['machine']}",
             ("- " if when else f"- load average before: {res['load_before']}; ") + "other engineers' test suites "
             "and benches shared the machine during the runs, so the figures are one run's on a busy host, "
             "not a capacity",
             "- lab: tests/sdwan_lab.py — namespaces, sites A and B joined by veth links l1 (cost 1) and l2 "
             "(cost 10), a third site C (transit) on a third link; no propagation delay on the links", ""]
    for fo in res.get("failover", []):
        ab, ba = fo["a_to_b"], fo["b_to_a"]
        lines += [f"## Failover: the link in use cut {ab['count']} times — {fo['setting']} ({fo['paths']})", "",
                  "| direction | p50 | p90 | p99 | max |", "|---|---|---|---|---|",
                  f"| A -> B | {ab['p50']:.3f} s | {ab['p90']:.3f} s | {ab['p99']:.3f} s | {ab['max']:.3f} s |",
                  f"| B -> A | {ba['p50']:.3f} s | {ba['p90']:.3f} s | {ba['p99']:.3f} s | {ba['max']:.3f} s |", ""]
        if fo.get("tcp"):
            t = fo["tcp"]
            lines += [f"iperf3 TCP across the first {t['cuts_during']} cuts: "
                      f"{'no error, the connection ran to the end' if not t['error'] else 'error: ' + t['error']}; "
                      f"{(t['bytes'] or 0) / 2**20:.0f} MiB received; longest stall "
                      f"{t['longest_stall_s']} s (0.1 s resolution).", ""]
        lines += [f"Probes sent by A: {fo['probes_per_second_a']} a second (all of A's paths to B and C).", ""]
    if "duplicate" in res:
        d = res["duplicate"]
        lines += ["## A duplicated class at 5% loss on each link (goal < 0.3%)", "",
                  "| class | sent | received | loss |", "|---|---|---|---|"]
        for name in ("duplicated (l1 + l2)", "one link (l1)"):
            r = d[name]
            lines.append(f"| {name} | {r['sent']} | {r['received']} | {r['loss'] * 100:.2f}% |")
        lines += ["", f"B dropped {d['duplicates_dropped_at_b']} second copies before decryption.", ""]
    if "balance" in res:
        b = res["balance"]
        lines += [f"## Two links load-balanced against one (each link shaped to {b['link_rate_mbit']} Mbit/s)", "",
                  "| class | iperf3 TCP, 8 streams |", "|---|---|",
                  f"| two links, flows hashed | {b['two links balanced']['mbit_s']} Mbit/s |",
                  f"| one link | {b['one link']['mbit_s']} Mbit/s |", "",
                  f"Packets by link: {b['packets_by_link']}", ""]
    if "ron" in res:
        r = res["ron"]
        lines += [f"## The simulator's RON experiment ({r['nodes']} nodes, {r['pairs']} pairs, "
                  f"{r['duration_s']:.0f} s simulated, seed {r['seed']})", "",
                  "| | with detours | without detours |", "|---|---|---|"]
        w, wo = r["summary"]["with detours"], r["summary"]["without detours"]
        for key in ("outages", "affected pair-outages", "cuts routed around", "share of cuts routed around",
                    "delivered during cuts", "delivered during degradations", "probes per node per second"):
            lines.append(f"| {key} | {w[key]} | {wo[key]} |")
        rec, st = w["recovery s (cuts routed around)"], w["stretch (one-way latency / direct)"]
        if rec.get("count"):
            lines += ["", f"Recovery (cuts routed around, with detours): p50 {rec['p50']} s, p90 {rec['p90']} s, "
                          f"max {rec['max']} s."]
        if st.get("count"):
            lines += [f"Stretch of the detour (one-way latency during the cut / the direct path's): p50 {st['p50']}, "
                      f"p90 {st['p90']}, max {st['max']}."]
        lines += ["", "Plots: paths/ron_recovery_cdf.png, paths/ron_delivered.png, paths/ron_stretch.png.", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("failover", "duplicate", "balance", "ron"), action="append")
    ap.add_argument("--cuts", type=int, default=22)
    ap.add_argument("--settings", default="default,fast")
    ap.add_argument("--tcp-cuts", type=int, default=5)
    ap.add_argument("--dup-seconds", type=float, default=40.0)
    ap.add_argument("--rate", type=int, default=40)
    ap.add_argument("--lb-seconds", type=int, default=15)
    ap.add_argument("--sim-nodes", type=int, default=16)
    ap.add_argument("--sim-pairs", type=int, default=30)
    ap.add_argument("--sim-duration", type=float, default=900.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    a = ap.parse_args()
    only = set(a.only or ("failover", "duplicate", "balance", "ron"))
    res: dict = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "machine": machine(), "load_before": round(load(), 2)}
    out_json = a.out / "paths.json"
    res["runs"] = {}
    if out_json.exists():  # keep the parts not rerun, with when they ran
        old = json.loads(out_json.read_text())
        for key in ("failover", "duplicate", "balance", "ron"):
            if key not in only and key in old:
                res[key] = old[key]
                res["runs"][key] = (old.get("runs") or {}).get(key) or {"date": old["date"],
                                                                         "load_before": old["load_before"]}
    for key in only:
        res["runs"][key] = {"date": res["date"], "load_before": res["load_before"]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "failover" in only:
            res["failover"] = [failover(tmp, a.cuts, s, a.tcp_cuts if i == 0 else 0)
                               for i, s in enumerate(a.settings.split(","))]
        if "duplicate" in only:
            res["duplicate"] = duplicate(tmp, a.dup_seconds)
        if "balance" in only:
            res["balance"] = balance(tmp, a.rate, a.lb_seconds)
    if "ron" in only:
        res["ron"] = ron(a.out / "paths", a.sim_nodes, a.sim_pairs, a.sim_duration, a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=1, default=str) + "\n")
    (a.out / "paths.md").write_text(report(res))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
