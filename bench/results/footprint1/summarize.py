#!/usr/bin/env python3
"""Sum a callgrind profile of footprint.py by object file and by function: instructions, and the
last-level misses for instruction fetches, data reads and data writes, per ping.

    python3 summarize.py CALLGRIND_OUT [--pings 20]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys

ROW = re.compile(r"\s*([\d,]+) \([^)]*\)" + r"\s+([\d,]+|\.)(?:\s*\([^)]*\))?" * 3 + r"\s+(\S.*)$")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("profile")
    p.add_argument("--pings", type=int, default=20)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--show=Ir,ILmr,DLmr,DLmw", args.profile],
                         capture_output=True, text=True, check=True).stdout
    by_obj: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    by_fn: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    total = None
    for line in out.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        vals = [0 if v == "." else int(v.replace(",", "")) for v in m.groups()[:4]]
        name = m.group(5)
        if "PROGRAM TOTALS" in name:
            total = vals
            continue
        o = re.search(r"\[([^\]]+)\]\s*$", name)
        obj = o.group(1).rsplit("/", 1)[-1] if o else "libpython (inlined headers)"
        fn = re.sub(r"\s*\[.*$", "", name).rsplit(":", 1)[-1]
        for i in range(4):
            by_obj[obj][i] += vals[i]
            by_fn[fn][i] += vals[i]
    if total is None:
        sys.exit("summarize.py: no totals in the profile")
    n = args.pings

    def row(name: str, v: list[int]) -> str:
        lines = v[1] + v[2] + v[3]
        return (f"| {name} | {v[0] / n:,.0f} | {v[1] / n:,.0f} | {v[2] / n:,.0f} | {v[3] / n:,.0f} | "
                f"{lines / n:,.0f} | {lines * 64 / n / 1024:,.0f} |")

    head = ("| {} | instructions | LL misses: code | data read | data written | lines in all | KiB |\n"
            "|---|---|---|---|---|---|---|")
    print(f"Per ping ({n} pings, three passes each, every pass after 8 MiB streamed through the caches)\n")
    print(head.format("object"))
    print(row("all", total))
    for k, v in sorted(by_obj.items(), key=lambda kv: -sum(kv[1][1:])):
        print(row(k, v))
    print()
    print(head.format("function (top by misses)"))
    for k, v in sorted(by_fn.items(), key=lambda kv: -sum(kv[1][1:]))[:args.top]:
        print(row(k, v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
