"""Issue 9, item 1: a cookie-echoing HandshakeInit flood from one address against a real daemon.

    .venv/bin/python bench/hostile/flood.py --tree after            # this checkout
    .venv/bin/python bench/hostile/flood.py --tree before --src DIR  # another tree's src/ (e.g. main)

Three `weft up` daemons on loopback, each on its own address and none exempt
from per-address limits: the victim V (127.0.1.1), an honest node H joined
to it (127.0.2.1), and, two seconds into the flood, a newcomer N (127.0.5.1,
an in-process node from this checkout) that connects to V. The attacker
(attacker.py, 127.0.3.1) sends ``--rate`` Inits a second for ``--seconds``,
echoing every cookie. Measured (wall clock, on this shared machine):

* ping RTT from H to V over their existing session (through H's control
  socket, so it includes two Unix-socket round trips): before and during;
* the newcomer's time from ``connect`` to an authenticated session;
* V's CPU (user+system from /proc) during the flood;
* V's own counters: Inits processed with a DH, dropped by the rate limit, cookies.

Prints one JSON object; run.py collects before and after into bench/results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def weft(env, state, *args, check=True):
    p = subprocess.run([sys.executable, "-m", "weftnet.cli.main", "--state-dir", str(state), *args],
                       capture_output=True, text=True, env=env, timeout=120)
    if check and p.returncode:
        raise SystemExit(f"weft {' '.join(args)}: {p.stderr}")
    return p.stdout


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(host: str) -> int:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", choices=("before", "after"), default="after")
    ap.add_argument("--src", help="the src/ directory of the tree under test (default: this checkout)")
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--seconds", type=float, default=6.0)
    a = ap.parse_args()
    src = Path(a.src) if a.src else ROOT / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    tmp = Path(tempfile.mkdtemp(prefix="weft-flood-"))
    procs = []
    try:
        def daemon(name, host, peers=()):
            state = tmp / name
            weft(env, state, "init")
            port = free_port(host)
            args = ["up", "--listen", host, "--port", str(port), "--log-format", "json"]
            for p in peers:
                args += ["--peer", p]
            log = open(tmp / f"{name}.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "weftnet.cli.main", "--state-dir", str(state), *args],
                                    stdout=log, stderr=log, env=env)
            procs.append(proc)
            for _ in range(300):
                if (state / "control.sock").exists():
                    break
                time.sleep(0.1)
            return state, port, proc

        v_state, v_port, v_proc = daemon("victim", "127.0.1.1")
        h_state, _, _ = daemon("honest", "127.0.2.1", [f"127.0.1.1:{v_port}"])
        vid = json.loads(weft(env, v_state, "id", "--json"))
        sys.path.insert(0, str(src))
        from weftnet.runtime.control import call

        sock = h_state / "control.sock"

        def joined():
            return any('"joined"' in line for line in (tmp / "honest.log").read_text().splitlines())

        for _ in range(300):
            if joined():
                break
            time.sleep(0.1)

        def pings(n, gap):
            out = []
            for _ in range(n):
                r = call(sock, "ping", target=vid["node_id"])
                out.append(r["rtt"] * 1000 if r.get("ok") else None)
                time.sleep(gap)
            return out

        quiet = pings(200, 0.02)
        attacker = subprocess.Popen([sys.executable, str(HERE / "attacker.py"), "127.0.1.1", str(v_port),
                                     vid["public_key"], "--rate", str(a.rate), "--seconds", str(a.seconds)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        ready = json.loads(attacker.stdout.readline())
        st0 = json.loads(weft(env, v_state, "status", "--json"))["transport"]
        load0 = os.getloadavg()[0]
        cpu0, t0 = cpu_seconds(v_proc.pid), time.monotonic()
        attacker.stdin.write("go\n")
        attacker.stdin.flush()
        newcomer = None
        flood: list = []
        stop = threading.Event()

        def pinger():  # pings go on, in their own thread, for as long as the flood lasts
            while not stop.is_set():
                flood.extend(pings(1, 0.02))

        th = threading.Thread(target=pinger)
        th.start()
        while attacker.poll() is None:
            if newcomer is None and time.monotonic() - t0 > 2.0:
                newcomer = subprocess.Popen([sys.executable, str(HERE / "newcomer.py"), "127.0.1.1", str(v_port)],
                                            stdout=subprocess.PIPE, text=True,
                                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            time.sleep(0.01)
        cpu1, t1 = cpu_seconds(v_proc.pid), time.monotonic()
        stop.set()
        th.join()
        done = json.loads(attacker.stdout.readline())
        st1 = json.loads(weft(env, v_state, "status", "--json"))["transport"]
        nc = json.loads(newcomer.communicate(timeout=60)[0]) if newcomer else {"connected": False}
        ok = [x for x in flood if x is not None]

        def pct(xs, q):
            xs = sorted(xs)
            return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2) if xs else None

        delta = {k: st1[k] - st0.get(k, 0) for k in st1 if st1[k] != st0.get(k, 0)}
        processed = delta.get("handshakes_completed", 0) + delta.get("replays_dropped", 0)
        print(json.dumps({
            "tree": a.tree, "rate": a.rate, "seconds": a.seconds, "offered": done["sent"],
            "fresh_inits": ready["fresh_inits"], "flood_wall_s": round(t1 - t0, 2),
            "victim_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "inits_with_dh": processed, "rate_limited": delta.get("handshakes_rate_limited"),
            "cookies_sent": delta.get("cookies_sent", 0),
            "ping_quiet_ms": {"p50": pct([x for x in quiet if x], 0.5), "p95": pct([x for x in quiet if x], 0.95)},
            "ping_flood_ms": {"p50": pct(ok, 0.5), "p95": pct(ok, 0.95), "sent": len(flood), "answered": len(ok)},
            "newcomer": nc, "counters": delta, "load_average": round(load0, 2),
            "ping_flood_all_ms": [None if x is None else round(x, 2) for x in flood],
        }))
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


if __name__ == "__main__":
    main()
