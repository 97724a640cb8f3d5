"""Shared workload and statistics for the DHT benchmark (bench/dht/run.py).

Both implementations run the same workload in a fresh process each:

1. start N nodes on 127.0.0.1 (one asyncio loop, one UDP socket per node);
2. join them one after another, each bootstrapping from a random node that
   has already joined;
3. put R records, each from a random node;
4. get every record from a different random node and compare the value.

Reported: join time, put and get latency (p50/p95), get success, datagrams
per get (all datagrams received by all nodes during the get phase, divided
by R), and resident memory per node (RSS growth from before the nodes were
made to after the puts, divided by N).

The garbage collector: both sides run all their nodes in one process, under the same collector
setting (``--gc``, applied by :func:`set_collector` in each side's process before its first node):
``default``, Python's thresholds (700, 10, 10), as the runs of record; or ``daemon``, what a weftnet
daemon sets once started (``runtime/daemon.py``'s ``quiet_collector``: a collection, ``gc.freeze()``
of what exists then, thresholds 50,000 / 20 / 20), applied to kademlia's process too. Each side
reports the CPU seconds its collections took in each phase (``*_gc_cpu_seconds``; the collector's
callbacks, the same on both sides).
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import sys
import time


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[i]


def summarize(name: str, nodes: int, records: int, join_s: float, put_lat: list[float], put_ok: int,
              get_lat: list[float], get_ok: int, msgs_get: int, rss_per_node: float,
              cpu: dict[str, float] | None = None, msgs_join: int | None = None,
              gc_cpu: dict[str, float] | None = None) -> dict:
    """``cpu``: CPU seconds of this process per phase (join, put, get), which the
    load of a shared machine distorts far less than wall-clock time; ``msgs_join``: datagrams
    every node received during the join phase (reported per join: what a join's CPU pays for); ``gc_cpu``:
    the CPU seconds of those the garbage collector took (GcClock)."""
    return {
        "impl": name,
        "nodes": nodes,
        "records": records,
        "join_seconds": round(join_s, 2),
        "put_ok": put_ok,
        "put_p50_ms": round(1000 * pct(put_lat, 50), 2) if put_lat else None,
        "put_p95_ms": round(1000 * pct(put_lat, 95), 2) if put_lat else None,
        "get_ok": get_ok,
        "get_p50_ms": round(1000 * pct(get_lat, 50), 2) if get_lat else None,
        "get_p95_ms": round(1000 * pct(get_lat, 95), 2) if get_lat else None,
        "get_mean_ms": round(1000 * statistics.fmean(get_lat), 2) if get_lat else None,
        "datagrams_per_get": round(msgs_get / records, 1) if records else None,
        **({"datagrams_per_join": round(msgs_join / (nodes - 1), 1)} if msgs_join is not None and nodes > 1 else {}),
        "rss_kib_per_node": round(rss_per_node / 1024, 1),
        **{f"{phase}_cpu_seconds": round(v, 2) for phase, v in (cpu or {}).items()},
        **{f"{phase}_gc_cpu_seconds": round(v, 2) for phase, v in (gc_cpu or {}).items()},
    }


GC_MODES = ("default", "daemon")


def set_collector(mode: str) -> None:
    """The collector setting ``mode`` (GC_MODES) for this process; the same call on both sides."""
    if mode == "daemon":  # runtime/daemon.py quiet_collector(), written out: kademlia's side cannot import weftnet
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
    elif mode != "default":
        raise SystemExit(f"unknown collector setting {mode!r} (one of {', '.join(GC_MODES)})")


class GcClock:
    """CPU seconds spent in the cyclic garbage collector since it was made (its callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = cpu_now()
        else:
            self.seconds += cpu_now() - self._start


def workload_plan(seed: int, nodes: int, records: int):
    rng = random.Random(seed)
    joins = [rng.randrange(i) if i else None for i in range(nodes)]
    puts = [(f"record-{i}".encode(), rng.randbytes(64), rng.randrange(nodes)) for i in range(records)]
    gets = []
    for _key, _value, putter in puts:
        g = rng.randrange(nodes - 1)
        gets.append(g if g < putter else g + 1)
    return joins, puts, gets


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


now = time.perf_counter
cpu_now = time.process_time
