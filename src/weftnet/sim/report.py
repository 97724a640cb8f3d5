"""What a simulation leaves behind: summary.json, run.json, PNG plots and a text summary.

``summary.json`` is deterministic — sorted keys, rounded floats, nothing
measured on the host — so the same scenario and seed give the same bytes
(a test checks it). Wall time and memory go to ``run.json``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
from pathlib import Path
from typing import Any

__all__ = ["distribution", "lookup_stats", "summary", "machine_info", "write_outputs", "text_summary"]


def _pct(s: list, q: float) -> float:
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def distribution(values: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    s = sorted(v * scale for v in values)
    return {
        "count": len(s),
        "mean": round(sum(s) / len(s), digits),
        "min": round(s[0], digits),
        "p50": round(_pct(s, 50), digits),
        "p90": round(_pct(s, 90), digits),
        "p99": round(_pct(s, 99), digits),
        "max": round(s[-1], digits),
    }


def lookup_stats(records: list) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    hist: dict[str, int] = {}
    for r in ok:
        hist[str(r.hops)] = hist.get(str(r.hops), 0) + 1
    return {
        "count": len(records),
        "ok": len(ok),
        "success_rate": round(len(ok) / len(records), 6) if records else None,
        "hops": distribution([r.hops for r in ok]),
        "hops_histogram": dict(sorted(hist.items(), key=lambda kv: int(kv[0]))),
        "latency_ms": distribution([r.latency for r in ok], 1000.0, 2),
        "messages": distribution([r.messages for r in records]),
    }


#: What a result holds beside its deterministic part: the raw records, and (partitioned runs) each process's
#: CPU and peak RSS, which go to run.json.
_HOST_KEYS = ("lookup_records", "processes")


def summary(sc, seed: int, results: list[dict]) -> dict[str, Any]:
    return {
        "scenario": sc.name,
        "source": Path(sc.source).name,
        "seed": seed,
        "dht": dict(sorted(sc.dht.items())),
        "underlay": dict(sorted(sc.underlay.items())),
        "runs": [{k: v for k, v in r.items() if k not in _HOST_KEYS} for r in results],
    }


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def write_outputs(out: Path, summary_: dict, run_info: dict, results: list[dict]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary_, indent=1, sort_keys=True) + "\n")
    (out / "run.json").write_text(json.dumps(run_info, indent=1, sort_keys=True) + "\n")
    return [out / "summary.json", out / "run.json", *plots(out, summary_, results)]


def plots(out: Path, summary_: dict, results: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def cdf(ax, values, label):
        s = sorted(values)
        if s:
            ax.step(s, [(i + 1) / len(s) for i in range(len(s))], where="post", label=label)

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        cdf(ax, [x.hops for x in r["lookup_records"] if x.ok], f"N = {r['nodes']:,}")
    ax.set_xlabel("lookup hops (depth of the closest answer)")
    ax.set_ylabel("fraction of lookups")
    ax.set_title(f"{summary_['scenario']}: lookup hops")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hops_cdf.png", dpi=110)
    plt.close(fig)
    written.append(out / "hops_cdf.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        cdf(ax, [x.latency * 1000 for x in r["lookup_records"] if x.ok], f"N = {r['nodes']:,}")
    ax.set_xlabel("lookup latency (ms, virtual)")
    ax.set_ylabel("fraction of lookups")
    ax.set_xscale("log")
    ax.set_title(f"{summary_['scenario']}: lookup latency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)
    written.append(out / "latency_cdf.png")

    churned = [r for r in results if r["churn"]]
    if churned:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in churned:
            w = r["churn"]["windows"]
            ax.plot([x["t"] / 60 for x in w], [100 * x["success_rate"] for x in w], marker=".",
                    label=f"N = {r['nodes']:,}, median session {r['churn']['median_session'] / 60:.0f} min")
        ax.set_xlabel("minutes into churn")
        ax.set_ylabel("lookup success (%) per minute")
        ax.set_ylim(min(90, ax.get_ylim()[0]), 100.5)
        ax.set_title(f"{summary_['scenario']}: success under churn")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "churn_success.png", dpi=110)
        plt.close(fig)
        written.append(out / "churn_success.png")

    if len(results) > 1:
        ns = [r["nodes"] for r in results]
        mean_hops = [r["lookups"]["hops"].get("mean", 0) for r in results]
        msgs = [r["lookups"]["messages"].get("mean", 0) for r in results]
        fig, ax = plt.subplots(figsize=(6, 4))
        x = [math.log2(n) for n in ns]
        ax.plot(x, mean_hops, "o-", label="measured: mean hops")
        ax.plot(x, [r["lookups"]["hops"].get("p99", 0) for r in results], "s--", label="measured: p99 hops")
        ax.plot(x, [math.log2(n) for n in ns], "k:", label="paper's bound: ⌈log2 N⌉ steps")
        k = summary_["dht"].get("k", 20)
        ax.plot(x, [max(1.0, math.log2(n / k)) for n in ns], "g-.", label=f"log2(N / k), k = {k}")
        ax.set_xlabel("log2 N")
        ax.set_ylabel("hops")
        ax2 = ax.twinx()
        ax2.plot(x, msgs, "r^-", alpha=0.5, label="measured: requests per lookup")
        ax2.set_ylabel("requests per lookup", color="r")
        ax.set_title("Kademlia lookups: hops against log2 N")
        ax.grid(alpha=0.3)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig(out / "hops_vs_log2n.png", dpi=110)
        plt.close(fig)
        written.append(out / "hops_vs_log2n.png")
    return written


def text_summary(summary_: dict, run_info: dict) -> str:
    lines = [f"scenario {summary_['scenario']} ({summary_['source']}), seed {summary_['seed']}"]
    for r in summary_["runs"]:
        lk = r["lookups"]
        lines.append(f"\nN = {r['nodes']:,}  ({r['events']:,} events, {r['virtual_seconds']:,.0f} virtual s, "
                     f"wall {run_info['wall_seconds'].get(str(r['nodes']), '?')} s)")
        lines.append(f"  joins: {r['join']['ok']:,} ok, {r['join']['failed']} failed ({r['join']['mode']})")
        if lk["count"]:
            h, lat, m = lk["hops"], lk["latency_ms"], lk["messages"]
            lines.append(f"  lookups: {lk['ok']:,}/{lk['count']:,} found ({100 * lk['success_rate']:.2f}%)")
            lines.append(f"    hops     mean {h.get('mean')}  p50 {h.get('p50')}  p99 {h.get('p99')}  max {h.get('max')}")
            lines.append(f"    latency  p50 {lat.get('p50')} ms  p90 {lat.get('p90')} ms  p99 {lat.get('p99')} ms")
            lines.append(f"    requests per lookup  mean {m.get('mean')}  p99 {m.get('p99')}")
        rec = r["records"]
        if rec["puts_ok"] + rec["puts_failed"]:
            lines.append(f"  records: {rec['puts_ok']} puts ok, gets {rec['gets_ok']}/{rec['gets_ok'] + rec['gets_failed']}")
        if r["churn"]:
            c = r["churn"]
            lines.append(f"  churn: {c['departures_crash']} crashes, {c['departures_graceful']} graceful leaves, "
                         f"{c['arrivals']} arrivals; lookups {100 * (c['lookups']['success_rate'] or 0):.2f}% found")
        rt = r["routing_table"]
        lines.append(f"  routing tables: mean {rt.get('mean')} contacts (min {rt.get('min')}, max {rt.get('max')})")
    lines.append(f"\npeak memory {run_info['max_rss_mib']} MiB")
    return "\n".join(lines)
