"""The simulator at scale: 100,000 nodes join, then 10,000 lookups (issue bar: < 10 min, < 8 GiB).

    .venv/bin/python bench/sim_scale.py [--scenario scale-100k] [--nodes N] [--procs P] [--out DIR]

Runs the bundled scenario in this process through the same runner as
`weft sim` (with --procs P: the partitioned engine on P processes, as `weft sim
--procs P`), then writes bench/results/sim.md (appending a row per run to the
table there) with wall time, peak RSS, lookup success and the hop and latency
distributions, and the machine described. Plots, summary.json, run.json and
bench.json (wall, CPU and peak RSS, summed over the processes) go to --out.

Progress: a line at most every minute (on stderr and appended to OUT/run.log, flushed at
once), for `bench/sim_scale_progress.py` to fit and project even if the run is stopped:
nodes in, wall time, CPU (user + system) and peak RSS summed over the run's processes (the
workers' read from /proc), and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import sys
import time

from weftnet.sim.cli import resolve_scenario
from weftnet.sim.report import text_summary, write_outputs
from weftnet.sim.runner import SETTLE, run_scenario
from weftnet.sim.scenario import load_scenario

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def machine() -> str:
    import os

    from hostinfo import cpu_model  # bench/hostinfo.py, beside this script

    model = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="scale-100k")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--procs", type=int, help="the partitioned engine on P processes (sim/parallel.py)")
    ap.add_argument("--every", type=float, default=55.0, help="seconds between progress lines (at most)")
    ap.add_argument("--out", default="out/sim-scale")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "run.log", "a", buffering=1)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: {' '.join(sys.argv)} (pid {os.getpid()})",
          file=log)
    sc = load_scenario(resolve_scenario(a.scenario))
    sizes = [a.nodes] if a.nodes else sc.sizes
    t0 = time.perf_counter()
    c0 = time.process_time()
    last = [0.0]

    def total_virtual(n: int) -> float:  # runner.run_size's ``total``
        return ((sc.join_duration if sc.join_mode == "storm" else 0) + SETTLE + sc.lookup_duration
                + (60.0 if sc.records else 0) + sc.churn_duration + 60.0)

    def progress(n, phase, frac):
        now = time.perf_counter()
        if now - last[0] >= a.every:
            last[0] = now
            cpu, rss, per = usage()
            # In a storm join node i arrives at i * duration / (N - 1): the virtual time says how many are in.
            virt = frac * total_virtual(n)
            joined = n if sc.join_mode != "storm" else min(n, 1 + int(virt / sc.join_duration * (n - 1)))
            line = (f"  N={n:,} {phase} {100 * frac:.1f}% (virtual {virt:.0f} s, {joined:,} nodes in)  "
                    f"({now - t0:.0f} s wall, {cpu:.0f} s CPU, peak RSS {rss:.2f} GiB, "
                    f"load {os.getloadavg()[0]:.1f}){per}  {time.strftime('%H:%M:%S', time.gmtime())}")
            print(line, file=sys.stderr, flush=True)
            print(line, file=log)

    def usage() -> tuple[float, float, str]:
        """(CPU s since the start, peak RSS GiB, per-process detail), summed over this process
        and the workers it forked (their /proc entries; a few reads a minute)."""
        import multiprocessing

        cpu = time.process_time() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        parts = [f"{cpu:.0f} s / {rss:.2f} GiB"]
        tick = os.sysconf("SC_CLK_TCK")
        for w in multiprocessing.active_children():
            try:
                stat = pathlib.Path(f"/proc/{w.pid}/stat").read_text()
                status = pathlib.Path(f"/proc/{w.pid}/status").read_text()
            except OSError:
                continue
            f = stat.rsplit(")", 1)[1].split()
            c = (int(f[11]) + int(f[12])) / tick  # utime, stime (fields 14 and 15)
            hwm = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")), 0) / 2**20
            cpu += c
            rss += hwm
            parts.append(f"{c:.0f} s / {hwm:.2f} GiB")
        return cpu, rss, (f" [per process CPU / peak RSS: {', '.join(parts)}]" if len(parts) > 1 else "")

    summary, info, results = run_scenario(sc, a.seed, sizes, progress, a.procs)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += ch.ru_utime + ch.ru_stime  # the workers, reaped at the end of each size
    load = os.getloadavg()[1]
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    procs_rss = []
    if a.procs:
        # Each worker's peak (they are forked anew for each size: the largest size's is the peak).
        for k in range(1, a.procs):
            procs_rss.append(max((p[k]["peak_rss_mib"] for p in info["processes"].values() if p), default=0.0) / 1024)
        rss_gib += sum(procs_rss)
    write_outputs(out, summary, info, results)
    print(text_summary(summary, info))
    RESULTS.mkdir(exist_ok=True)
    md = RESULTS / "sim.md"
    header = (
        "# Simulator at scale\n\n"
        "Each row: `.venv/bin/python bench/sim_scale.py --scenario NAME [--nodes N]` — the real `Dht` class per\n"
        "node, simulated authenticated channel, Internet-like latency model (docs/simulator.md). Wall time and\n"
        "peak RSS are for the whole run in one process on one core.\n\n"
        "| date | scenario | nodes | join | lookups | found | hops mean / p99 / max | latency p50 / p99 (virtual ms) | requests per lookup | events | wall | peak RSS | machine |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    text = md.read_text() if md.exists() else header
    for r in summary["runs"]:
        lk = r["lookups"]
        h, lat = lk["hops"], lk["latency_ms"]
        text += (
            f"| {time.strftime('%Y-%m-%d')} | {summary['scenario']} | {r['nodes']:,} | {r['join']['mode']} "
            f"({r['join']['ok']:,} ok) | {lk['count']:,} | {100 * (lk['success_rate'] or 0):.2f}% | "
            f"{h.get('mean')} / {h.get('p99')} / {h.get('max')} | {lat.get('p50')} / {lat.get('p99')} | "
            f"{lk['messages'].get('mean')} | {r['events']:,} | {info['wall_seconds'][str(r['nodes'])]:.0f} s "
            f"(CPU {cpu:.0f} s{f' summed over {a.procs} processes' if a.procs else ''}, load {load:.1f}) | "
            f"{rss_gib:.2f} GiB | {machine()} |\n"
        )
    md.write_text(text)
    end = (f"total wall {wall:.0f} s, CPU {cpu:.0f} s, peak RSS {rss_gib:.2f} GiB"
           f"{f' (summed over {a.procs} processes)' if a.procs else ''}, load {load:.1f}; appended to {md}")
    print("\n" + end)
    print("# " + end, file=log)
    log.close()
    bench = {"wall_s": wall, "cpu_s": cpu, "rss_gib": rss_gib, "loadavg_5min": load, "procs": a.procs}
    if a.procs:
        bench["workers_peak_rss_gib"] = procs_rss
    (out / "bench.json").write_text(json.dumps(bench) + "\n")
    # run.json: the runner's (wall per size, each process's CPU and peak RSS) and these totals.
    info.update(total_wall_s=round(wall, 2), total_cpu_s=round(cpu, 2), total_peak_rss_gib=round(rss_gib, 3),
                loadavg_5min=round(load, 2))
    (out / "run.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    rc = main()
    # Everything is written: leave without freeing a million nodes' objects one by one (~2.5 min).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
