#!/usr/bin/env python3
"""Data plane: iperf3 TCP and UDP and ping latency between two network namespaces through several tunnels.

For each system (raw veth, kernel VXLAN, wireguard-go, tinc, nebula, yggdrasil, weftnet with a
private network, weftnet by overlay address) the
benchmark creates two fresh namespaces joined by a veth pair (10.200.0.1/24 <-> 10.200.0.2/24),
brings the tunnel up, runs an iperf3 server in B and a client in A against B's overlay address,
and tears everything down again. A missing tool gives a "not installed" row and a failing system
an "error" row; the other systems still run.

    sudo python3 bench/dataplane/run.py                      # all systems, 10 s each
    sudo python3 bench/dataplane/run.py --only veth,nebula --seconds 5 --reverse

Writes dataplane.json and dataplane.md into --out (default bench/results/). Needs root, iproute2,
iperf3 and ping; see bench/dataplane/README.md for the packages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # keep bench/dataplane/ free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))  # bench/, for hostinfo

from hostinfo import aead_rate, cpu_model, interpreter_of  # noqa: E402
from netns import UNDERLAY_A, UNDERLAY_B, UNDERLAY_MTU, BenchError, Topology, require_tools  # noqa: E402
from systems import (  # noqa: E402
    REPO, WEFT_DEFAULT, System, Weftnet, all_systems, baseline, baseline_overlay, first_line)

IPERF_PORT = 5201
REQUIRED = ("ip", "iperf3", "ping", "ss")


# -- measurement ---------------------------------------------------------------------------------

def _descendants(pids: list[int]) -> list[int]:
    """These processes and every living process below them (weftnet's data-plane workers are
    forked children of the daemon)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = set(pids), list(pids)
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in out:
                out.add(child)
                todo.append(child)
    return sorted(out)


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time so far of these processes, their threads and their children (living
    ones, and those that ended and were waited for), or None if none."""
    if not pids:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _descendants(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime (fields 14-17 of stat(5)): a worker that was restarted
        # during the run is counted through its parent's cutime/cstime.
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / tick


def iperf(topo: Topology, server: str, dev: str, seconds: int, reverse: bool, tunnel_pids: list[int],
          parallel: int = 1) -> dict:
    """One iperf3 TCP run from A to `server` (or back with -R); receiver's rate and a few extras.

    The byte counters of the tunnel device `dev` in A are read around the run, and the run is
    rejected if they saw less than the data iperf3 moved (traffic took another path). The CPU time
    the tunnel's own processes (both ends) spent during the run is read too: CPU seconds per GB
    moved is the cost of the tunnel itself, which other work on a shared machine does not change
    the way it changes the rate.
    """
    cpu_before = cpu_seconds(tunnel_pids)
    before = topo.dev_bytes("a", dev)
    argv = ["iperf3", "-c", server, "-p", str(IPERF_PORT), "-t", str(seconds), "-J",
            "--connect-timeout", "5000"]
    if reverse:
        argv.append("-R")
    if parallel > 1:
        argv += ["-P", str(parallel)]
    try:
        cp = topo.exec("a", argv, timeout=seconds + 20, check=False)
    except BenchError:
        topo.check_alive()  # a dead tunnel daemon is the better explanation for a hung client
        raise
    try:
        data = json.loads(cp.stdout)
    except ValueError as e:
        raise BenchError(f"iperf3 gave no JSON (exit {cp.returncode}): {(cp.stderr or cp.stdout).strip()[:300]}") from e
    if data.get("error"):
        raise BenchError(f"iperf3{' -R' if reverse else ''}: {data['error']}")
    after = topo.dev_bytes("a", dev)
    end = data["end"]
    moved = end["sum_received"]["bytes"]
    seen = after[0] - before[0] if reverse else after[1] - before[1]
    if seen < moved:
        raise BenchError(f"{dev} counted {seen} bytes but iperf3 moved {moved}: traffic bypassed the tunnel")
    cpu = end.get("cpu_utilization_percent", {})
    cpu_after = cpu_seconds(tunnel_pids)
    tunnel_cpu = None if cpu_before is None else round(cpu_after - cpu_before, 2)
    return {
        "tunnel_cpu_s": tunnel_cpu,
        "tunnel_cpu_s_per_gb": None if tunnel_cpu is None or not moved else round(tunnel_cpu / (moved / 1e9), 2),
        "gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
        "bytes": moved,
        "dev_bytes": seen,
        "retransmits": end.get("sum_sent", {}).get("retransmits"),
        "cpu_client_pct": round(cpu.get("host_total", 0.0), 1),
        "cpu_server_pct": round(cpu.get("remote_total", 0.0), 1),
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, nearest-rank (no interpolation: a real sample)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


def ping_latency(topo: Topology, server: str, count: int, interval: float = 0.01) -> dict:
    """`count` pings from A to B through the idle tunnel, `interval` seconds apart (10 ms unless
    told): p50, p99, max and loss.

    Each reply's own round-trip time is read from ping's output (`time=0.123 ms`), so the
    percentiles are of individual packets, not ping's summary average."""
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", server]
    cp = topo.exec("a", argv, timeout=count * (interval + 0.04) + 30, check=False)
    rtts = [float(m) for m in re.findall(r"time=([0-9.]+) ms", cp.stdout)]
    if not rtts:
        raise BenchError(f"ping through the tunnel got no reply: {(cp.stderr or cp.stdout).strip()[-300:]}")
    return {
        "count": count,
        "received": len(rtts),
        "p50_ms": round(percentile(rtts, 50), 3),
        "p99_ms": round(percentile(rtts, 99), 3),
        "max_ms": round(max(rtts), 3),
        "mean_ms": round(sum(rtts) / len(rtts), 3),
    }


def iperf_udp(topo: Topology, server: str, seconds: int, length: int, tunnel_pids: list[int],
              parallel: int = 1) -> dict:
    """iperf3 UDP from A to B with `length`-byte datagrams sent as fast as the client can
    (`-b 0`): the rate the server received, the loss it counted, and the tunnel's CPU per GB."""
    cpu_before = cpu_seconds(tunnel_pids)
    argv = ["iperf3", "-c", server, "-p", str(IPERF_PORT), "-t", str(seconds), "-J", "-u",
            "-l", str(length), "-b", "0", "--connect-timeout", "5000"]
    if parallel > 1:
        argv += ["-P", str(parallel)]
    cp = topo.exec("a", argv, timeout=seconds + 20, check=False)
    try:
        data = json.loads(cp.stdout)
    except ValueError as e:
        raise BenchError(f"iperf3 -u gave no JSON (exit {cp.returncode}): {(cp.stderr or cp.stdout).strip()[:300]}") from e
    if data.get("error"):
        raise BenchError(f"iperf3 -u: {data['error']}")
    end = data["end"]
    # iperf3 3.12 puts the server's view (received packets, lost packets) in end.sum; newer
    # versions also give sum_received. Delivered = datagrams that arrived, times their length.
    summ = end.get("sum_received") or end["sum"]
    packets = summ.get("packets") or 0
    lost = summ.get("lost_packets") or 0
    delivered_bytes = (packets - lost) * length
    duration = summ.get("seconds") or seconds
    cpu_after = cpu_seconds(tunnel_pids)
    tunnel_cpu = None if cpu_before is None else round(cpu_after - cpu_before, 2)
    return {
        "delivered_mbit_s": round(delivered_bytes * 8 / duration / 1e6, 1),
        "sent_packets": packets,
        "lost_packets": lost,
        "lost_percent": round(100.0 * lost / packets, 1) if packets else None,
        "tunnel_cpu_s": tunnel_cpu,
        "tunnel_cpu_s_per_gb": (None if tunnel_cpu is None or not delivered_bytes
                                else round(tunnel_cpu / (delivered_bytes / 1e9), 2)),
    }


def measure(system: System, workroot: Path, seconds: int, reverse: bool, ping_count: int = 200,
            udp_length: int = 1200, parallel: int = 1) -> dict:
    """Set up, measure and tear down one system; always returns a result row."""
    row: dict = {"name": system.name, "title": system.title, "parallel": parallel}
    missing = system.missing()
    if missing:
        row.update(status="not installed", error=f"missing: {', '.join(missing)}")
        return row
    row["version"] = system.version()
    row["load_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine skews the figures
    wd = workroot / (system.name + (f"-P{parallel}" if parallel > 1 else ""))
    wd.mkdir(parents=True)
    try:
        with Topology(wd) as topo:
            overlay = system.setup(topo, wd)
            row.update(server=overlay.server, dev=overlay.dev, mtu=overlay.mtu, notes=overlay.notes)
            tunnel_pids = topo.pids()  # the system's own processes; iperf3 is not one of them
            topo.spawn("b", ["iperf3", "-s", "-p", str(IPERF_PORT)], "iperf3-server")
            topo.wait_for(lambda: topo.listening("b", IPERF_PORT), "iperf3 server", timeout=10)
            if ping_count:
                row["ping"] = ping_latency(topo, overlay.server, ping_count)
            row["forward"] = iperf(topo, overlay.server, overlay.dev, seconds, False, tunnel_pids, parallel)
            if reverse:
                row["reverse"] = iperf(topo, overlay.server, overlay.dev, seconds, True, tunnel_pids, parallel)
            if udp_length:
                row["udp"] = iperf_udp(topo, overlay.server, seconds, udp_length, tunnel_pids, parallel)
            topo.check_alive()
            if hasattr(system, "after"):  # e.g. weftnet's packets per data-plane worker
                row.update(system.after(topo, wd))
        row["status"] = "ok"
    except BenchError as e:
        row.update(status="error", error=str(e))
    except Exception as e:  # report anything unexpected in the row and go on with the others
        row.update(status="error", error=f"{type(e).__name__}: {e}")
    return row


# -- machine description -------------------------------------------------------------------------

def machine() -> dict:
    """CPU model, cores, RAM, kernel, distribution, Python and iperf3 versions."""
    cpu = cpu_model()
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    distro = "unknown"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "kernel": os.uname().release,
        "os": distro,
        "python": platform.python_version(),
        "iperf3": first_line(["iperf3", "--version"]),
    }


# -- output --------------------------------------------------------------------------------------

def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _gbit(row: dict, key: str) -> str:
    res = row.get(key)
    return f"{res['gbit_s']:.2f}" if res else "—"


def _cpu(row: dict, key: str) -> str:
    res = row.get(key)
    return f"{res['tunnel_cpu_s_per_gb']:.1f}" if res and res.get("tunnel_cpu_s_per_gb") is not None else "—"


def _ping(row: dict, key: str) -> str:
    res = row.get("ping")
    return f"{res[key]:.3f}" if res else "—"


def _udp(row: dict) -> str:
    res = row.get("udp")
    if not res:
        return "—"
    return f"{res['delivered_mbit_s']:.0f} ({res['lost_percent']:.0f} % lost)"


def markdown(report: dict) -> str:
    """The Markdown rendering of a report."""
    m = report["machine"]
    reverse = report["reverse"]
    out = [
        "# Data plane: TCP and UDP throughput, ping latency (bench/dataplane/run.py)",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, kernel {m['kernel']}, "
        f"{m['os']}, Python {m['python']}",
    ]
    if m.get("cipher"):
        out.append(f"- cipher: {m['cipher']} (weftnet's bulk cipher, with the daemon's interpreter)")
    out += [
        f"- load: {m['iperf3']}, one TCP stream (main table), {report['seconds']} s per direction, client in A, "
        f"server in B; the rate is the receiver's",
        f"- underlay: veth pair {UNDERLAY_A}/24 <-> {UNDERLAY_B}/24 between two fresh network namespaces "
        f"per system, MTU {UNDERLAY_MTU}",
        "- client, server and both tunnel endpoints share the same cores, so each figure is the cost of "
        "both ends of a tunnel on one machine, not a link speed; 'load before' is the 1-minute load "
        "average when the system was set up (anything else running on the machine lowers the figures)",
        "- tunnel CPU s/GB: user + system CPU seconds the tunnel's own processes (both ends, all their "
        "threads) spent per GB iperf3 moved — its cost, which other work on the machine changes far less "
        "than the rate; '—' for the in-kernel rows (no process)",
        f"- ping: {report.get('ping_count', 200)} pings A→B through the idle tunnel, 10 ms apart, before the "
        "iperf3 runs; p50 and p99 of the individual round-trip times",
        f"- UDP: iperf3 -u -l {report.get('udp_length', 1200)} -b 0 A→B for the same time (the client sends as "
        "fast as it can); Mbit/s delivered = datagrams the server received × their length / time, with "
        "the share the server counted lost; its tunnel CPU s/GB is per GB delivered",
    ]
    out += [f"- note: {n}" for n in report.get("notes", [])]
    out.append("")
    head = ["system", "status", "Gbit/s A→B"]
    if reverse:
        head.append("Gbit/s B→A (-R)")
    head.append("tunnel CPU s/GB A→B")
    if reverse:
        head.append("tunnel CPU s/GB B→A")
    head += ["ping p50 ms", "ping p99 ms", "UDP Mbit/s delivered (loss)", "UDP tunnel CPU s/GB",
             "retransmits", "tunnel MTU", "load before", "version"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["results"]:
        cells = [row["title"], row["status"], _gbit(row, "forward")]
        if reverse:
            cells.append(_gbit(row, "reverse"))
        cells.append(_cpu(row, "forward"))
        if reverse:
            cells.append(_cpu(row, "reverse"))
        cells += [_ping(row, "p50_ms"), _ping(row, "p99_ms"), _udp(row), _cpu(row, "udp"),
                  row.get("forward", {}).get("retransmits"), row.get("mtu"), row.get("load_1m"),
                  row.get("version", "—")]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if report.get("scaling"):
        n = report["scaling_streams"]
        out += ["", f"## Scaling: weftnet with 1 and 2 data-plane workers, iperf3 -P {n}", "",
                f"The same private network as the weftnet row, each iperf3 run with {n} parallel streams "
                "(TCP, and UDP `-u -l` as above), so flows can spread; '[dataplane] workers' set in both "
                "daemons. 'Packets per slot' is what each process of A's daemon sent and received "
                "(slot 0 is the main process) over the whole run, read from `weft status --json`, and how many "
                "pieces of UDP GRO reads the processes handed to the one owning their partition.", "",
                "| workers | status | Gbit/s A→B | Gbit/s B→A (-R) | tunnel CPU s/GB A→B | UDP Mbit/s delivered (loss) "
                "| UDP tunnel CPU s/GB | packets per slot at A (out / in) | load before |",
                "|---|---|---|---|---|---|---|---|---|"]
        for row in report["scaling"]:
            per = "; ".join(f"{s['slot']}: {s['packets_out']} / {s['packets_in']}" for s in row.get("slots", [])) or "—"
            if row.get("handoff"):  # pieces of a UDP GRO read that another process opens (docs/dataplane.md)
                handed = row["handoff"].get("handed", 0) + sum(s.get("handoff_handed", 0) for s in row["slots"][1:])
                per += f"; GRO pieces handed to another process: {handed}, lost {row['handoff'].get('lost', 0)}"
            out.append("| " + " | ".join(_cell(c) for c in (
                row.get("workers", 1), row["status"] + (f": {row['error']}" if row.get("error") else ""),
                _gbit(row, "forward"), _gbit(row, "reverse"), _cpu(row, "forward"), _udp(row), _cpu(row, "udp"),
                per, row.get("load_1m"))) + " |")
    out += ["", "## Configuration notes", ""]
    for row in report["results"]:
        bits = [f"{k}: {v}" for k, v in row.get("notes", {}).items()]
        if row.get("mtu"):
            bits.insert(0, f"device {row['dev']}, MTU {row['mtu']}")
        if row.get("server"):
            bits.append(f"iperf3 to {row['server']}")
        if row.get("error"):
            bits.append(f"**{row['status']}**: {row['error']}")
        out.append(f"- **{row['title']}** — " + "; ".join(_cell(b) for b in bits))
    out.append("")
    return "\n".join(out)


# -- main ----------------------------------------------------------------------------------------

def _terminate(signum, _frame):
    """Turn SIGTERM/SIGHUP into an exception so the try/finally teardown runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated systems to run (default: all): "
                   + ",".join(s.name for s in all_systems()))
    p.add_argument("--seconds", type=int, default=10, help="iperf3 -t per direction (default 10)")
    p.add_argument("--reverse", action="store_true", help="also measure B->A with iperf3 -R")
    p.add_argument("--pings", type=int, default=200, help="pings through each tunnel for the latency "
                   "columns (default 200; 0 skips them)")
    p.add_argument("--udp-length", type=int, default=1200, help="iperf3 -u -l for the UDP column "
                   "(default 1200; 0 skips it)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                   help="directory for dataplane.json and dataplane.md (default bench/results/)")
    p.add_argument("--weft", type=Path, default=WEFT_DEFAULT, help=f"weft executable (default {WEFT_DEFAULT})")
    p.add_argument("--baseline", type=Path, metavar="WEFT",
                   help="another weft executable (e.g. the code before a change): adds systems weftnet-baseline, "
                        "weftnet-baseline-workers2 and weftnet-baseline-overlay")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, keys, logs)")
    p.add_argument("--scaling", type=int, default=4, metavar="STREAMS",
                   help="also run weftnet with 1 and 2 data-plane workers with iperf3 -P STREAMS "
                   "(default 4; 0 skips it; with --only, only if weftnet is among the systems)")
    p.add_argument("--note", action="append", default=[], metavar="TEXT",
                   help="a line for the report, e.g. that other jobs shared the machine (repeatable)")
    args = p.parse_args(argv)

    if os.geteuid() != 0:
        p.error("needs root (network namespaces, TUN devices)")
    if args.seconds < 1:
        p.error("--seconds must be at least 1")
    require_tools(p, REQUIRED)
    systems = all_systems(args.weft)
    if args.baseline is not None:
        systems.append(baseline(args.baseline))
        if not args.only or "weftnet-baseline-workers2" in args.only:
            systems.append(baseline(args.baseline, workers=2))
        if not args.only or "weftnet-baseline-overlay" in args.only:
            systems.append(baseline_overlay(args.baseline))
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        # weftnet's other [dataplane] variants (weftnet-noslice, weftnet-asyncio-slice) run only when named
        systems += [Weftnet(args.weft, variant=v) for v in Weftnet.VARIANTS
                    if f"weftnet-{v}" not in {s.name for s in systems}]
        known = {s.name for s in systems}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            p.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        systems = sorted((s for s in systems if s.name in wanted), key=lambda s: wanted.index(s.name))

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    workroot = Path(tempfile.mkdtemp(prefix=f"dp-{os.getpid()}-"))
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine(), "cipher": aead_rate(interpreter_of(args.weft))},
        "seconds": args.seconds,
        "reverse": args.reverse,
        "ping_count": args.pings,
        "udp_length": args.udp_length,
        "notes": args.note,
        "results": [],
    }
    try:
        for system in systems:
            print(f"[dataplane] {system.name} ...", file=sys.stderr, flush=True)
            row = measure(system, workroot, args.seconds, args.reverse, args.pings, args.udp_length)
            summary = row["status"]
            if row["status"] == "ok":
                summary += f", {_gbit(row, 'forward')} Gbit/s"
                if args.reverse:
                    summary += f", reverse {_gbit(row, 'reverse')} Gbit/s"
                if row.get("ping"):
                    summary += f", ping p50 {_ping(row, 'p50_ms')} p99 {_ping(row, 'p99_ms')} ms"
                if row.get("udp"):
                    summary += f", UDP {_udp(row)}"
            elif row.get("error"):
                summary += f": {row['error']}"
            print(f"[dataplane] {system.name}: {summary}", file=sys.stderr, flush=True)
            report["results"].append(row)
        if args.scaling and (not args.only or "weftnet" in args.only.split(",")):
            report["scaling_streams"] = args.scaling
            report["scaling"] = []
            for workers in (1, 2):
                system = Weftnet(args.weft, workers=workers)
                print(f"[dataplane] scaling: {system.name}, -P {args.scaling} ...", file=sys.stderr, flush=True)
                row = measure(system, workroot, args.seconds, True, 0, args.udp_length, args.scaling)
                row["workers"] = workers
                print(f"[dataplane] scaling: {system.name}: {row['status']}, {_gbit(row, 'forward')} / "
                      f"{_gbit(row, 'reverse')} Gbit/s, UDP {_udp(row)} {row.get('error', '')}",
                      file=sys.stderr, flush=True)
                report["scaling"].append(row)
    except KeyboardInterrupt as e:
        print(f"[dataplane] interrupted ({e or 'SIGINT'}); torn down, no results written", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"[dataplane] work directory kept: {workroot}", file=sys.stderr)
        else:
            shutil.rmtree(workroot, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dataplane.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "dataplane.md").write_text(markdown(report))
    print(f"[dataplane] wrote {args.out / 'dataplane.md'} and dataplane.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
