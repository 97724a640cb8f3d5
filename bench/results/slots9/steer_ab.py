"""Per-payload cost of Paths.steer, A/B of checkouts in one run, interleaved.

    .venv/bin/python bench/results/slots9/steer_ab.py --src /tmp/before/src --src src [--rounds 8]

Each side (a checkout's ``src/``) runs in a worker process of its own: two NodeCores on
weftnet.sim.paths' PathLab (two links each, as tests/test_paths.py's two_sites), A streams
overlay packets to B for 3 s of virtual time so B is a tracked peer, then the worker times
``A.paths.steer(B's node ID, payload, now)`` as the transport calls it once per payload sent:
"plain" (no [[class]] configured: note the traffic and return None) and "class" (a
``duplicate`` class that matches the payload: the cached choice of two paths is returned).
The sides take turns each round (the order alternating); per side, the median over rounds of
the best of 5 timeit repeats of 200,000 calls (20,000 for "class"). Prints ns per call.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys


def worker() -> int:
    import timeit

    from weftnet.core.paths.config import ClassSpec
    from weftnet.sim.paths import PathLab, overlay_packet

    def lab(classes):
        lab = PathLab(1)
        lab.net.routable = lambda s, d: s[0].split(".")[1] == d[0].split(".")[1]
        for name, i in (("A", 1), ("B", 2)):
            lab.node(name, {"isp1": f"10.1.0.{i}", "isp2": f"10.2.0.{i}"}, classes=classes,
                     costs={"isp1": 1, "isp2": 10})
        lab.mesh()
        lab.stream("A", "B", 3.0, dport=6000)
        return lab

    cases = {}
    for name, classes in (("plain", ()), ("class", (ClassSpec("c", proto=17, dport=((6000, 6000),),
                                                              policy="duplicate"),))):
        lb = lab(classes)
        paths, nid, now = lb.cores["A"].paths, lb.node_id("B"), lb.net.now
        payload = overlay_packet(1, now, 40000, 6000)
        want = paths.steer(nid, payload, now)
        assert (want is None) == (not classes) and (classes == () or len(want) == 2), want
        cases[name] = (paths, nid, payload, now)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        out = []
        for name, (paths, nid, payload, now) in cases.items():
            f, n = paths.steer, 200_000 if name == "plain" else 20_000
            t = min(timeit.repeat(lambda: f(nid, payload, now), number=n, repeat=5)) / n
            out.append(f"{name}={t * 1e9:.1f}")
        print(" ".join(out), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=pathlib.Path, action="append", default=[])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker()
    procs = []
    for src in a.src:
        env = {**os.environ, "PYTHONPATH": str(src.resolve())}
        p = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)
    res = [dict() for _ in procs]
    for r in range(a.rounds):
        order = list(range(len(procs)))
        if r % 2:
            order.reverse()
        for i in order:
            procs[i].stdin.write("go\n")
            procs[i].stdin.flush()
            line = procs[i].stdout.readline().split()
            for kv in line:
                k, v = kv.split("=")
                res[i].setdefault(k, []).append(float(v))
            print(f"round {r} side {i}: {' '.join(line)} ns  load {os.getloadavg()[0]:.2f}", flush=True)
    for p in procs:
        p.stdin.close()
        p.wait()
    print("median ns per steer call (ratio to side 0):")
    for i, src in enumerate(a.src):
        cells = "  ".join(f"{k} {statistics.median(v):6.1f} (x{statistics.median(v) / statistics.median(res[0][k]):.3f})"
                          for k, v in res[i].items())
        print(f"  side {i}: {cells}  ({src})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
