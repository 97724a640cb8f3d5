#!/usr/bin/env python3
"""Where the CPU of one iperf3 TCP stream goes, per GB moved, process by process.

``iperf`` brings up one of bench/dataplane's systems in its two namespaces (``veth``: the bare
underlay; ``vxlan``: kernel VXLAN; ``weftnet``: a private network; ``overlay``: weftnet's
overlay addresses), runs one iperf3 TCP stream A->B for ``--seconds`` (``--reverse``: B->A)
and reads from /proc, around the run, the user and system CPU time of: the iperf3 client, the
iperf3 server, each weftnet daemon (with its children), the ksoftirqd threads, and the whole
machine (/proc/stat: user + nice + system + irq + softirq; on a shared machine it holds the
other jobs too). ``--syscalls`` also counts the daemons' system calls with ``perf stat -e
raw_syscalls:sys_enter`` over the run. Several ``--systems`` are run one after another, the
whole list ``--rounds`` times (interleaved).

``crypto`` times AES-256-GCM (the cipher the bench's daemons negotiate) sealing and opening one
64,000-byte payload with ``cryptography``, as the transport calls it, and reports µs per call and
CPU s per GB.

    sudo python3 bench/results/dp9/tools/budget.py iperf --systems veth,vxlan,weftnet --rounds 2
    python3 bench/results/dp9/tools/budget.py crypto

Kernel time (a tick of 4 ms at HZ=250, without IRQ time accounting on this kernel) is charged to
the task a softirq interrupted, so the receive work a sender's transmit triggers lands in the
sender's system time; what runs from the idle task is in the machine total only. Prints one
line per run (and ``--json`` writes them).
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

HERE = Path(__file__).resolve()
DP = HERE.parents[3] / "dataplane"
sys.dont_write_bytecode = True
sys.path.insert(0, str(DP))

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its waited-for children."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(f[11]) + int(f[13])) / TICK, (int(f[12]) + int(f[14])) / TICK


def _tree(pids: list[int]) -> tuple[float, float]:
    from run import _descendants

    u = s = 0.0
    for p in _descendants(pids):
        a, b = _stat(p)
        u, s = u + a, s + b
    return u, s


def _ksoftirqd() -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if Path(f"/proc/{e}/comm").read_text().startswith("ksoftirqd"):
                    out.append(int(e))
            except OSError:
                pass
    return out


def _machine() -> dict[str, float]:
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
    return {"busy": (user + nice + system + irq + softirq) / TICK, "softirq": softirq / TICK,
            "steal": steal / TICK, "idle": (idle + iowait) / TICK}


def _ends(daemons: list[int]) -> dict:
    """Each weftnet daemon apart (B is started first), with its children."""
    if len(daemons) < 2:
        return {}
    return {"daemon_b": _tree([daemons[0]]), "daemon_a": _tree([daemons[1]])}


def _system(name: str, weft: str):
    import systems

    if name == "veth":
        return systems.Veth()
    if name == "vxlan":
        return systems.Vxlan()
    if name == "weftnet":
        return systems.Weftnet(Path(weft))
    if name == "overlay":
        return systems.WeftnetOverlay(Path(weft))
    raise SystemExit(f"unknown system {name}")


def one(name: str, args) -> dict:
    from netns import Topology
    from run import IPERF_PORT

    system = _system(name, args.weft)
    wd = Path(tempfile.mkdtemp(prefix="dp9-budget-"))
    with Topology(wd) as topo:
        overlay = system.setup(topo, wd)
        daemons = topo.pids()  # weftnet: B then A; none for the kernel's tunnels
        server = topo.spawn("b", ["iperf3", "-s", "-p", str(IPERF_PORT)], "iperf3-server")
        topo.wait_for(lambda: topo.listening("b", IPERF_PORT), "iperf3 server", timeout=10)
        time.sleep(1.0)
        argv = ["iperf3", "-c", overlay.server, "-p", str(IPERF_PORT), "-t", str(args.seconds), "-J"]
        argv += ["-R"] if args.reverse else []
        soft = _ksoftirqd()
        load = os.getloadavg()[0]
        before = {"server": _stat(server.pid), "daemons": _tree(daemons) if daemons else (0.0, 0.0),
                  "ksoftirqd": _tree(soft), "machine": _machine(), **_ends(daemons)}
        client = subprocess.Popen(["ip", "netns", "exec", topo.ns("a"), *argv], stdout=subprocess.PIPE, text=True)
        perf = None
        if args.syscalls and daemons:
            from run import _descendants

            pids = ",".join(str(p) for p in _descendants(daemons))
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", pids, "--",
                                     "sleep", str(max(1, args.seconds - 1))], stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        out = client.stdout.read()
        _pid, _status, ru = os.wait4(client.pid, 0)  # the client's own CPU, exactly (`ip netns exec` execs it)
        client.returncode = 0
        client_cpu = (ru.ru_utime, ru.ru_stime)
        wall = time.monotonic() - t0
        after = {"server": _stat(server.pid), "daemons": _tree(daemons) if daemons else (0.0, 0.0),
                 "ksoftirqd": _tree(soft), "machine": _machine(), **_ends(daemons)}
        syscalls = None
        if perf is not None:
            err = perf.communicate()[1]
            for line in err.splitlines():
                if "raw_syscalls:sys_enter" in line:
                    try:
                        syscalls = int(line.split(",")[0])
                    except ValueError:
                        pass
        load_end = os.getloadavg()[0]
    end = json.loads(out)["end"]
    moved = end["sum_received"]["bytes"]
    gb = moved / 1e9
    row = {"system": name, "reverse": args.reverse, "gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
           "gb": round(gb, 3), "wall_s": round(wall, 2), "load_before": round(load, 2), "load_after": round(load_end, 2)}
    row["client_user"], row["client_sys"] = (round(x / gb, 3) for x in client_cpu)
    for k in ("server", "daemons", "ksoftirqd", *(("daemon_a", "daemon_b") if "daemon_a" in after else ())):
        u = after[k][0] - before[k][0]
        s = after[k][1] - before[k][1]
        row[f"{k}_user"], row[f"{k}_sys"] = round(u / gb, 3), round(s / gb, 3)
    m0, m1 = before["machine"], after["machine"]
    for k in ("busy", "softirq", "steal"):
        row[f"machine_{k}"] = round((m1[k] - m0[k]) / gb, 3)
    row["machine_busy_cores"] = round((m1["busy"] - m0["busy"]) / wall, 2)
    if syscalls is not None:
        row["daemon_syscalls_per_gb"] = round(syscalls / (gb * (max(1, args.seconds - 1) / args.seconds)))
    return row


def line(r: dict) -> str:
    s = (f"{r['system']:8s}{' -R' if r['reverse'] else '   '} {r['gbit_s']:5.2f} Gbit/s | s/GB: "
         f"client {r['client_user']:.2f}u+{r['client_sys']:.2f}s, server {r['server_user']:.2f}u+{r['server_sys']:.2f}s, "
         f"daemons {r['daemons_user']:.2f}u+{r['daemons_sys']:.2f}s, ksoftirqd {r['ksoftirqd_sys']:.2f}, "
         f"machine busy {r['machine_busy']:.2f} ({r['machine_busy_cores']:.2f} cores; softirq {r['machine_softirq']:.2f}, "
         f"steal {r['machine_steal']:.2f}) | load {r['load_before']:.1f}->{r['load_after']:.1f}")
    if "daemon_a_user" in r:
        s += (f" | A {r['daemon_a_user']:.2f}u+{r['daemon_a_sys']:.2f}s,"
              f" B {r['daemon_b_user']:.2f}u+{r['daemon_b_sys']:.2f}s")
    if "daemon_syscalls_per_gb" in r:
        s += f" | daemon syscalls/GB {r['daemon_syscalls_per_gb']}"
    return s


def crypto(args) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(os.urandom(32))
    data = os.urandom(args.size)
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, data, b"h" * 14)
    for label, fn in (("seal", lambda: aead.encrypt(nonce, data, b"h" * 14)),
                      ("open", lambda: aead.decrypt(nonce, sealed, b"h" * 14))):
        best = []
        for _ in range(args.repeat):
            c = time.process_time()
            for _ in range(args.n):
                fn()
            best.append((time.process_time() - c) / args.n)
        best.sort()
        us = best[len(best) // 2] * 1e6
        print(f"AES-256-GCM {label} of {args.size} bytes: median {us:.1f} µs (min {best[0] * 1e6:.1f}), "
              f"{us / args.size * 1e3:.3f} s/GB (load {os.getloadavg()[0]:.1f})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("iperf")
    i.add_argument("--systems", default="veth,vxlan,weftnet")
    i.add_argument("--rounds", type=int, default=1)
    i.add_argument("--seconds", type=int, default=10)
    i.add_argument("--reverse", action="store_true")
    i.add_argument("--syscalls", action="store_true")
    i.add_argument("--weft", default="/work/main/.venv/bin/weft")
    i.add_argument("--json", type=Path)
    c = sub.add_parser("crypto")
    c.add_argument("--size", type=int, default=64_000)
    c.add_argument("--n", type=int, default=2000)
    c.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    if args.cmd == "crypto":
        crypto(args)
        return 0
    rows = []
    for _ in range(args.rounds):
        for name in args.systems.split(","):
            r = one(name, args)
            rows.append(r)
            print(line(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
