"""Turn the progress lines of a `bench/sim_scale.py` run into a table and a plot.

    .venv/bin/python bench/sim_scale_progress.py bench/results/sim/scale-1m/run.log

A run of `scale-1m` may be stopped before it ends (a shared machine, a deadline):
its progress lines are then the measurement. Each says how many nodes had
joined (from the virtual time: node i arrives at i * duration / (N - 1)), and
the wall time, CPU time, peak RSS and load average at that moment. Writes
progress.csv (with the CPU and memory each slice of joins cost) and
progress.png beside the log.
"""

from __future__ import annotations

import csv
import pathlib
import re
import sys

LINE = re.compile(r"(?P<phase>\w+) (?P<pct>[\d.]+)% \(virtual (?P<virt>\d+) s, (?P<nodes>[\d,]+) nodes in\)\s+"
                  r"\((?P<wall>\d+) s wall, (?P<cpu>\d+) s CPU, peak RSS (?P<rss>[\d.]+) GiB, load (?P<load>[\d.]+)\)")


def parse(path: pathlib.Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        m = LINE.search(line)
        if m:
            rows.append({"phase": m["phase"], "virtual_s": int(m["virt"]), "nodes": int(m["nodes"].replace(",", "")),
                         "wall_s": int(m["wall"]), "cpu_s": int(m["cpu"]), "peak_rss_gib": float(m["rss"]),
                         "load1": float(m["load"])})
    for a, b in zip(rows, rows[1:]):
        dn = b["nodes"] - a["nodes"]
        if dn > 0 and b["phase"] == "join":
            b["ms_cpu_per_join"] = round(1000 * (b["cpu_s"] - a["cpu_s"]) / dn, 2)
            b["kib_per_join"] = round((b["peak_rss_gib"] - a["peak_rss_gib"]) * 2**20 / dn, 1)
    return rows


def project(rows: list[dict], n_end: int) -> str | None:
    """Least-squares fit of the marginal CPU per join against log2(nodes in), summed
    from the last measured point to ``n_end``; peak RSS extrapolated from its slope over
    the second half of the measured joins. A projection, labelled as one."""
    import math

    pts = [(math.log2(r["nodes"]), r["ms_cpu_per_join"], r["nodes"]) for r in rows if "ms_cpu_per_join" in r]
    join = [r for r in rows if r["phase"] == "join"]
    if len(pts) < 4 or join[-1]["nodes"] >= n_end:
        return None
    w = [p[2] for p in pts]  # weight later points (more nodes) more
    sw = sum(w)
    mx = sum(wi * p[0] for wi, p in zip(w, pts)) / sw
    my = sum(wi * p[1] for wi, p in zip(w, pts)) / sw
    b = sum(wi * (p[0] - mx) * (p[1] - my) for wi, p in zip(w, pts)) / sum(wi * (p[0] - mx) ** 2 for wi, p in zip(w, pts))
    a = my - b * mx
    last = join[-1]
    step = 1000
    more = sum((a + b * math.log2(n + step / 2)) * step for n in range(last["nodes"], n_end, step)) / 1000
    half = [r for r in join if r["nodes"] >= last["nodes"] / 2]
    slope = (half[-1]["peak_rss_gib"] - half[0]["peak_rss_gib"]) / max(1, half[-1]["nodes"] - half[0]["nodes"])
    rss = last["peak_rss_gib"] + slope * (n_end - last["nodes"])
    return (f"projection to {n_end:,} joined (fit ms CPU/join = {a:.2f} + {b:.3f} * log2 N over {len(pts)} points; "
            f"{a + b * math.log2(n_end):.2f} ms at {n_end:,}): join CPU {last['cpu_s'] + more:,.0f} s "
            f"(measured {last['cpu_s']:,} s to {last['nodes']:,}), peak RSS {rss:.1f} GiB "
            f"({slope * 2**20:.1f} KiB per node); the lookups phase not included")


def main() -> int:
    log = pathlib.Path(sys.argv[1])
    rows = parse(log)
    if not rows:
        print(f"no progress lines in {log}", file=sys.stderr)
        return 1
    keys = ["phase", "virtual_s", "nodes", "wall_s", "cpu_s", "peak_rss_gib", "load1", "ms_cpu_per_join", "kib_per_join"]
    with open(log.with_name("progress.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    join = [r for r in rows if r["phase"] == "join"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    n = [r["nodes"] for r in join]
    ax1.plot(n, [r["cpu_s"] for r in join], label="CPU s")
    ax1.plot(n, [r["wall_s"] for r in join], label="wall s (shared machine)")
    ax1.set_xlabel("nodes joined")
    ax1.set_ylabel("seconds since start")
    ax1.legend()
    ax1b = ax1.twinx()
    ax1b.plot(n[1:], [r.get("ms_cpu_per_join", float("nan")) for r in join[1:]], "g.", ms=3)
    ax1b.set_ylabel("ms of CPU per join (green)")
    ax2.plot(n, [r["peak_rss_gib"] for r in join])
    ax2.set_xlabel("nodes joined")
    ax2.set_ylabel("peak RSS (GiB)")
    fig.suptitle(f"{log.parent.name}: progress of the join")
    fig.tight_layout()
    fig.savefig(log.with_name("progress.png"), dpi=90)
    last = rows[-1]
    proj = project(rows, 1_000_000)
    if proj:
        print(proj)
        log.with_name("projection.txt").write_text(proj + "\n")
    print(f"{len(rows)} lines; last: {last['nodes']:,} nodes, {last['cpu_s']} s CPU, {last['wall_s']} s wall, "
          f"{last['peak_rss_gib']} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
