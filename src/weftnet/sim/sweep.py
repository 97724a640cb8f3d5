"""Parameter sweeps: one scenario, a grid of settings, one results table.

    [sweep]
    name = "churn-grid"
    base = "churn"              # a bundled scenario name, or a path (relative to this file)
    sizes = [1000, 2000]        # default: the base scenario's sizes
    seeds = [1, 2, 3]           # default: the base scenario's seed

    [axes]                      # any scenario key, as "table.key" = [values]
    "churn.median_session" = [600, 1800]
    "dht.alpha" = [3, 5]

Every combination of sizes x seeds x axes is one *point*: the base scenario
with those values, run by :func:`weftnet.sim.runner.run_size` at that size
and seed. Points are independent, so they run in parallel: on local worker
processes (all cores by default) or on a Dask cluster given its scheduler
address. A point's result depends only on the point (the simulator is
deterministic), never on where or in what order it ran, so the table is the
same bytes whichever engine ran it; wall and CPU time go to ``run.json``.

New dimensions need no code here: an axis is any key the scenario file
accepts, checked by the same validation. When a new scenario table lands
(the NAT mix of the reach work is the one expected), its keys become axes as
soon as ``scenario.py`` knows them, e.g. ``"nat.mix" = ["open", "home"]``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from weftnet.errors import ConfigError
from weftnet.sim.scenario import scenario_from_dict

__all__ = ["Sweep", "load_sweep", "sweep_from_dict", "run_point", "run_sweep", "write_sweep_outputs", "METRICS"]


@dataclass
class Sweep:
    name: str
    base: dict[str, Any]  # the base scenario as TOML data
    base_source: str
    sizes: list[int]
    seeds: list[int]
    axes: dict[str, list[Any]] = field(default_factory=dict)
    source: str = "<dict>"

    def points(self) -> list[dict[str, Any]]:
        """Every combination, in a fixed order: axes (as given), then size, then seed."""
        names = list(self.axes)
        out = []
        for values in itertools.product(*(self.axes[a] for a in names)):
            for n in self.sizes:
                for seed in self.seeds:
                    out.append({"nodes": n, "seed": seed, "settings": dict(zip(names, values))})
        return out


def _scenario_data(base: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for dotted, value in settings.items():
        table, key = dotted.split(".", 1)
        data.setdefault(table, {})[key] = value
    return data


def load_sweep(path: Path) -> Sweep:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sweep file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return sweep_from_dict(data, str(path), path.parent)


def _resolve_base(name: str, where: str, relative_to: Path | None) -> tuple[dict, str]:
    from weftnet.sim.cli import BUNDLED

    candidates = [Path(name)] if Path(name).is_absolute() else \
        ([relative_to / name] if relative_to is not None else []) + [Path(name), BUNDLED / f"{name}.toml"]
    for p in candidates:
        if p.is_file():
            try:
                return tomllib.loads(p.read_text()), str(p)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    known = ", ".join(sorted(q.stem for q in BUNDLED.glob("*.toml")))
    raise ConfigError(f"{where}: [sweep] base {name!r} is neither a file nor a bundled scenario (bundled: {known})")


def _int_list(where: str, key: str, v: Any, lo: int, hi: int) -> list[int]:
    if not isinstance(v, list) or not v or any(not isinstance(x, int) or isinstance(x, bool) for x in v):
        raise ConfigError(f"{where}: [sweep] {key} must be a non-empty list of integers")
    if any(not lo <= x <= hi for x in v):
        raise ConfigError(f"{where}: [sweep] {key} must be from {lo:,} to {hi:,}")
    if len(set(v)) != len(v):
        raise ConfigError(f"{where}: [sweep] {key} lists a value twice")
    return list(v)


def sweep_from_dict(data: dict, where: str = "<dict>", relative_to: Path | None = None) -> Sweep:
    for table in data:
        if table not in ("sweep", "axes"):
            raise ConfigError(f"{where}: unknown table [{table}] (known: sweep, axes)")
    s = data.get("sweep")
    if not isinstance(s, dict):
        raise ConfigError(f"{where}: needs a [sweep] table with at least base = \"SCENARIO\"")
    for key in s:
        if key not in ("name", "base", "sizes", "seeds"):
            raise ConfigError(f"{where}: unknown key [sweep] {key} (known: name, base, sizes, seeds)")
    if not isinstance(s.get("base"), str):
        raise ConfigError(f"{where}: [sweep] base must name a scenario (a file or a bundled name)")
    base, base_source = _resolve_base(s["base"], where, relative_to)
    base_sc = scenario_from_dict(base, base_source)
    sizes = _int_list(where, "sizes", s["sizes"], 2, 2_000_000) if "sizes" in s else list(base_sc.sizes)
    seeds = _int_list(where, "seeds", s["seeds"], 0, 2**63) if "seeds" in s else [base_sc.seed]
    name = s.get("name", f"{base_sc.name}-sweep")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: [sweep] name must be a string")
    axes_in = data.get("axes", {})
    if not isinstance(axes_in, dict):
        raise ConfigError(f"{where}: [axes] must be a table")
    axes: dict[str, list[Any]] = {}
    for dotted, values in axes_in.items():
        if dotted.count(".") != 1:
            raise ConfigError(f"{where}: [axes] {dotted!r} must be \"table.key\" (e.g. \"churn.median_session\")")
        if dotted.split(".")[0] == "scenario":
            raise ConfigError(f"{where}: [axes] {dotted!r}: sizes and seeds are set in [sweep]")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: [axes] {dotted} must be a non-empty list of values")
        for v in values:  # each value must make a valid scenario on its own
            scenario_from_dict(_scenario_data(base, {dotted: v}), f"{where}: [axes] {dotted} = {v!r}: {base_source}")
        axes[dotted] = list(values)
    sw = Sweep(name, base, base_source, sizes, seeds, axes, where)
    if len(sw.points()) > 10_000:
        raise ConfigError(f"{where}: the grid has {len(sw.points()):,} points; at most 10,000")
    return sw


# -- one point ------------------------------------------------------------------

#: The columns of the results table, from one run_size result.
METRICS = (
    "lookups", "lookup_success", "hops_mean", "hops_p99", "latency_p50_ms", "latency_p99_ms",
    "requests_per_lookup", "gets_ok", "gets", "churn_success", "churn_worst_minute", "churn_latency_p50_ms",
    "churn_latency_p99_ms", "departures", "table_mean", "events",
)


def _row(r: dict[str, Any]) -> dict[str, Any]:
    lk = r["lookups"]
    churn = r["churn"] or {}
    clk = churn.get("lookups", {})
    windows = churn.get("windows", [])
    rec = r["records"]
    return {
        "lookups": lk["count"],
        "lookup_success": lk["success_rate"],
        "hops_mean": lk["hops"].get("mean"),
        "hops_p99": lk["hops"].get("p99"),
        "latency_p50_ms": lk["latency_ms"].get("p50"),
        "latency_p99_ms": lk["latency_ms"].get("p99"),
        "requests_per_lookup": lk["messages"].get("mean"),
        "gets_ok": rec["gets_ok"],
        "gets": rec["gets_ok"] + rec["gets_failed"],
        "churn_success": clk.get("success_rate"),
        "churn_worst_minute": min((w["success_rate"] for w in windows), default=None),
        "churn_latency_p50_ms": clk.get("latency_ms", {}).get("p50"),
        "churn_latency_p99_ms": clk.get("latency_ms", {}).get("p99"),
        "departures": (churn.get("departures_crash", 0) + churn.get("departures_graceful", 0)) if churn else None,
        "table_mean": r["routing_table"].get("mean"),
        "events": r["events"],
    }


def run_point(base: dict[str, Any], point: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Run one grid point. Returns (its row of the table, its wall and CPU seconds).

    A plain function of plain data, so a worker process or a Dask worker can
    run it: everything it needs travels in the arguments.
    """
    import gc

    from weftnet.sim.runner import run_size

    sc = scenario_from_dict(_scenario_data(base, point["settings"]), "<sweep point>")
    t0, c0 = time.perf_counter(), time.process_time()
    saved = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)  # as run_scenario does: few cycles, many long-lived objects
    try:
        r = run_size(sc, point["nodes"], point["seed"])
    finally:
        gc.set_threshold(*saved)
    timing = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - c0, 3)}
    return {**point, **_row(r)}, timing


def _point_task(args: tuple[int, dict, dict]) -> tuple[int, dict, dict]:
    i, base, point = args
    row, timing = run_point(base, point)
    return i, row, timing


# -- engines --------------------------------------------------------------------

def _local(tasks: list[tuple[int, dict, dict]], workers: int) -> Iterator[tuple[int, dict, dict]]:
    if workers <= 1 or len(tasks) == 1:
        for t in tasks:
            yield _point_task(t)
        return
    import multiprocessing

    # spawn, not fork: the caller may have threads (a progress bar) whose locks
    # a forked child would inherit held.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=min(workers, len(tasks))) as pool:
        # Largest points first, so a big one does not start last and run alone.
        order = sorted(tasks, key=lambda t: -t[2]["nodes"])
        yield from pool.imap_unordered(_point_task, order, chunksize=1)


def _dask(tasks: list[tuple[int, dict, dict]], address: str, timeout: float) -> Iterator[tuple[int, dict, dict]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("--cluster needs Dask: pip install 'weftnet[cluster]'") from None
    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        order = sorted(tasks, key=lambda t: -t[2]["nodes"])
        # pure=False: each point runs once even if two are equal by value.
        futures = client.map(_point_task, order, pure=False, key=[f"weft-sim-point-{t[0]}" for t in order])
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()


def run_sweep(sw: Sweep, workers: int | None = None, cluster: str | None = None,
              progress: Callable[[int, int], None] | None = None, cluster_timeout: float = 15.0) -> tuple[dict, dict]:
    """Run every point. Returns (results, run_info): results is deterministic, run_info is not."""
    points = sw.points()
    tasks = [(i, sw.base, p) for i, p in enumerate(points)]
    workers = (os.cpu_count() or 1) if workers is None else workers
    rows: list[dict | None] = [None] * len(points)
    timings: list[dict | None] = [None] * len(points)
    t0 = time.perf_counter()
    engine = _dask(tasks, cluster, cluster_timeout) if cluster else _local(tasks, workers)
    done = 0
    for i, row, timing in engine:
        rows[i], timings[i] = row, timing
        done += 1
        if progress:
            progress(done, len(points))
    results = {
        "sweep": sw.name,
        "base": Path(sw.base_source).name,
        "sizes": sw.sizes,
        "seeds": sw.seeds,
        "axes": sw.axes,
        "columns": ["nodes", "seed", *sw.axes, *METRICS],
        "rows": rows,
    }
    run_info = {
        "engine": f"dask at {cluster}" if cluster else f"local, {min(workers, len(points))} worker process(es)",
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "points": [{"index": i, **t} for i, t in enumerate(timings)],
    }
    return results, run_info


# -- outputs ----------------------------------------------------------------------

def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _flat(row: dict[str, Any], axes: list[str]) -> list[Any]:
    return [row["nodes"], row["seed"], *(row["settings"][a] for a in axes), *(row[m] for m in METRICS)]


def write_sweep_outputs(out: Path, results: dict, run_info: dict) -> list[Path]:
    import csv

    out.mkdir(parents=True, exist_ok=True)
    axes = list(results["axes"])
    cols = results["columns"]
    (out / "sweep.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    (out / "run.json").write_text(json.dumps(run_info, indent=1, sort_keys=True) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in results["rows"]:
            w.writerow([_cell(v) for v in _flat(row, axes)])
    lines = [f"# Sweep {results['sweep']} (base scenario {results['base']})", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in results["rows"]:
        lines.append("| " + " | ".join(_cell(v) for v in _flat(row, axes)) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return [out / "sweep.json", out / "run.json", out / "results.csv", out / "results.md", *_plots(out, results)]


def _series(results: dict) -> dict[tuple, dict[int, list[dict]]]:
    """Rows grouped by the axes' values, then by size (seeds pooled)."""
    axes = list(results["axes"])
    groups: dict[tuple, dict[int, list[dict]]] = {}
    for row in results["rows"]:
        key = tuple(row["settings"][a] for a in axes)
        groups.setdefault(key, {}).setdefault(row["nodes"], []).append(row)
    return groups


def _plots(out: Path, results: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = list(results["axes"])
    groups = _series(results)
    panels = [("lookup_success", "lookup success", 100.0, "%"), ("latency_p50_ms", "lookup latency p50", 1.0, "ms"),
              ("latency_p99_ms", "lookup latency p99", 1.0, "ms"), ("hops_mean", "hops (mean)", 1.0, ""),
              ("churn_worst_minute", "worst minute under churn", 100.0, "%"),
              ("requests_per_lookup", "requests per lookup", 1.0, "")]
    panels = [p for p in panels if any(r[p[0]] is not None for r in results["rows"])]
    fig, grid = plt.subplots(math.ceil(len(panels) / 2), 2, figsize=(11, 3.2 * math.ceil(len(panels) / 2)),
                             squeeze=False)
    for ax, (metric, title, scale, unit) in zip(grid.flat, panels):
        for key, by_size in groups.items():
            label = ", ".join(f"{a.split('.', 1)[1]}={v}" for a, v in zip(axes, key)) or "all"
            ns = sorted(by_size)
            vals = [[r[metric] * scale for r in by_size[n] if r[metric] is not None] for n in ns]
            keep = [(n, v) for n, v in zip(ns, vals) if v]
            if not keep:
                continue
            xs = [n for n, _ in keep]
            mean = [sum(v) / len(v) for _, v in keep]
            lo = [m - min(v) for m, (_, v) in zip(mean, keep)]
            hi = [max(v) - m for m, (_, v) in zip(mean, keep)]
            ax.errorbar(xs, mean, yerr=[lo, hi], marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("nodes")
        ax.set_ylabel(f"{title} ({unit})" if unit else title)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in list(grid.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = grid.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.suptitle(f"sweep {results['sweep']}: mean over seeds {results['seeds']} (bars: min to max)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(out / "sweep.png", dpi=100)
    plt.close(fig)
    return [out / "sweep.png"]
