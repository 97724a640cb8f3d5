#!/usr/bin/env python3
"""Where a ping's time goes inside the two weftnet daemons, from kernel tracepoints.

Brings up weftnet as run.py does (two namespaces, a veth, network ``bench``), sends PINGS pings
A→B 10 ms apart, and records with ``perf record`` the scheduler's wake-ups and switches and
every system call of the two daemons. Per ping it then splits the round trip at the daemons'
system calls:

* A: ``epoll_wait`` returns → TUN ``read`` → UDP ``sendto`` (the gap: route, firewall, seal),
* B: ``epoll_wait`` returns → ``recvmsg`` → TUN ``writev`` (open, admit) → the drain's ``read``
  → ``sendto`` of the reply,
* A: ``epoll_wait`` returns → ``recvmsg`` → TUN ``writev``,

plus the time from each wake-up to the daemon running, the system calls' own time, the kernel's
part of each send (a daemon's ``sendto`` entered → the other daemon woken), and how often the woken
daemon is put on another CPU than its waker's (an idle one may be halted). A gap
between two system calls of one daemon is that daemon's Python and event loop (the tracepoints
add about a µs per call). Medians and p90 over the pings.

    sudo python3 bench/dataplane/pingtrace.py --pings 250 [--weft .venv/bin/weft] [--system floor-python]

Needs root, ``perf`` and what run.py needs. Prints its table; writes nothing unless ``--dump FILE``
(the decoded trace, its first line naming the pids).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import BenchError, Topology, require_tools  # noqa: E402
from floors import floor_systems  # noqa: E402
from systems import WEFT_DEFAULT, Weftnet  # noqa: E402

NR_READ, NR_WRITEV, NR_SENDTO, NR_RECVMSG, NR_EPOLL_WAIT = 0, 20, 44, 47, 281  # x86_64 (281: epoll_pwait)
NR_WRITE, NR_RECVFROM, NR_EPOLL_WAIT_PLAIN = 1, 45, 232
_LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")

STAGES = ("A: epoll_wait returns -> TUN read", "A: read -> sendto (route, firewall, seal)",
          "B: woken -> on a CPU", "B: epoll_wait returns -> recvmsg", "B: recvmsg -> TUN writev (open, admit)",
          "B: writev -> drain read", "B: drain read -> sendto (route, firewall, seal)",
          "A: woken -> on a CPU (reply)", "A: epoll_wait returns -> recvmsg", "A: recvmsg -> TUN writev (open, admit)",
          "system calls on the path (A, B, A)", "ping sendto -> ping has the reply",
          "A: sendto enters -> B woken (kernel: UDP, veth, B's socket)",
          "B: sendto enters -> A woken (kernel: UDP, veth, A's socket)",
          "A: writev enters -> ping woken", "ping: woken -> on a CPU",
          "woken daemon (B, then A) on the other CPU than its waker, % of pings")


def parse(lines, ping: int, a: int, b: int, nr_recv: int = NR_RECVMSG, nr_write: int = NR_WRITEV) -> dict[str, list[float]]:
    """Per-stage durations (µs) of every ping whose calls are all in the trace. weftnet receives with
    recvmsg and writes its TUN with writev; the floor tunnels (floors.py) use recvfrom and write, given
    as `nr_recv` and `nr_write` (the stages keep weftnet's names). epoll_wait and epoll_pwait count alike."""
    cycles: list[list] = []
    for line in lines:
        m = _LINE.match(line)
        if not m:
            continue
        _comm, _pid, tid, _cpu, t, name, rest = m.groups()
        tid, t = int(tid), float(t) * 1e6
        if tid == ping and name == "raw_syscalls:sys_enter" and rest.startswith(f"NR {NR_SENDTO} "):
            cycles.append([(t, "P", "send", 0)])
            continue
        if not cycles:
            continue
        if name.startswith("raw_syscalls:") and tid in (a, b, ping):
            who = "A" if tid == a else "B" if tid == b else "P"
            nr = int(rest.split()[1])
            nr = {nr_recv: NR_RECVMSG, nr_write: NR_WRITEV, NR_EPOLL_WAIT_PLAIN: NR_EPOLL_WAIT}.get(nr, nr) \
                if who != "P" else nr
            cycles[-1].append((t, who, "enter" if name.endswith("enter") else "exit", nr))
        elif name == "sched:sched_wakeup":
            m2 = re.search(r" pid=(\d+) .*target_cpu=(\d+)", rest)
            if m2 and int(m2.group(1)) in (a, b, ping):
                # the CPU the task is woken onto, against the waker's: a different one may be halted
                who = "A" if int(m2.group(1)) == a else "B" if int(m2.group(1)) == b else "P"
                cycles[-1].append((t, who, "wakeup", -1, int(m2.group(2)) != int(_cpu)))
        elif name == "sched:sched_switch":
            m2 = re.search(r"next_pid=(\d+)", rest)
            if m2 and int(m2.group(1)) in (a, b, ping):
                who = "A" if int(m2.group(1)) == a else "B" if int(m2.group(1)) == b else "P"
                cycles[-1].append((t, who, "switch", -1))
    out: dict[str, list[float]] = {k: [] for k in STAGES}
    for seq in cycles:
        def find(who: str, kind: str, nr: int, lo: int, hi: int | None = None) -> int:
            for i in range(lo, len(seq) if hi is None else hi):
                if seq[i][1] == who and seq[i][2] == kind and seq[i][3] == nr:
                    return i
            raise LookupError

        def woken(who: str, lo: int, hi: int) -> float | None:
            """Wake-up to running, if the daemon slept between lo and hi (it may still have been awake)."""
            try:
                w = find(who, "wakeup", -1, lo, hi)
                return seq[find(who, "switch", -1, w, hi)][0] - seq[w][0]
            except LookupError:
                return None

        try:
            a_ep = find("A", "exit", NR_EPOLL_WAIT, 0)
            a_rd = find("A", "enter", NR_READ, a_ep)
            a_rdx = find("A", "exit", NR_READ, a_rd)
            a_tx = find("A", "enter", NR_SENDTO, a_rdx)
            a_txx = find("A", "exit", NR_SENDTO, a_tx)
            b_ep = find("B", "exit", NR_EPOLL_WAIT, a_tx)
            b_rx = find("B", "enter", NR_RECVMSG, b_ep)
            b_rxx = find("B", "exit", NR_RECVMSG, b_rx)
            b_wr = find("B", "enter", NR_WRITEV, b_rxx)
            b_wrx = find("B", "exit", NR_WRITEV, b_wr)
            b_rd = find("B", "enter", NR_READ, b_wrx)
            b_rdx = find("B", "exit", NR_READ, b_rd)
            b_tx = find("B", "enter", NR_SENDTO, b_rdx)
            b_txx = find("B", "exit", NR_SENDTO, b_tx)
            c_ep = find("A", "exit", NR_EPOLL_WAIT, b_tx)
            c_rx = find("A", "enter", NR_RECVMSG, c_ep)
            c_rxx = find("A", "exit", NR_RECVMSG, c_rx)
            c_wr = find("A", "enter", NR_WRITEV, c_rxx)
            c_wrx = find("A", "exit", NR_WRITEV, c_wr)
            p_rx = find("P", "exit", NR_RECVMSG, c_wr)
        except LookupError:
            continue
        T = [e[0] for e in seq]

        def wake(who: str, lo: int, hi: int | None = None) -> tuple[float | None, float | None, bool | None]:
            """(from seq[lo] to the wake-up, from the wake-up to running, woken onto another CPU)."""
            try:
                w = find(who, "wakeup", -1, lo, hi)
            except LookupError:
                return None, None, None
            try:
                run = seq[find(who, "switch", -1, w, hi)][0] - seq[w][0]
            except LookupError:
                run = None
            return seq[w][0] - seq[lo][0], run, seq[w][4]

        b_w, _r, b_other = wake("B", a_tx, b_ep)
        a_w, _r, a_other = wake("A", b_tx, c_ep)
        p_w, p_run, _o = wake("P", c_wr)
        others = [x for x in (b_other, a_other) if x is not None]
        syscalls = sum(T[x] - T[y] for x, y in ((a_rdx, a_rd), (a_txx, a_tx), (b_rxx, b_rx), (b_wrx, b_wr),
                                                (b_rdx, b_rd), (b_txx, b_tx), (c_rxx, c_rx), (c_wrx, c_wr)))
        for k, v in zip(STAGES, (T[a_rd] - T[a_ep], T[a_tx] - T[a_rdx], woken("B", a_tx, b_ep), T[b_rx] - T[b_ep],
                                 T[b_wr] - T[b_rxx], T[b_rd] - T[b_wrx], T[b_tx] - T[b_rdx], woken("A", b_tx, c_ep),
                                 T[c_rx] - T[c_ep], T[c_wr] - T[c_rxx], syscalls, T[p_rx] - T[0],
                                 b_w, a_w, p_w, p_run,
                                 100.0 * sum(others) / len(others) if others else None)):
            if v is not None:
                out[k].append(v)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pings", type=int, default=250)
    p.add_argument("--weft", type=Path, default=WEFT_DEFAULT)
    floors = {s.name: s for s in floor_systems()}
    p.add_argument("--system", default="weftnet", choices=["weftnet", *floors],
                   help="the tunnel traced (default weftnet; the floor tunnels of floors.py for comparison)")
    p.add_argument("--dump", type=Path, metavar="FILE",
                   help="also write the decoded trace (perf script) there, the first line naming the pids")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (network namespaces, TUN devices, perf)")
    if not shutil.which("perf"):
        p.error("needs perf (Debian: linux-perf)")
    require_tools(p, ("ip", "ping"))
    work = Path(tempfile.mkdtemp(prefix="pingtrace-"))
    try:
        system = Weftnet(args.weft) if args.system == "weftnet" else floors[args.system]
        with Topology(work, prefix=f"pt{os.getpid()}") as topo:
            overlay = system.setup(topo, work)
            if args.system == "weftnet":
                b_pid, a_pid = topo.pids()[:2]  # B is started first
            else:
                a_pid, b_pid = topo.pids()[:2]  # A is started first
            time.sleep(2.0)
            ping = subprocess.Popen(["ip", "netns", "exec", topo.ns("a"), "ping", "-q", "-i", "0.01", "-c",
                                     str(args.pings), overlay.server], stdout=subprocess.DEVNULL)
            time.sleep(0.2)
            pids = f"common_pid == {ping.pid} || common_pid == {a_pid} || common_pid == {b_pid}"
            data = work / "perf.data"
            subprocess.run(["perf", "record", "-q", "-a", "-o", str(data), "-e", "sched:sched_wakeup",
                            "-e", "sched:sched_switch", "-e", "raw_syscalls:sys_enter", "--filter", pids,
                            "-e", "raw_syscalls:sys_exit", "--filter", pids, "--", "sleep",
                            str(max(1.0, args.pings * 0.01 - 0.5))], check=True)
            ping.wait(timeout=60)
            text = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,tid,cpu,time,event,trace"],
                                  capture_output=True, text=True, check=True).stdout
    except BenchError as exc:
        print(f"[pingtrace] error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.dump is not None:
        args.dump.write_text(f"ping={ping.pid} a={a_pid} b={b_pid}\n" + text)
    nrs = (NR_RECVMSG, NR_WRITEV) if args.system == "weftnet" else (NR_RECVFROM, NR_WRITE)
    res = parse(text.splitlines(), ping.pid, a_pid, b_pid, *nrs)
    n = len(res[STAGES[0]])
    print(f"{n} pings with every call traced (load {os.getloadavg()[0]:.2f}); µs")
    for k, v in res.items():
        if v and k == STAGES[-1]:
            print(f"  {k:62s} {statistics.mean(v):5.1f} %")
        elif v:
            v = sorted(v)
            print(f"  {k:62s} p50 {statistics.median(v):7.1f}  p90 {v[int(len(v) * 0.9)]:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
