"""What a client that can reach /metrics costs the daemon: ping RTT through the daemon while one
host scrapes /metrics as fast as it can on many connections.

Two `weft up` daemons on loopback (A serves /metrics, B joins A); B pings A 200 times at 20 ms
quiet, then again while a flood of GET /metrics runs against A from 127.0.0.1 (``--conns``
keep-alive connections, each sending its next request when the last answer is in). Prints one
JSON line: RTTs (ms) quiet and during the flood, the scrapes served, and A's CPU seconds.

    PYTHONPATH=<tree>/src:tests python bench/results/audit3/scrapeflood.py [--conns 16] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from opstools import Daemons, free_port, wait_for, weft  # noqa: E402


def pings(d: Daemons, target: str, n: int) -> list[float]:
    out = weft(d.state["b"], "ping", "-c", str(n), "-i", "0.02", target, timeout=120).stdout
    return [float(x) for x in re.findall(r"rtt=([0-9.]+) ms", out)]


def flood(port: int, conns: int, stop: threading.Event, served: list[int]) -> None:
    def one() -> None:
        n = 0
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.01)
                continue
            f = s.makefile("rb")
            try:
                while not stop.is_set():
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    line = f.readline()
                    if not line:
                        break
                    length = 0
                    while (h := f.readline()) not in (b"\r\n", b""):
                        if h.lower().startswith(b"content-length:"):
                            length = int(h.split(b":")[1])
                    f.read(length)
                    n += 1
            except OSError:
                pass
            finally:
                s.close()
        served.append(n)

    ts = [threading.Thread(target=one, daemon=True) for _ in range(conns)]
    for t in ts:
        t.start()
    stop.wait()
    for t in ts:
        t.join(10)


def cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / 100


def q(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--pings", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemons(Path(tmp))
        mport = free_port(socket.SOCK_STREAM)
        try:
            d.init("a", f'[overlay]\nenable = false\n[metrics]\nlisten = "127.0.0.1:{mport}"\n')
            d.init("b", "[overlay]\nenable = false\n")
            d.up("a")
            d.up("b", peer="a")
            a_id = d.status("a")["node_id"]
            wait_for(lambda: any(p["node_id"] == a_id for p in d.status("b")["sessions"]), 30, "B's session to A")
            pings(d, a_id, 20)  # warm
            quiet = pings(d, a_id, a.pings)
            stop, served = threading.Event(), []
            t = threading.Thread(target=flood, args=(mport, a.conns, stop, served))
            c0, t0 = cpu(d.procs["a"].pid), time.monotonic()
            t.start()
            time.sleep(1.0)
            loaded = pings(d, a_id, a.pings)
            stop.set()
            t.join(20)
            el = time.monotonic() - t0
            c1 = cpu(d.procs["a"].pid)
        finally:
            d.close()
    print(json.dumps({"conns": a.conns, "quiet_ms": {"p50": q(quiet, .5), "p95": q(quiet, .95), "n": len(quiet)},
                      "flood_ms": {"p50": q(loaded, .5), "p95": q(loaded, .95), "n": len(loaded)},
                      "scrapes_per_s": round(sum(served) / el), "a_cpu_share": round((c1 - c0) / el, 2)}))


if __name__ == "__main__":
    main()
