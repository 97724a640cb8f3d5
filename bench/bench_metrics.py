"""How long a /metrics scrape takes at 1,000 peers, idle and under load.

A real `weft up` (metrics on 127.0.0.1) gets sessions with N peers that run in a
second process (one NodeCore and UDP socket each, on loopback). Then, side by
side in one run, the bench times:

* GET /metrics with the default ``peer_series = 100``, idle and under load;
* GET /metrics with ``peer_series = 1000`` (a series for every peer), under load;
* the floor: the same aiohttp server answering with only prometheus_client's
  process collector (what any Python exporter pays);
* ``weft status --json``'s control call (the whole status dict), for scale;
* in this process, the node's families for N synthetic sessions rendered by
  prometheus_client's ``generate_latest`` (the old path) and by ``render_text``
  (what /metrics uses), side by side.

Load: every peer pings the node once a second (1,000 pings/s at 1,000 peers)
while a client puts and reads records through the node's control socket as
fast as they complete. Scrapes are sequential, 20 per second, from this
process with http.client. Results go to bench/results/metrics.{md,json}.

    python bench/bench_metrics.py [--peers 1000] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEFT = [sys.executable, "-m", "weftnet.cli.main"]


def free_port(kind=socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# -- the peers' process ------------------------------------------------------------------------

def run_peers(n: int, port: int, pubkey: str, ready: Path, stop: Path) -> None:
    from weftnet.core.contact import Contact
    from weftnet.core.identity import NodeId
    from weftnet.runtime.driver import start_node

    async def main():
        drivers = []
        for i in range(n):
            drivers.append(await start_node(host="127.0.0.1"))
        node = Contact(bytes.fromhex(pubkey), ("127.0.0.1", port))
        target = node.node_id
        # The node's key is known (as from a pinned peer): straight to the handshake, no Hello
        # (Hellos are rate-limited per source address, and all of these come from 127.0.0.1).
        for i in range(0, n, 25):
            for d in drivers[i:i + 25]:
                d.core.bootstrap([node], time.time())
                d.transmit()
            await asyncio.sleep(0.2)
        for _ in range(120):
            if all(d.core.transport.has_session(target) for d in drivers):
                break
            await asyncio.sleep(0.5)
        ready.write_text("up")
        rng = random.Random(1)
        while not stop.exists():
            if os.environ.get("BENCH_LOAD") or Path(str(stop) + ".load").exists():
                for d in drivers:  # one ping each per second, spread over the second
                    d.core.ping(target, time.time())
                    d.transmit()
                    if rng.random() < 0.05:
                        await asyncio.sleep(0)
            await asyncio.sleep(1.0)
        for d in drivers:
            d.close()

    asyncio.run(main())


# -- timing ------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_scrapes(port: int, count: int, path: str = "/metrics", pid: int | None = None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times, size, series, collect = [], 0, 0, []
    cpu0, t_start = (cpu_seconds(pid), time.time()) if pid else (0.0, 0.0)
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t0) * 1000)
        size = len(body)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        for line in body.splitlines():
            if line.startswith(b"weftnet_metrics_collect_seconds "):
                collect.append(float(line.split()[1]) * 1000)
        time.sleep(0.05)
    conn.close()
    times.sort()
    out = {"n": count, "p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * len(times)) - 1], 2),
           "p99_ms": round(times[int(0.99 * len(times)) - 1], 2), "max_ms": round(times[-1], 2),
           "bytes": size, "series": series}
    if collect:
        collect.sort()
        out["collect_p50_ms"] = round(statistics.median(collect), 2)
        out["collect_p95_ms"] = round(collect[int(0.95 * len(collect)) - 1], 2)
    if pid:
        out["node_cpu_percent"] = round(100 * (cpu_seconds(pid) - cpu0) / (time.time() - t_start), 1)
    return out


def node_cpu(pid: int, seconds: float = 5.0) -> float:
    c0, t0 = cpu_seconds(pid), time.time()
    time.sleep(seconds)
    return round(100 * (cpu_seconds(pid) - c0) / (time.time() - t0), 1)


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def time_status(sock: Path, count: int) -> dict:
    from weftnet.runtime.control import call

    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        call(sock, "status")
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    times.sort()
    return {"n": count, "p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * len(times)) - 1], 2),
            "max_ms": round(times[-1], 2)}


def render_comparison(n: int, peer_series: int, rounds: int = 100) -> dict:
    """In this process, one NodeCollector over n synthetic sessions, rendered both ways:
    prometheus_client's generate_latest (what /metrics used before) and render_text (now)."""
    from weftnet.core.histogram import LatencyHistogram
    from weftnet.core.identity import Identity, NodeId
    from weftnet.core.node import NodeConfig, NodeCore
    from weftnet.runtime.metrics import Exposition, NodeCollector, exposition, make_registry

    rng = random.Random(7)
    core = NodeCore(Identity.from_seed(bytes(32)), rng, time.time(), NodeConfig())
    core.dht.latency = LatencyHistogram()
    for i in range(300):
        core.dht.latency.observe(("find_node", "get", "store")[i % 3], "ok", rng.random())
    fake = [(NodeId(rng.randbytes(32)), rng.randrange(10**9), rng.randrange(10**9), rng.randrange(10**6),
             rng.randrange(10**6), rng.random() / 10) for _ in range(n)]
    core.transport.session_counters = lambda: fake
    col = NodeCollector(core, None, peer_series=peer_series)
    out = {}
    for label, fn in (("generate_latest", lambda reg=make_registry(col): exposition(reg)),
                      ("render_text", Exposition(col))):
        for _ in range(5):
            fn()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            body = fn()
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[label] = {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * rounds) - 1], 2),
                      "bytes": len(body)}
    return out


def floor_server(port: int) -> threading.Thread:
    """The same aiohttp + prometheus_client stack with only the process collector."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

    reg = CollectorRegistry()
    ProcessCollector(registry=reg)

    async def metrics(request):
        return web.Response(body=generate_latest(reg), content_type="text/plain")

    def serve():
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=False)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


class DhtLoad(threading.Thread):
    def __init__(self, sock: Path):
        super().__init__(daemon=True)
        self.sock = sock
        self.stop = False
        self.ops = 0

    def run(self):
        from weftnet.runtime.control import call

        i = 0
        while not self.stop:
            key = call(self.sock, "put", value=f"bench record {i}")["key"]
            call(self.sock, "get", key=key, quorum=2)
            self.ops += 2
            i += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--peer-proc", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_proc:
        run_peers(int(a.peer_proc[0]), int(a.peer_proc[1]), a.peer_proc[2], Path(a.peer_proc[3]), Path(a.peer_proc[4]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    state = tmp / "node"
    subprocess.run([*WEFT, "--state-dir", str(state), "init"], check=True, capture_output=True)
    mport, port = free_port(), free_port(socket.SOCK_DGRAM)
    with open(state / "config.toml", "a") as f:
        f.write(f'[metrics]\nlisten = "127.0.0.1:{mport}"\npeer_series = 100\n')
    # 1,000 peers on one address: the per-address handshake admission (docs/security.md) would let
    # them in a few at a time; a lab exempts loopback explicitly
    cfg = (state / "config.toml").read_text()
    assert "\nexempt_prefixes = []" in cfg
    (state / "config.toml").write_text(cfg.replace("\nexempt_prefixes = []", '\nexempt_prefixes = ["127.0.0.0/8"]', 1))
    node = subprocess.Popen([*WEFT, "--state-dir", str(state), "up", "--listen", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], stderr=open(tmp / "node.log", "w"))
    sock = state / "control.sock"
    while not sock.exists():
        if node.poll() is not None:
            raise SystemExit(f"the node exited: {(tmp / 'node.log').read_text()[-2000:]}")
        time.sleep(0.1)
    fport = free_port()
    floor_server(fport)
    ready, stop = tmp / "ready", tmp / "stop"
    t0 = time.time()
    from weftnet.runtime.control import call

    pubkey = call(sock, "status")["public_key"]
    peers = subprocess.Popen([sys.executable, __file__, "--peer-proc", str(a.peers), str(port), pubkey, str(ready),
                              str(stop)], stderr=open(tmp / "peers.log", "w"))

    try:
        while not ready.exists():
            if peers.poll() is not None:
                raise SystemExit(f"peers died: {(tmp / 'peers.log').read_text()[-2000:]}")
            time.sleep(0.5)
        sessions = len(call(sock, "status")["sessions"])
        print(f"{sessions} sessions after {time.time() - t0:.0f} s", file=sys.stderr)
        time.sleep(2)
        res: dict = {"peers": a.peers, "sessions": sessions}
        res["node_cpu_percent_idle_no_scrapes"] = node_cpu(node.pid)
        res["load_average_at_start"] = load_average()
        res["render_in_process_peer_series_100"] = render_comparison(a.peers, 100)
        res["render_in_process_peer_series_1000"] = render_comparison(a.peers, 1000)
        res["floor_process_collector_only"] = time_scrapes(fport, a.scrapes)
        res["metrics_idle_peer_series_100"] = time_scrapes(mport, a.scrapes, pid=node.pid)
        res["control_status_idle"] = time_status(sock, 50)
        (Path(str(stop) + ".load")).write_text("on")  # peers start pinging: 1 ping/s each
        load = DhtLoad(sock)
        load.start()
        time.sleep(3)
        ops0 = load.ops
        t1 = time.time()
        res["node_cpu_percent_load_no_scrapes"] = node_cpu(node.pid)
        res["metrics_load_peer_series_100"] = time_scrapes(mport, a.scrapes, pid=node.pid)
        cfg = (state / "config.toml").read_text().replace("peer_series = 100", "peer_series = 1000")
        (state / "config.toml").write_text(cfg)
        call(sock, "reload")
        res["metrics_load_peer_series_1000"] = time_scrapes(mport, a.scrapes, pid=node.pid)
        res["control_status_load"] = time_status(sock, 50)
        res["load"] = {"dht_ops_per_s": round((load.ops - ops0) / (time.time() - t1), 1),
                       "pings_per_s": a.peers}
        load.stop = True
        res["load_average_at_end"] = load_average()
        st = call(sock, "status")
        res["sessions_at_end"] = len(st["sessions"])
    finally:
        stop.write_text("stop")
        peers.wait(60)
        node.terminate()
        node.wait(30)
    res["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "python": platform.python_version(), "kernel": platform.release()}
    out = HERE / "results"
    (out / "metrics.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
