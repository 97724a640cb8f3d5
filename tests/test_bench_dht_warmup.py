"""bench/dht's ``--warm-up``: both sides run two throwaway nodes before the memory baseline, so the
KiB/node column counts what each node adds, not the process's one-off set-up at its first node
(weftnet's ~1.6 MB of lazy crypto set-up, bench/results/dmem17 §4), and the workload measured after
it is the same one (every record put and read)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "dht"


def _side(script: str, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(BENCH / script), "--nodes", "12", "--records", "6", "--seed", "3",
                           *extra], capture_output=True, text=True, timeout=120, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_weftnet_side_warm_up_takes_the_one_off_set_up_out_of_the_memory_column():
    cold = _side("weftnet_side.py", "--per-node-caches")
    warm = _side("weftnet_side.py", "--per-node-caches", "--warm-up")
    for row in (cold, warm):
        assert (row["put_ok"], row["get_ok"]) == (6, 6)
    # ~1.6 MB over 12 nodes is ~130 KiB a node: far beyond what one run differs from the next
    assert warm["rss_kib_per_node"] < cold["rss_kib_per_node"] - 50, (cold, warm)


@pytest.mark.skipif(importlib.util.find_spec("kademlia") is None,
                    reason="bmuller's kademlia not installed (pip install '.[bench]')")
def test_kademlia_side_warm_up_runs_the_same_workload():
    cold = _side("kademlia_side.py")
    warm = _side("kademlia_side.py", "--warm-up")
    for row in (cold, warm):
        assert (row["put_ok"], row["get_ok"]) == (6, 6)
    # the throwaway servers' datagrams are not counted, and the workload's node IDs are drawn as without them
    assert warm["datagrams_per_join"] == cold["datagrams_per_join"]
    assert warm["bytes_per_join"] == cold["bytes_per_join"]
