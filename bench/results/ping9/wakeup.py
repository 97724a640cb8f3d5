#!/usr/bin/env python3
"""How long a UDP datagram waits for its handler in one Python process, by how that process waits.

A client sends a datagram every 10 ms (as ping does) to a server process and times the echo;
the server waits for it in one of several ways and answers from its handler:

* ``uvloop``: ``loop.add_reader`` on uvloop (what ``weft up`` does),
* ``uvloop-one``: the same, but the handler reads one datagram and returns (no read that finds the
  socket empty: the level-triggered poll calls it again if more is queued),
* ``uvloop-poll``: the same, then a zero-timeout ``poll`` of the socket decides whether to read on
  (no exception when it is empty),
* ``uvloop-ioctl``: the same with ``FIONREAD`` (the next datagram's size, 0 when empty),
* ``asyncio``: the same on asyncio's selector loop,
* ``thread``: a thread blocked in ``recvfrom`` answers itself (the GIL taken from an idle loop),
* ``thread-loop``: that thread hands the datagram to the event loop (``call_soon_threadsafe``),
  which answers (a blocking reader that keeps the core on the loop's thread),
* ``blocking``: the main thread blocked in ``recvfrom`` (no loop at all: the floor).

Rounds of PINGS each, the modes interleaved; per round and mode the median and p99 round trip
(µs) and the server's CPU per echo (µs). Usage: ``python wakeup.py [--rounds 6] [--pings 200]``."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

MODES = ("uvloop", "uvloop-one", "uvloop-poll", "uvloop-ioctl", "asyncio", "thread", "thread-loop", "blocking")


def serve(mode: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    if mode == "blocking":
        print("ready", flush=True)
        while True:
            data, addr = s.recvfrom(2048)
            s.sendto(data, addr)
    import asyncio
    if mode in ("uvloop", "uvloop-one", "uvloop-poll", "uvloop-ioctl"):
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    if mode == "uvloop-one":
        s.setblocking(False)

        def readable_one() -> None:
            try:
                data, addr = s.recvfrom(2048)
            except BlockingIOError:
                return
            s.sendto(data, addr)
        loop.add_reader(s.fileno(), readable_one)
    elif mode == "uvloop-poll":
        import select
        s.setblocking(False)
        poller = select.poll()
        poller.register(s.fileno(), select.POLLIN)
        poll = poller.poll

        def readable_poll() -> None:
            while True:
                try:
                    data, addr = s.recvfrom(2048)
                except BlockingIOError:
                    return
                s.sendto(data, addr)
                if not poll(0):
                    return
        loop.add_reader(s.fileno(), readable_poll)
    elif mode == "uvloop-ioctl":
        import array
        import fcntl
        import termios
        s.setblocking(False)
        fd = s.fileno()
        buf = array.array("i", [0])
        ioctl = fcntl.ioctl

        def readable_ioctl() -> None:
            while True:
                try:
                    data, addr = s.recvfrom(2048)
                except BlockingIOError:
                    return
                s.sendto(data, addr)
                ioctl(fd, termios.FIONREAD, buf, True)
                if not buf[0]:
                    return
        loop.add_reader(fd, readable_ioctl)
    elif mode in ("uvloop", "asyncio"):
        s.setblocking(False)

        def readable() -> None:
            while True:
                try:
                    data, addr = s.recvfrom(2048)
                except BlockingIOError:
                    return
                s.sendto(data, addr)
        loop.add_reader(s.fileno(), readable)
    elif mode == "thread":
        def run() -> None:
            while True:
                data, addr = s.recvfrom(2048)
                s.sendto(data, addr)
        threading.Thread(target=run, daemon=True).start()
    elif mode == "thread-loop":
        def run() -> None:
            while True:
                data, addr = s.recvfrom(2048)
                loop.call_soon_threadsafe(s.sendto, data, addr)
        threading.Thread(target=run, daemon=True).start()
    loop.call_later(3600, loop.stop)  # (a timer armed, as the daemon's always is)
    print("ready", flush=True)
    loop.run_forever()


def cpu_ns(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
    return total


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--pings", type=int, default=200)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        serve(a.serve, a.port)
        return 0
    modes = a.modes.split(",")
    servers = {}
    for i, m in enumerate(modes):
        port = 40000 + os.getpid() % 10000 + i * 3
        proc = subprocess.Popen([sys.executable, __file__, "--serve", m, "--port", str(port)], stdout=subprocess.PIPE,
                                text=True)
        proc.stdout.readline()
        servers[m] = (proc, port)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(1.0)
    res = {m: [] for m in modes}
    try:
        for r in range(a.rounds):
            for m in modes:
                proc, port = servers[m]
                rtts = []
                cpu0 = cpu_ns(proc.pid)
                for k in range(a.pings):
                    t0 = time.perf_counter_ns()
                    c.sendto(b"x" * 84, ("127.0.0.1", port))
                    c.recvfrom(2048)
                    rtts.append((time.perf_counter_ns() - t0) / 1000)
                    time.sleep(0.01)
                cpu = (cpu_ns(proc.pid) - cpu0) / a.pings / 1000
                rtts.sort()
                row = (statistics.median(rtts), rtts[int(len(rtts) * 0.99) - 1], cpu, os.getloadavg()[0])
                res[m].append(row)
                print(f"round {r + 1} {m:12s} p50 {row[0]:7.1f} p99 {row[1]:8.1f} µs  server CPU {row[2]:6.1f} µs/echo"
                      f"  (load {row[3]:.2f})", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.kill()
    print("median of rounds:")
    for m in modes:
        print(f"  {m:12s} p50 {statistics.median(x[0] for x in res[m]):7.1f}  p99 "
              f"{statistics.median(x[1] for x in res[m]):8.1f} µs  CPU {statistics.median(x[2] for x in res[m]):6.1f} µs/echo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
