"""`weft sim SCENARIO --seed S --out DIR`: run a simulation scenario and report;
`weft sim sweep GRID.toml`: run a grid of them in parallel (sim/sweep.py).

SCENARIO is a TOML file, or the name of a bundled scenario (small, churn,
kademlia-paper, scale-100k, scale-1m).
"""

from __future__ import annotations

from pathlib import Path

import click

BUNDLED = Path(__file__).resolve().parent / "scenarios"

#: Set once a run's outputs are written: the ``weft`` process may then leave without freeing the
#: simulation object by object (a million nodes: ~2.5 minutes after the summary, measured), see
#: ``weftnet.cli.main.main``. Library callers and in-process CLI runners are not affected.
DONE_WRITING = False


def resolve_scenario(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p
    bundled = BUNDLED / f"{name}.toml"
    if bundled.exists():
        return bundled
    known = ", ".join(sorted(q.stem for q in BUNDLED.glob("*.toml")))
    raise click.BadParameter(f"no file {name!r} and no bundled scenario of that name (bundled: {known})",
                             param_hint="SCENARIO")


class _SimGroup(click.Group):
    """`weft sim SCENARIO ...` runs one scenario (the `run` subcommand), so the
    short form keeps working next to `weft sim sweep GRID.toml`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sim", cls=_SimGroup)
def sim_command() -> None:
    """Discrete-event simulation: `weft sim SCENARIO` runs one, `weft sim sweep GRID` a grid."""


@sim_command.command("run")
@click.argument("scenario")
@click.option("--seed", type=int, help="Random seed (default: the scenario's).")
@click.option("--out", "out", type=click.Path(file_okay=False), default="sim-out", show_default=True,
              help="Directory for summary.json, run.json and the plots.")
@click.option("--nodes", type=click.IntRange(2, 2_000_000), help="Override the scenario's node count.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--procs", type=click.IntRange(1, 64),
              help="Run on this many processes, each owning a block of the underlay's regions (the "
                   "partitioned engine: the same result for any count, not the classic engine's; "
                   "docs/simulator.md). Default: the classic engine, one process.")
def run_command(scenario: str, seed: int | None, out: str, nodes: int | None, quiet: bool,
                procs: int | None) -> None:
    """Run SCENARIO (a TOML file or a bundled name) in the discrete-event simulator."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from weftnet.sim.report import text_summary, write_outputs
    from weftnet.sim.runner import run_scenario
    from weftnet.sim.scenario import load_scenario

    try:  # before a run that may take minutes, not after it
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.UsageError("weft sim draws its plots with matplotlib, which is not installed: "
                               "pip install 'weftnet[sim]'") from None

    sc = load_scenario(resolve_scenario(scenario))
    if procs is not None:
        from weftnet.sim.parallel import ParallelError, check_procs
        try:
            check_procs(sc, procs)
        except ParallelError as e:
            raise click.BadParameter(str(e), param_hint="--procs") from None
    if sc.nat is not None:
        _run_nat(sc, seed, out, nodes, quiet)
        return
    sizes = [nodes] if nodes else sc.sizes
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]N={task.fields[n]:,}[/] {task.fields[phase]:<8}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), console=console,
                  disable=quiet) as bar:
        tasks = {n: bar.add_task("", total=1.0, n=n, phase="waiting") for n in sizes}

        def progress(n: int, phase: str, frac: float) -> None:
            bar.update(tasks[n], completed=frac, phase=phase)

        try:
            summary, run_info, results = run_scenario(sc, seed, sizes, progress, procs)
        except Exception as e:
            from weftnet.sim.parallel import ParallelError
            if isinstance(e, ParallelError):
                raise click.ClickException(str(e)) from None
            raise
        for n in sizes:
            bar.update(tasks[n], completed=1.0, phase="done")
    files = write_outputs(Path(out), summary, run_info, results)
    click.echo(text_summary(summary, run_info))
    click.echo("\nwrote " + ", ".join(str(f) for f in files))
    global DONE_WRITING
    DONE_WRITING = True


def _run_nat(sc, seed: int | None, out: str, nodes: int | None, quiet: bool) -> None:
    """A scenario with a [nat] table: the NAT connectivity experiment (sim/nat.py)."""
    import json
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from weftnet.sim.nat import nat_plot, nat_text, run_nat_scenario
    from weftnet.sim.report import machine_info

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.fields[phase]:<6}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=Console(stderr=True), disable=quiet) as bar:
        task = bar.add_task("", total=1.0, phase="join")
        summary = run_nat_scenario(sc, seed, nodes, lambda phase, frac: bar.update(task, completed=frac, phase=phase))
    summary["scenario"] = sc.name
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (outdir / "run.json").write_text(json.dumps({"wall_seconds": round(time.perf_counter() - t0, 1),
                                                 "machine": machine_info()}, indent=1) + "\n")
    plot = nat_plot(outdir, summary)
    click.echo(nat_text(summary))
    click.echo(f"\nwrote {outdir / 'summary.json'}, {outdir / 'run.json'}, {plot}")


@sim_command.command("sweep")
@click.argument("grid", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), default="sweep-out", show_default=True,
              help="Directory for results.csv/.md, sweep.json, run.json and sweep.png.")
@click.option("--workers", type=click.IntRange(1, 1024), help="Local worker processes (default: all cores).")
@click.option("--cluster", metavar="ADDRESS",
              help="Run the points on a Dask cluster (scheduler address, e.g. tcp://10.0.0.5:8786) "
                   "instead of local processes; its workers need the same weftnet installed.")
@click.option("--cluster-timeout", type=click.FloatRange(0.1, 3600), default=15.0, show_default=True,
              help="Seconds to wait for the Dask scheduler to answer.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sweep_command(grid: str, out: str, workers: int | None, cluster: str | None, cluster_timeout: float,
                  quiet: bool) -> None:
    """Run every point of the sweep GRID (a TOML file) and write one table and plots for all of them."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from weftnet.sim.sweep import load_sweep, run_sweep, write_sweep_outputs

    sw = load_sweep(Path(grid))
    n = len(sw.points())
    with Progress(TextColumn(f"[bold]{sw.name}[/] points"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=quiet) as bar:
        task = bar.add_task("", total=n)
        results, run_info = run_sweep(sw, workers, cluster, lambda done, total: bar.update(task, completed=done),
                                      cluster_timeout)
    files = write_sweep_outputs(Path(out), results, run_info)
    click.echo((Path(out) / "results.md").read_text())
    click.echo(f"{n} points on {run_info['engine']} in {run_info['wall_seconds']} s; wrote "
               + ", ".join(str(f) for f in files))
