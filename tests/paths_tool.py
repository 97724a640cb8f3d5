"""UDP tools the paths tests and bench run inside a namespace (``ip netns exec NS python paths_tool.py ...``).

    send DST PORT SECONDS RATE [SIZE]   UDP: RATE packets a second of SIZE bytes, each with a sequence number
                                        and its send time; prints "sent N"
    recv PORT SECONDS                   UDP on [::]: prints "listening", then after SECONDS (or SIGTERM) a JSON line:
                                        {"received": N, "arrivals": [[seq, arrival time], ...]}
    flood DST PORT SECONDS BPS SRC      UDP from SRC at BPS bits a second, outside the overlay (fills a link)

Standalone on purpose (stdlib only).
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time

_HEAD = struct.Struct("!Qd")


def send(dst: str, port: int, seconds: float, rate: float, size: int = 64) -> int:
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    pad = bytes(max(0, size - _HEAD.size))
    t0 = time.monotonic()
    n = 0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        due = t0 + n / rate
        if now < due:
            time.sleep(min(due - now, 0.01))
            continue
        try:
            s.sendto(_HEAD.pack(n, time.time()) + pad, (dst, port))
        except OSError:
            pass  # the overlay may refuse a packet while it looks the address up
        n += 1
    print(f"sent {n}", flush=True)
    return 0


def recv(port: int, seconds: float) -> int:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # report now, not at the end
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.settimeout(0.2)
    print("listening", flush=True)
    end = time.monotonic() + seconds
    seen: dict[int, float] = {}
    while time.monotonic() < end and not stop:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if len(data) >= _HEAD.size:
            seq, _sent = _HEAD.unpack_from(data)
            seen.setdefault(seq, time.time())
    print(json.dumps({"received": len(seen), "arrivals": sorted(seen.items())}), flush=True)
    return 0


def flood(dst: str, port: int, seconds: float, bps: float, src: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.setblocking(False)
    payload = bytes(1200)
    per = 1200 * 8 / bps
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        due = t0 + n * per
        now = time.monotonic()
        if now < due:
            time.sleep(min(due - now, 0.005))
            continue
        try:
            s.sendto(payload, (dst, port))
        except OSError:
            pass  # a full queue: that is the point
        n += 1
    return 0


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "send":
        sys.exit(send(args[0], int(args[1]), float(args[2]), float(args[3]), *(int(a) for a in args[4:5])))
    if cmd == "recv":
        sys.exit(recv(int(args[0]), float(args[1])))
    if cmd == "flood":
        sys.exit(flood(args[0], int(args[1]), float(args[2]), float(args[3]), args[4]))
    sys.exit(f"unknown command {cmd!r}")
