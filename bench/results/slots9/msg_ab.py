"""What the DHT's messages cost to build, decode and read: A/B of checkouts in one run, interleaved.

    .venv/bin/python bench/results/slots9/msg_ab.py --src /tmp/before/src --src src [--rounds 8]

Each side (a checkout's ``src/``) runs in a worker process of its own and times, per call:
building a FindNode and a Nodes of 20 contacts (as the engine does for each request and
answer), decoding a Nodes of 20 contacts met before (the contact cache hit, as in a lookup's
answers), building a Contact (a new key: its NodeId is hashed) and reading a message's field.
The sides take turns each round (the order alternating); per side, the median over rounds of
the best of 9 timeit repeats of ~20 ms each (short, so that some run
undisturbed on a busy machine). Prints ns per call.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys


def worker() -> int:
    import random
    import timeit

    from weftnet.core import wire
    from weftnet.core.contact import Contact
    from weftnet.core.dht.messages import FindNode, Nodes

    rng = random.Random(1)
    keys = [rng.randbytes(32) for _ in range(4096)]
    contacts = tuple(Contact(k, ("10.0.%d.%d" % (i >> 8, i & 255), 4500)) for i, k in enumerate(keys[:20]))
    target = keys[0]
    data = Nodes(7, contacts).encode()
    fn = FindNode(7, target)
    it = iter(range(1 << 62))
    ep = ("10.9.9.9", 4500)
    cases = {
        "FindNode()": (lambda: FindNode(7, target), 20_000),
        "Nodes()": (lambda: Nodes(7, contacts), 20_000),
        "decode(Nodes)": (lambda: wire.decode(data), 1_000),
        "Contact()": (lambda: Contact(keys[next(it) & 4095], ep), 5_000),
        "msg.rid": (lambda: fn.rid, 200_000),
    }
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        out = []
        for name, (f, n) in cases.items():
            t = min(timeit.repeat(f, number=n, repeat=9)) / n
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
    print("median ns per call (ratio to side 0):")
    for i, src in enumerate(a.src):
        cells = "  ".join(f"{k} {statistics.median(v):6.1f} (x{statistics.median(v) / statistics.median(res[0][k]):.3f})"
                          for k, v in res[i].items())
        print(f"  side {i}: {cells}  ({src})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
