#!/usr/bin/env python3
"""What an idle spell costs the next bit of Python on this machine.

A ping through a tunnel wakes each daemon after it slept since the last ping: 10 ms apart in
bench/dataplane, a second apart with ping(8)'s default. On a VM whose idle vCPUs halt at once, the
host runs other work on that core meanwhile, and the code that runs first after the wake-up finds
its caches (and the TLB) emptied. This times one fixed piece of Python (a 256-step loop, and the
same loop writing one byte in each of 256 pages) right after sleeping 0, 10, 100 and 1,000 ms,
medians of ``--n`` wake-ups each (a quarter of that after 1 s), so a reader of ping figures from different hosts sees how hard
each host's idle spells hit interpreted code. Nothing else should be running.

    python3 bench/dataplane/idlecold.py [--n 40]

Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

PAGES = 256
_buf = bytearray(4096 * PAGES)


def loop() -> None:
    for _ in range(PAGES):
        pass


def pages() -> None:
    buf = _buf
    for i in range(0, 4096 * PAGES, 4096):
        buf[i] = 1


def measure(fn, gap: float, n: int) -> float:
    """Median µs of ``fn`` run right after sleeping ``gap`` seconds, ``n`` times."""
    times = []
    clock = time.perf_counter
    for _ in range(n):
        if gap:
            time.sleep(gap)
        t = clock()
        fn()
        times.append((clock() - t) * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40, help="wake-ups per cell (default 40)")
    args = p.parse_args(argv)
    if args.n < 3:
        p.error("--n must be at least 3")
    for fn in (loop, pages):  # warm up: the first calls compile and fault the pages in
        for _ in range(50):
            fn()
    gaps = (0.0, 0.01, 0.1, 1.0)
    n_long = max(3, args.n // 4)  # runs after the 1 s sleep (each costs a second)
    print(f"µs, median of {args.n} runs right after sleeping ({n_long} after 1 s; no sleep: back to back)")
    print(f"{'':40}" + "".join(f"{('%g ms' % (g * 1000)) if g else 'no sleep':>12}" for g in gaps))
    for name, fn in (("256-step loop", loop), ("one byte written in each of 256 pages", pages)):
        cells = [measure(fn, g, args.n if g < 1 else n_long) for g in gaps]
        print(f"{name:40}" + "".join(f"{c:12.1f}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
