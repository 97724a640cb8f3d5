"""`weft sim sweep`: a grid of scenarios on local processes and on a Dask cluster, one table."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from weftnet.cli.main import cli
from weftnet.errors import ConfigError
from weftnet.sim.sweep import load_sweep, run_point, run_sweep, sweep_from_dict, write_sweep_outputs

BASE = """
[scenario]
name = "tiny-churn"
nodes = 60
[join]
duration = 20
[lookups]
count = 20
duration = 10
[records]
count = 5
[churn]
duration = 240
median_session = 120
lookups_per_minute = 30
"""

GRID = """
[sweep]
name = "tiny-grid"
base = "base.toml"
sizes = [40, 70]
seeds = [1, 2]

[axes]
"churn.median_session" = [60, 600]
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    (d / "base.toml").write_text(BASE)
    (d / "grid.toml").write_text(GRID)
    return d / "grid.toml"


@pytest.fixture(scope="module")
def local_run(grid):
    """The grid once on two local worker processes (shared by the tests below)."""
    return run_sweep(load_sweep(grid), workers=2)


def test_sweep_runs_every_point_on_local_processes_and_writes_one_table(grid, local_run, tmp_path):
    sw = load_sweep(grid)
    assert len(sw.points()) == 8
    results, info = local_run
    assert info["engine"].startswith("local, 2 worker")
    rows = results["rows"]
    # Every combination once, in grid order, whatever order the workers finished in.
    assert [(r["settings"]["churn.median_session"], r["nodes"], r["seed"]) for r in rows] == [
        (m, n, s) for m in (60, 600) for n in (40, 70) for s in (1, 2)]
    for r in rows:
        assert r["lookups"] == 20 and r["lookup_success"] >= 0.9
        assert r["gets"] == 5 and r["churn_worst_minute"] is not None
    # Shorter sessions mean more departures in the same churn phase.
    dep = {(r["settings"]["churn.median_session"], r["nodes"], r["seed"]): r["departures"] for r in rows}
    assert all(dep[(60, n, s)] > dep[(600, n, s)] for n in (40, 70) for s in (1, 2))
    files = write_sweep_outputs(tmp_path / "out", results, info)
    with open(tmp_path / "out" / "results.csv") as f:
        table = list(csv.reader(f))
    assert table[0][:3] == ["nodes", "seed", "churn.median_session"] and len(table) == 9
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 20_000 and len(files) == 5
    # A point's row depends on the point only, not on the process that ran it.
    row, timing = run_point(sw.base, sw.points()[5])
    assert row == rows[5] and timing["cpu_s"] > 0


def test_sweep_on_a_dask_cluster_gives_the_same_table(grid, local_run):
    distributed = pytest.importorskip("distributed", reason="Dask is the optional cluster engine: pip install .[cluster]")
    sw = load_sweep(grid)
    local, _ = local_run
    # A real cluster: a scheduler and two worker processes on loopback, started and stopped here.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster:
        remote, info = run_sweep(sw, cluster=cluster.scheduler_address)
    assert info["engine"] == f"dask at {cluster.scheduler_address}"
    assert remote == local


def test_cli_sweep(grid, tmp_path):
    small = tmp_path / "small.toml"  # two points of the grid, in one process
    small.write_text(f'[sweep]\nbase = "{grid.parent / "base.toml"}"\nsizes = [30]\nseeds = [1, 2]\n')
    r = CliRunner().invoke(cli, ["sim", "sweep", str(small), "--workers", "1", "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "| nodes | seed | lookups |" in r.output and "2 points on local, 1 worker" in r.output
    s = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert [row["seed"] for row in s["rows"]] == [1, 2]
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nbase = "base.toml"\n[axes]\n"churn.median" = [1]\n')
    (tmp_path / "base.toml").write_text(BASE)
    r = CliRunner().invoke(cli, ["sim", "sweep", str(bad)])
    assert r.exit_code == 1 and "unknown key [churn] median" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["sim", "sweep", str(grid), "--cluster", "tcp://127.0.0.1:9", "--cluster-timeout", "1",
                                 "--quiet"])
    assert r.exit_code == 1 and "Dask scheduler at tcp://127.0.0.1:9" in r.output


@pytest.mark.parametrize("data, words", [
    ({}, "needs a [sweep] table"),
    ({"sweep": {"base": "no-such"}}, "neither a file nor a bundled scenario"),
    ({"sweep": {"base": "small", "sizes": [1]}}, "sizes must be from 2"),
    ({"sweep": {"base": "small", "seeds": "1"}}, "seeds must be a non-empty list"),
    ({"sweep": {"base": "small", "sizez": [1]}}, "unknown key [sweep] sizez"),
    ({"sweep": {"base": "small"}, "axes": {"alpha": [1]}}, "must be \"table.key\""),
    ({"sweep": {"base": "small"}, "axes": {"dht.alpha": ["three"]}}, "[dht] alpha must be an integer"),
    ({"sweep": {"base": "small"}, "axes": {"scenario.nodes": [5]}}, "set in [sweep]"),
    ({"sweep": {"base": "small"}, "grid": {}}, "unknown table [grid]"),
])
def test_sweep_errors_name_the_problem(data, words):
    with pytest.raises(ConfigError) as exc:
        sweep_from_dict(data, "g.toml")
    assert words in str(exc.value) and "g.toml" in str(exc.value)
