"""The partitioned simulator (sim/parallel.py): the same bytes on 1, 2 or 3 processes, bad
process counts refused in one line, and no worker process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from weftnet.core.dht import DhtConfig
from weftnet.sim.cli import sim_command
from weftnet.sim.engine import SIM_DHT
from weftnet.sim.parallel import (NodeRandom, ParallelError, PSimulation, TruncatedUnderlay, check_procs,
                                  lookahead, run_parallel)
from weftnet.sim.report import write_outputs
from weftnet.sim.runner import run_scenario
from weftnet.sim.scenario import scenario_from_dict
from weftnet.sim.underlay import UnderlayConfig

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _children() -> set[int]:
    """This process's live children (zombies, which have exited, left out)."""
    out = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            if state != "Z":
                out.add(int(pid))
    return out


def _summary_bytes(tmp_path: Path, sc_dict: dict, procs: int | None, seed: int = 4) -> bytes:
    sc = scenario_from_dict(sc_dict)
    summary, info, results = run_scenario(sc, seed, procs=procs)
    out = tmp_path / f"p{procs}"
    write_outputs(out, summary, info, results)
    return (out / "summary.json").read_bytes()


def test_one_two_and_three_processes_give_the_same_bytes(tmp_path):
    sc = {"scenario": {"name": "p", "nodes": 160}, "join": {"duration": 40},
          "lookups": {"count": 120, "duration": 30}, "records": {"count": 20}}
    before = _children()
    one = _summary_bytes(tmp_path, sc, 1)
    two = _summary_bytes(tmp_path, sc, 2)
    three = _summary_bytes(tmp_path, sc, 3)
    assert one == two == three
    s = json.loads(one)
    r = s["runs"][0]
    assert s["engine"] == "partitioned"
    assert r["join"]["ok"] == 159 and r["lookups"]["count"] == 120 and r["lookups"]["success_rate"] == 1.0
    assert r["records"]["gets_ok"] == 20
    assert _children() == before  # every worker has exited


def test_churn_partition_and_records_same_bytes_on_two_processes(tmp_path):
    sc = {"scenario": {"name": "pc", "nodes": 120}, "join": {"duration": 30},
          "lookups": {"count": 20, "duration": 10}, "records": {"count": 10},
          "churn": {"duration": 400, "median_session": 200, "crash_fraction": 0.5, "lookups_per_minute": 60},
          "partition": [{"start": 100, "end": 200, "a": [0, 1], "b": [4, 5]}]}
    one = _summary_bytes(tmp_path, sc, 1)
    two = _summary_bytes(tmp_path, sc, 2)
    assert one == two
    c = json.loads(one)["runs"][0]["churn"]
    assert c["departures_crash"] > 20 and c["departures_graceful"] > 20 and c["arrivals"] > 40
    assert c["lookups"]["count"] >= 380


def test_the_classic_engine_is_unchanged_without_procs(tmp_path):
    sc = {"scenario": {"name": "c", "nodes": 100}, "join": {"duration": 30},
          "lookups": {"count": 40, "duration": 10}}
    classic = json.loads(_summary_bytes(tmp_path, sc, None))
    assert "engine" not in classic
    assert json.loads(_summary_bytes(tmp_path, sc, 2))["runs"][0]["lookups"]["count"] == 40


def test_lookahead_bounds_every_cross_partition_delay():
    cfg = UnderlayConfig()
    la = lookahead(cfg, 2)
    assert 0.02 < la < 0.05  # six regions in two blocks: ~35 ms
    u = TruncatedUnderlay(cfg, __import__("random").Random(3))
    for _ in range(20000):
        u.add_node()
    side = [r * 2 // cfg.regions for r in u.region]
    a = [i for i in range(len(side)) if side[i] == 0][:400]
    b = [i for i in range(len(side)) if side[i] == 1][:400]
    low = min(u.base_rtt(i, j) / 2 for i in a for j in b)
    assert low >= la
    assert lookahead(cfg, 1) == float("inf")


@pytest.mark.parametrize("over, words", [
    ({"underlay": {"regions": 1}}, "needs at least 2 underlay regions"),
    ({"underlay": {"regions": 2, "region_spread_ms": 200.0, "min_access_ms": 0.0}}, "no lookahead"),
])
def test_scenarios_that_cannot_be_split_are_refused(over, words):
    sc = scenario_from_dict({"scenario": {"name": "x", "nodes": 50}, **over})
    with pytest.raises(ParallelError, match=words):
        check_procs(sc, 2)


def test_cli_procs_runs_and_refuses_bad_counts(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[scenario]\nname = "cli"\nnodes = 60\n[join]\nduration = 20\n[lookups]\ncount = 20\nduration = 10\n')
    r = CliRunner().invoke(sim_command, [str(f), "--out", str(tmp_path / "o"), "--quiet", "--procs", "2"])
    assert r.exit_code == 0, r.output
    assert "lookups: 20/20 found" in r.output
    info = json.loads((tmp_path / "o" / "run.json").read_text())
    assert info["procs"] == 2
    # Each process's CPU and peak RSS go to run.json (host measurements), not to summary.json.
    usage = info["processes"]["60"]
    assert len(usage) == 2 and len({u["pid"] for u in usage}) == 2
    assert all(u["cpu_s"] > 0 and u["peak_rss_mib"] > 0 for u in usage)
    assert "processes" not in (tmp_path / "o" / "summary.json").read_text()
    for bad, words in (("0", "0 is not in the range"), ("7", "needs at least 7 underlay regions"),
                       ("x", "is not a valid integer")):
        r = CliRunner().invoke(sim_command, [str(f), "--out", str(tmp_path / "b"), "--quiet", "--procs", bad])
        assert r.exit_code == 2, r.output
        assert words in r.output and "Traceback" not in r.output
        assert len([line for line in r.output.splitlines() if line.startswith("Error")]) == 1
    assert not (tmp_path / "b").exists()


def test_a_partitioned_run_reports_progress_through_each_phase(monkeypatch):
    # A window holds a few hundred events a process: progress is counted across windows (counted
    # within one, a partitioned run never reported any, and a long run's log stayed empty).
    sc = scenario_from_dict({"scenario": {"name": "pg", "nodes": 400}, "join": {"duration": 60},
                             "lookups": {"count": 300, "duration": 30}})
    monkeypatch.setattr(PSimulation, "progress_every", 1000)  # (20,000 in a real run: this one is small)
    calls = []
    run_scenario(sc, 2, progress=lambda n, phase, frac: calls.append((n, phase, frac)), procs=2)
    assert len(calls) >= 3
    assert {c[0] for c in calls} == {400}
    assert "join" in {c[1] for c in calls}
    fracs = [c[2] for c in calls]
    assert fracs == sorted(fracs) and 0 < fracs[0] and fracs[-1] <= 1


def _make(rank, procs, links):
    return PSimulation(1, DhtConfig(**SIM_DHT), UnderlayConfig(), rank, procs, links)


def _fails_in_rank_one(sim, _progress):
    for _ in range(50):
        sim.add_node()
    for node in sim.nodes[1:]:
        sim.join(node, sim.nodes[0])
    sim.run_until(1.0)
    if sim.rank == 1:
        raise RuntimeError("injected failure")
    sim.run_until(60.0)
    return sim.rank


def test_a_failing_worker_fails_the_run_and_no_process_is_left():
    before = _children()
    with pytest.raises(ParallelError, match="process 1 failed: RuntimeError: injected failure"):
        run_parallel(2, _make, _fails_in_rank_one)
    assert _children() == before


def test_a_worker_exits_when_its_parent_is_killed(tmp_path):
    pidfile = tmp_path / "worker.pid"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {SRC!r})
        from weftnet.core.dht import DhtConfig
        from weftnet.sim.engine import SIM_DHT
        from weftnet.sim.parallel import PSimulation, run_parallel
        from weftnet.sim.underlay import UnderlayConfig

        def make(rank, procs, links):
            return PSimulation(1, DhtConfig(**SIM_DHT), UnderlayConfig(), rank, procs, links)

        def body(sim, _progress):
            if sim.rank == 1:
                open({str(pidfile)!r}, "w").write(str(os.getpid()))
                sim.run_until(100.0)  # waits at the first barrier for the parent, which never comes
            else:
                time.sleep(600)

        run_parallel(2, make, body)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.05)
        worker = int(pidfile.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()

        def gone() -> bool:
            try:
                stat = Path(f"/proc/{worker}/stat").read_text()
            except FileNotFoundError:
                return True
            return stat.rsplit(")", 1)[1].split()[0] == "Z"

        for _ in range(600):  # (a liveness wait, not a timing: the worker exits as soon as it reads EOF)
            if gone():
                break
            time.sleep(0.05)
        assert gone()
    finally:
        if parent.poll() is None:
            parent.kill()


def test_node_random_streams_are_reproducible_and_spread():
    a, b, c = NodeRandom(1, 5), NodeRandom(1, 5), NodeRandom(1, 6)
    xs = [a.getrandbits(64) for _ in range(1000)]
    assert xs == [b.getrandbits(64) for _ in range(1000)]
    assert xs != [c.getrandbits(64) for _ in range(1000)]
    r = NodeRandom(2, 0)
    fs = [r.random() for _ in range(20000)]
    assert all(0.0 <= f < 1.0 for f in fs) and abs(sum(fs) / len(fs) - 0.5) < 0.01
    assert len(r.randbytes(32)) == 32 and 0 <= r.getrandbits(256) < 2 ** 256
    s = r.sample(range(100), 20)
    assert len(set(s)) == 20 and all(0 <= v < 100 for v in s)
