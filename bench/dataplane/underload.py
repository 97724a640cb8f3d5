#!/usr/bin/env python3
"""weftnet under an iperf3 load, each daemon's CPU per GB, and any measurement tool meanwhile.

Brings weftnet up in two namespaces exactly as run.py does (its private network, or ``--overlay``
for the overlay addresses), runs iperf3 for ``--seconds`` (TCP A->B, ``--reverse`` B->A,
``--udp`` for ``-u -l 1200 -b 0``) and, ``--delay`` seconds into it, every ``--cmd`` with ``{a}``
and ``{b}`` replaced by the two daemons' process IDs, e.g.

    python3 bench/dataplane/underload.py --cmd "perf record -g -o /tmp/perf.b -p {b} -- sleep 4"
    python3 bench/dataplane/underload.py --cmd ".venv/bin/py-spy record -p {a} -d 4 -f raw -o /tmp/a.txt"
    python3 bench/dataplane/underload.py --weft /tmp/weft-before        # another build (README.md)

Prints what moved and each end's CPU seconds per GB (from /proc, as run.py reads them); needs
root, iproute2 and iperf3. Nothing is written but what the commands write.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import Topology  # noqa: E402
from run import IPERF_PORT, _descendants, cpu_seconds  # noqa: E402
from systems import WEFT_DEFAULT, Weftnet, WeftnetOverlay  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weft", default=str(WEFT_DEFAULT), help="weft executable (default: the .venv one)")
    p.add_argument("--overlay", action="store_true", help="the overlay addresses instead of a private network")
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--reverse", action="store_true", help="B->A (iperf3 -R)")
    p.add_argument("--udp", action="store_true", help="iperf3 -u -l 1200 -b 0")
    p.add_argument("--delay", type=float, default=1.5, help="start the commands this long into the run")
    p.add_argument("--parallel", type=int, default=1, help="iperf3 -P (parallel streams; default 1)")
    p.add_argument("--workers", type=int, default=1, help="[dataplane] workers in both daemons (default 1)")
    p.add_argument("--cmd", action="append", default=[], help="a shell command; {a} and {b}: the daemons' PIDs; "
                   "{a_all} and {b_all}: theirs and their workers', comma-separated")
    args = p.parse_args()
    system = (WeftnetOverlay if args.overlay else Weftnet)(Path(args.weft), workers=args.workers)
    wd = Path(tempfile.mkdtemp(prefix="dp-underload-"))
    with Topology(wd) as topo:
        overlay = system.setup(topo, wd)
        pb, pa = topo.pids()[:2]  # B is started first
        topo.spawn("b", ["iperf3", "-s", "-p", str(IPERF_PORT)], "iperf3-server")
        topo.wait_for(lambda: topo.listening("b", IPERF_PORT), "iperf3 server", timeout=10)
        argv = ["iperf3", "-c", overlay.server, "-p", str(IPERF_PORT), "-t", str(args.seconds), "-J"]
        argv += ["-R"] if args.reverse else []
        argv += ["-P", str(args.parallel)] if args.parallel > 1 else []
        argv += ["-u", "-l", "1200", "-b", "0"] if args.udp else []
        before = cpu_seconds([pa]), cpu_seconds([pb])
        load = os.getloadavg()[0]
        client = subprocess.Popen(["ip", "netns", "exec", topo.a, *argv], stdout=subprocess.PIPE, text=True)
        time.sleep(args.delay)
        every = {k: ",".join(str(q) for q in sorted(_descendants([pid]))) for k, pid in (("a_all", pa), ("b_all", pb))}
        tools = [subprocess.Popen(c.format(a=pa, b=pb, **every), shell=True) for c in args.cmd]
        out = client.communicate()[0]
        after = cpu_seconds([pa]), cpu_seconds([pb])
        for t in tools:
            t.wait()
    end = json.loads(out)["end"]
    total = end["sum" if args.udp else "sum_received"]
    gb = total["bytes"] / 1e9
    cpu = after[0] - before[0], after[1] - before[1]
    retrans = end.get("sum_sent", {}).get("retransmits")
    print(f"{gb:.2f} GB at {total['bits_per_second'] / 1e9:.2f} Gbit/s ({retrans} retransmits); "
          f"CPU s A {cpu[0]:.2f} B {cpu[1]:.2f}; "
          f"s/GB A {cpu[0] / gb:.2f} B {cpu[1] / gb:.2f} both {(cpu[0] + cpu[1]) / gb:.2f}; load {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
