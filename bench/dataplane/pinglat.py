#!/usr/bin/env python3
"""Ping latency through several tunnels at once, in interleaved rounds.

run.py measures one system after another, so each row's ping sees whatever else the machine was
doing at that minute; on a shared machine that moves a p50 by more than the differences between
the systems. Here every system is brought up at the same time, each in its own pair of network
namespaces (run.py's setup), and then ROUNDS rounds of PINGS pings (10 ms apart, run.py's
interval, unless ``--interval`` says otherwise) go through each system in turn, so each round of
each system sees the same load. The report gives every round's p50 and p99, and the median of the
rounds' values per system.

    sudo python3 bench/dataplane/pinglat.py --only wireguard-go,weftnet,weftnet-asyncio --rounds 8

Writes pinglat.json and pinglat.md into --out (default bench/results/). Needs what run.py needs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import BenchError, Topology, require_tools  # noqa: E402
from run import _descendants, _terminate, machine, ping_latency  # noqa: E402
from floors import floor_systems  # noqa: E402
from systems import REPO, WEFT_DEFAULT, Weftnet, all_systems, baseline, baseline_overlay  # noqa: E402


def _load() -> float:
    return os.getloadavg()[0]


def cpu_ns(pids: list[int]) -> int | None:
    """Nanoseconds on a CPU so far of every thread of these processes and their children
    (/proc/PID/task/TID/schedstat: finer than stat's 10 ms ticks, which a round of pings through an
    idle tunnel barely fills)."""
    total, seen = 0, False
    for pid in _descendants(pids):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                seen = True
            except (OSError, ValueError, IndexError):
                pass
    return total if seen else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="wireguard-go,weftnet,weftnet-asyncio",
                   help="comma-separated systems (run.py's names, weftnet-noslice, weftnet-asyncio-slice, and the "
                   "floor tunnels floor-c, floor-hybrid, floor-python; "
                   "default: wireguard-go,weftnet,weftnet-asyncio)")
    p.add_argument("--rounds", type=int, default=8, help="rounds of pings per system (default 8)")
    p.add_argument("--pings", type=int, default=200, help="pings per round (default 200)")
    p.add_argument("--interval", type=float, default=0.01,
                   help="seconds between pings (default 0.01, run.py's; ping(8)'s own is 1: a tunnel idle "
                        "between pings, its caches and CPUs gone cold)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="directory for pinglat.json/.md")
    p.add_argument("--weft", type=Path, default=WEFT_DEFAULT, help=f"weft executable (default {WEFT_DEFAULT})")
    p.add_argument("--baseline", type=Path, metavar="WEFT",
                   help="another weft executable (e.g. the code before a change): adds systems weftnet-baseline "
                   "and weftnet-baseline-overlay")
    p.add_argument("--build", action="append", default=[], metavar="NAME=WEFT",
                   help="one more weft executable, as system weftnet-NAME (repeatable: several builds or "
                   "settings, e.g. a wrapper that sets an environment variable, interleaved in one run)")
    p.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                   help="first, with no traffic at all, each tunnel's CPU over this many seconds (all "
                        "systems at once): what an idle tunnel costs its host (default 0: not measured)")
    p.add_argument("--note", action="append", default=[], metavar="TEXT", help="a line for the report")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (network namespaces, TUN devices)")
    if args.rounds < 1 or args.pings < 2:
        p.error("--rounds must be at least 1 and --pings at least 2")
    if not 0 <= args.idle <= 3600:
        p.error("--idle must be from 0 to 3600 seconds")
    if not 0.002 <= args.interval <= 10:
        p.error("--interval must be from 0.002 to 10 seconds (ping(8) refuses less than 2 ms)")
    require_tools(p, ("ip", "ping", "ss"))
    known = {s.name: s for s in all_systems(args.weft)}
    for variant in Weftnet.VARIANTS:  # weftnet-noslice, weftnet-asyncio-slice: each change on its own
        known.setdefault(f"weftnet-{variant}", Weftnet(args.weft, variant=variant))
    for s in floor_systems():  # floor-c, floor-hybrid, floor-python: bounds, not peers (floors.py)
        known[s.name] = s
    if args.baseline is not None:
        known["weftnet-baseline"] = baseline(args.baseline)
        known["weftnet-baseline-overlay"] = baseline_overlay(args.baseline)
    for spec in args.build:
        bname, sep, path = spec.partition("=")
        if not sep or not bname or not path:
            p.error(f"--build wants NAME=WEFT, not {spec!r}")
        s = Weftnet(Path(path))
        s.name, s.title = f"weftnet-{bname}", f"weftnet, {bname} ({path})"
        known[s.name] = s
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        p.error(f"unknown systems: {', '.join(unknown)} (known: {', '.join(known)})")
    systems = [known[n] for n in wanted]
    for s in systems:
        if s.missing():
            p.error(f"{s.name}: not installed ({', '.join(s.missing())})")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    work = Path(tempfile.mkdtemp(prefix="pinglat-"))
    started = datetime.datetime.now(datetime.timezone.utc)
    rows: dict[str, dict] = {}
    try:
        with ExitStack() as stack:
            up = []
            for i, s in enumerate(systems):
                wd = work / s.name
                wd.mkdir()
                topo = stack.enter_context(Topology(wd, prefix=f"pl{os.getpid()}-{i}"))
                print(f"[pinglat] {s.name}: setting up", flush=True)
                overlay = s.setup(topo, wd)
                rows[s.name] = {"system": s.name, "title": s.title, "version": s.version(), "mtu": overlay.mtu,
                                "notes": overlay.notes, "rounds": []}
                up.append((s, topo, overlay))
            time.sleep(2.0)  # let start-up work (DHT joins, publishing) settle
            if args.idle:
                # After the settling: a tunnel that carried nothing for a while (a peer becomes idle
                # 5 s after its last packet in weftnet's paths engine), then the window.
                time.sleep(10.0)
                before = [(s, cpu_ns(topo.pids()), time.monotonic()) for s, topo, _ in up]
                print(f"[pinglat] idle for {args.idle:g} s", flush=True)
                time.sleep(args.idle)
                for (s, cpu0, t0), (_, topo, _) in zip(before, up):
                    cpu1 = cpu_ns(topo.pids())
                    if cpu0 is not None and cpu1 is not None:
                        rows[s.name]["idle_cpu_ms_per_s"] = round((cpu1 - cpu0) / 1e6 / (time.monotonic() - t0), 2)
            for r in range(args.rounds):
                for s, topo, overlay in up:
                    load = _load()
                    pids = topo.pids()
                    cpu0 = cpu_ns(pids)
                    res = ping_latency(topo, overlay.server, args.pings, args.interval)
                    cpu1 = cpu_ns(pids)
                    res["load"] = round(load, 2)
                    if cpu0 is not None and cpu1 is not None:
                        res["tunnel_cpu_us_per_ping"] = round((cpu1 - cpu0) / res["received"] / 1000, 1)
                    rows[s.name]["rounds"].append(res)
                    print(f"[pinglat] round {r + 1} {s.name}: p50 {res['p50_ms']} p99 {res['p99_ms']} ms "
                          f"(load {load:.2f})", flush=True)
    except KeyboardInterrupt:
        print("[pinglat] interrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"[pinglat] error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows.values():
        rs = row["rounds"]
        row["median_p50_ms"] = round(statistics.median(x["p50_ms"] for x in rs), 3)
        row["median_p99_ms"] = round(statistics.median(x["p99_ms"] for x in rs), 3)
        cpu = [x["tunnel_cpu_us_per_ping"] for x in rs if "tunnel_cpu_us_per_ping" in x]
        row["median_cpu_us_per_ping"] = round(statistics.median(cpu), 1) if cpu else None
        # The same CPU a second of pinging: at ping(8)'s 1 s interval mostly the tunnel's own
        # background work (keepalives, path probes), not the pings.
        row["median_cpu_ms_per_s"] = round(row["median_cpu_us_per_ping"] / 1000 / args.interval, 2) if cpu else None
    report = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "rounds": args.rounds,
              "pings": args.pings, "interval_s": args.interval, "notes": args.note, "systems": list(rows.values())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pinglat.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "pinglat.md").write_text(markdown(report))
    print(f"[pinglat] wrote {args.out / 'pinglat.md'} and pinglat.json")
    return 0


def _dash(value) -> str:
    return "—" if value is None else f"{value:g}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Ping latency through the tunnels, interleaved rounds (bench/dataplane/pinglat.py)",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, kernel {m['kernel']}, {m['os']}, "
        f"Python {m['python']}",
        "- setup: every system up at once, each in its own pair of network namespaces joined by a veth "
        "(bench/dataplane/run.py's setup); then, per round, each system in turn gets "
        f"{report['pings']} pings A→B through its idle tunnel, {report.get('interval_s', 0.01) * 1000:g} ms apart "
        f"({report['rounds']} rounds), so each "
        "round of each system sees the same load",
        "- p50 / p99: of the individual round-trip times of one round; 'median of rounds' is the median of "
        "those per-round values; 'tunnel CPU µs per ping': user + system CPU of the tunnel's processes (both "
        "ends) during the round, per reply, and the same per second of pinging; 'idle': the tunnel's CPU "
        "a second with no traffic at all (`--idle`), before the rounds",
        *[f"- note: {n}" for n in report["notes"]],
        "",
        "| system | median of rounds: p50 ms | median of rounds: p99 ms | tunnel CPU µs per ping (median) | "
        "tunnel CPU ms a second, pinging / idle | p50 per round | p99 per round | load per round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["systems"]:
        rs = row["rounds"]
        lines.append(f"| {row['title']} | {row['median_p50_ms']:.3f} | {row['median_p99_ms']:.3f} | "
                     f"{row['median_cpu_us_per_ping'] if row['median_cpu_us_per_ping'] is not None else '—'} | "
                     f"{_dash(row.get('median_cpu_ms_per_s'))} / {_dash(row.get('idle_cpu_ms_per_s'))} | "
                     + " ".join(f"{x['p50_ms']:.3f}" for x in rs) + " | "
                     + " ".join(f"{x['p99_ms']:.2f}" for x in rs) + " | "
                     + " ".join(f"{x['load']:.1f}" for x in rs) + " |")
    lines += ["", "## Configuration notes", ""]
    for row in report["systems"]:
        notes = "; ".join(f"{k}: {v}" for k, v in row["notes"].items())
        lines.append(f"- **{row['title']}** — MTU {row['mtu']}; {notes}; {row['version']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
