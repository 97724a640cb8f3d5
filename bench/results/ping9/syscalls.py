#!/usr/bin/env python3
"""System calls per ping of each daemon, from a pingtrace.py ``--dump`` file (raw_syscalls tracepoints):
how many of each call, and how many found nothing (EAGAIN). Usage: python syscalls.py DUMP"""
import collections
import re
import sys

NAMES = {0: "read", 20: "writev", 44: "sendto", 47: "recvmsg", 281: "epoll_wait", 1: "write", 45: "recvfrom",
         24: "sched_yield", 202: "futex", 230: "clock_nanosleep", 7: "poll"}
LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+)\s+(.*)$")

lines = open(sys.argv[1]).read().splitlines()
hdr = dict(kv.split("=") for kv in lines[0].split())
a, b, p = hdr["a"], hdr["b"], hdr["ping"]
calls = {a: collections.Counter(), b: collections.Counter()}
empty = {a: collections.Counter(), b: collections.Counter()}
pings = 0
for line in lines[1:]:
    m = LINE.match(line)
    if not m:
        continue
    pid, ev, rest = m.group(2), m.group(6), m.group(7)
    if ev.startswith("raw_syscalls:sys_enter"):
        nr = int(rest.split()[1])
        if pid == p and nr == 44:
            pings += 1
        if pid in calls:
            calls[pid][NAMES.get(nr, str(nr))] += 1
    elif ev.startswith("raw_syscalls:sys_exit") and pid in calls and rest.rstrip().endswith("= -11"):
        empty[pid][NAMES.get(int(rest.split()[1]), "?")] += 1
print(f"{pings} pings sent in the trace")
for who, pid in (("A (pinger's side)", a), ("B (responder's side)", b)):
    total = sum(calls[pid].values())
    per = ", ".join(f"{k} {v / pings:.2f}" for k, v in calls[pid].most_common())
    nothing = ", ".join(f"{k} {v / pings:.2f}" for k, v in empty[pid].most_common())
    print(f"{who}: {total / pings:.2f} calls a ping ({per}); of them finding nothing (EAGAIN): {nothing}")
