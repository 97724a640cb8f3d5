"""Python objects over 512 bytes (what CPython hands to malloc, not pymalloc) that a weftnet node holds after
bench/dht's join and put phases (per-node caches), by the line that allocated them, per node.

    PYTHONPATH=src .venv/bin/python bench/results/dht-2026-12-01-host/big_objects.py 500
"""
import asyncio, sys, io, contextlib, tracemalloc, gc, collections
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "dht"))
import common
snaps = []
orig = common.rss_bytes
def rb():
    gc.collect(); snaps.append(tracemalloc.take_snapshot()); return orig()
common.rss_bytes = rb
import weftnet_side as s, pernode
pernode.install()
tracemalloc.start(1)
N = int(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()):
    asyncio.run(s.main(N, 200, 1))
def big(snap):
    d = collections.Counter(); c = collections.Counter()
    for t in snap.traces:
        if t.size > 512:
            fr = t.traceback[0]; k = f"{fr.filename.split('/src/')[-1].split('site-packages/')[-1]}:{fr.lineno}"
            d[k] += t.size; c[k] += 1
    return d, c
(b0, c0), (b1, c1) = big(snaps[0]), big(snaps[1])
tot = sum(b1.values()) - sum(b0.values())
print(f"> 512 B traced: {tot / N / 1024:.2f} KiB/node")
for k, v in (b1 - b0).most_common(15):
    print(f"{v / N:8.0f} B {(c1[k] - c0[k]) / N:6.2f} blocks {k}")
