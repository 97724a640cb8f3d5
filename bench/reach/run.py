#!/usr/bin/env python3
"""NAT traversal: time to a direct path across two NATs, private-network throughput direct and
through a relay, and the simulator's connectivity table — weftnet and nebula side by side.

    sudo .venv/bin/python bench/reach/run.py                       # everything
    sudo .venv/bin/python bench/reach/run.py --reps 5 --seconds 5 --sim-nodes 60 --sim-pairs 80

The lab is tests/natlab.py's: a public segment (198.18.0.0/15) with a relay/bootstrap P1 and a
public P2, and clients behind nftables routers — A, B, T behind endpoint-independent NATs
("cone": masquerade), C behind an endpoint-dependent one ("symmetric": masquerade random), E
behind one that drops all UDP. Each system runs alone in the same namespaces, then is stopped:

* **weftnet**: `weft up` everywhere; P1 is a relay (`[relay] enabled`, TCP 443); A..E are
  members of a private network (10.77.0.0/24); E joins P1 over TCP.
* **nebula** 1.6: P1 is lighthouse and relay (`am_lighthouse`, `relay.am_relay`); the clients use
  it as lighthouse and relay (`use_relays`), with `punchy` punching and responding; overlay
  10.88.0.0/24. nebula has no TCP transport, so E has no nebula row.

Measurements:

1. **time to direct** (``--reps`` times): a fresh node T starts behind its cone NAT and pings B
   (weftnet: `weft ping` through the control API; nebula: ICMP to B's nebula address, every 50 ms).
   From T's router's conntrack events (``conntrack -E -o timestamp``): the first packet T sends
   towards B's public address, and the first reply from it (the hole is open both ways). Also the
   time from T's start to its first ping reply, and for weftnet the time its log says the path to B
   turned direct. Between repetitions T's router forgets everything and B's router every mapping
   that involves T (``conntrack -F`` / ``-D``), and T uses another UDP port (B may still be
   probing the T of the repetition before), so each repetition starts cold.
2. **throughput**: iperf3 TCP (one stream, receiver's rate) over each private network between
   A and B (direct, across two NATs), A and C (through the relay: cone to symmetric), and for
   weftnet E and B (E over TCP to the relay).
3. **simulator**: ``weft sim nat-mix`` (sim/nat.py): the share of pairs direct / relayed / not
   connected per NAT pair, for a mix of NATs given in the scenario.

Writes reach.json and reach.md (and sim/nat/) into --out (default bench/results/).
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from natlab import NatLab, sh, wait_for  # noqa: E402

NEB_PORT = 4242
#: T listens on another port each repetition (its NAT keeps the port): B, which still probes the
#: T of the repetition before for a while, must not have the new one's hole open already.
T_PORT = 4600
NEB_IP = {"P1": "10.88.0.254", "A": "10.88.0.1", "B": "10.88.0.2", "C": "10.88.0.3", "T": "10.88.0.9"}


# -- helpers ----------------------------------------------------------------------------------------

class ConntrackWatch:
    """``conntrack -E`` in a router: when the first packet to ``dst`` went out, and when its first reply came."""

    def __init__(self, lab: NatLab, host: str, dst: str):
        self.dst = dst
        self.first: float | None = None
        self.reply: float | None = None
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.router(host), "conntrack", "-E", "-p", "udp",
                                      "-o", "timestamp", "--orig-dst", dst], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(0.2)

    def _read(self) -> None:
        for line in self.proc.stdout:
            m = re.match(r"\[(\d+\.\d+)\]\s+\[(\w+)\]", line)
            if not m:
                continue
            t, kind = float(m.group(1)), m.group(2)
            if kind == "NEW" and self.first is None:
                self.first = t
            if kind == "UPDATE" and "UNREPLIED" not in line and self.reply is None:
                self.reply = t

    def wait_reply(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.reply is None and time.monotonic() < end:
            time.sleep(0.05)

    def stop(self) -> tuple[float | None, float | None]:
        time.sleep(0.2)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self.thread.join(5)
        return self.first, self.reply


def forget_t(lab: NatLab) -> None:
    """Before a repetition: T's router forgets everything (T is new), B's router forgets T only —
    its mapping towards the relay must stay, as it would for a node that keeps its relay session up."""
    lab.flush_conntrack("T")
    for flag in ("--orig-dst", "--orig-src"):
        sh("ip", "netns", "exec", lab.router("B"), "conntrack", "-D", flag, lab.wan["T"], check=False)
    time.sleep(0.5)


def iperf(lab: NatLab, client: str, server_ip: str, seconds: int) -> dict:
    cp = lab.in_ns(client, "iperf3", "-c", server_ip, "-t", str(seconds), "-J", "--connect-timeout", "5000",
                   timeout=seconds + 40)
    try:
        data = json.loads(cp.stdout)
    except ValueError:
        return {"error": (cp.stderr or cp.stdout).strip()[:200] or f"exit {cp.returncode}"}
    if data.get("error"):
        return {"error": data["error"]}
    end = data["end"]
    return {"mbit_s": round(end["sum_received"]["bits_per_second"] / 1e6, 1),
            "retransmits": end.get("sum_sent", {}).get("retransmits")}


def load() -> float:
    return os.getloadavg()[0]


def summarize(values: list[float]) -> dict:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {"n": 0}
    return {"n": len(v), "min": round(v[0], 3), "p50": round(statistics.median(v), 3), "max": round(v[-1], 3),
            "mean": round(statistics.fmean(v), 3)}


# -- weftnet ----------------------------------------------------------------------------------------

def weftnet_time_to_direct(lab: NatLab, reps: int) -> dict:
    """A fresh node T (new identity each time) starts and pings B; see the module docstring."""
    import random

    from weftnet.core.puzzle import generate_identity
    from weftnet.runtime.config import DEFAULT_CONFIG, DEFAULT_ID_DIFFICULTY
    from weftnet.runtime.control import call
    from weftnet.runtime.keystore import ensure_private_dir, write_identity
    from weftnet.runtime.paths import StatePaths

    rows = []
    for rep in range(reps):
        forget_t(lab)
        st = lab.tmp / f"T{rep}"
        ensure_private_dir(st)
        write_identity(StatePaths(st).key, generate_identity(random.SystemRandom(), DEFAULT_ID_DIFFICULTY))
        StatePaths(st).config.write_text(DEFAULT_CONFIG)
        lab.state["T"] = st
        watch = ConntrackWatch(lab, "T", lab.wan["B"])
        t_start = time.time()
        lab.up("T", f"{lab.ip['P1']}:4500", port=T_PORT + rep)
        wait_for(lambda: any(e.get("event") == "joined" for e in lab.log_events("T")), 20, "T to join")
        reply = None
        while time.time() - t_start < 30 and reply is None:
            r = call(st / "control.sock", "ping", timeout=30, target=lab.node_id["B"])
            if r.get("ok"):
                reply = time.time()
        direct_log = None
        b = lab.node_id["B"]

        def direct() -> float | None:
            for e in lab.log_events("T"):
                if e.get("peer") == b and ((e.get("event") == "path changed" and e["path"][0].isdigit())
                                           or (e.get("event") == "session up" and e["endpoint"][0].isdigit())):
                    return datetime.datetime.fromisoformat(e["ts"]).timestamp()
            return None

        try:
            direct_log = wait_for(direct, 15, "T's direct path to B")
        except AssertionError:
            pass
        time.sleep(0.5)
        first, punched = watch.stop()
        proc = lab.procs.pop("T")
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        rows.append({
            "start_to_first_reply_s": None if reply is None else round(reply - t_start, 3),
            "start_to_direct_s": None if direct_log is None else round(direct_log - t_start, 3),
            "first_packet_to_two_way_s": None if first is None or punched is None else round(punched - first, 3),
            "first_packet_to_direct_s": None if first is None or direct_log is None else round(direct_log - first, 3),
        })
        print(f"  weftnet rep {rep + 1}: {rows[-1]}", file=sys.stderr)
    return {"reps": rows, **{k: summarize([r[k] for r in rows]) for k in rows[0]}}


def weftnet_run(lab: NatLab, reps: int, seconds: int) -> dict:
    # The relay's default limits (40 Mbit/s a peer) would cap the relayed throughput; lift them
    # to measure what the forwarding path itself carries.
    conf = lab.state["P1"] / "config.toml"
    conf.write_text(conf.read_text().replace("peer_rate = 5000000 ", "peer_rate = 1000000000 ")
                    .replace("total_rate = 50000000 ", "total_rate = 10000000000 "))
    lab.up("P1")
    lab.up("P2", f"{lab.ip['P1']}:4500")
    for host in "BCE":
        lab.up(host, f"tcp://{lab.ip['P1']}:443" if host == "E" else f"{lab.ip['P1']}:4500")

    def settled(h: str) -> bool:
        r = lab.status(h)["reach"]
        return r["nat"] != "unknown" and bool(r["relays"]) and r["record"] is not None

    for host in "BCE":
        wait_for(lambda h=host: settled(h), 60, f"{host} to settle")
    lab.up("A", f"{lab.ip['P1']}:4500")
    wait_for(lambda: settled("A"), 60, "A to settle")
    out = {"time_to_direct": weftnet_time_to_direct(lab, reps), "throughput": {}}
    for host in "ABCE":
        lab.extra.append(subprocess.Popen(["ip", "netns", "exec", lab.name(host), "iperf3", "-s", "-B",
                                           lab.vpn_ip[host]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.5)
    for a, b, what in (("A", "B", "direct across two cone NATs"), ("A", "C", "relayed: cone to symmetric"),
                       ("E", "B", "relayed: E over TCP to the relay")):
        wait_for(lambda: lab.in_ns(a, "ping", "-c", "1", "-W", "1", lab.vpn_ip[b]).returncode == 0, 30,
                 f"{a} to reach {b} over the private network")
        row = {"what": what, "load_before": round(load(), 2), **iperf(lab, a, lab.vpn_ip[b], seconds)}
        row["path"] = lab.peer_path(a, b)
        out["throughput"][f"{a}->{b}"] = row
        print(f"  weftnet {a}->{b}: {row}", file=sys.stderr)
    out["relay"] = lab.status("P1")["reach"]["relay"]["stats"]
    return out


# -- nebula -----------------------------------------------------------------------------------------

def nebula_config(lab: NatLab, wd: Path, host: str, port: int = NEB_PORT) -> Path:
    conf = {
        "pki": {"ca": str(wd / "ca.crt"), "cert": str(wd / f"{host}.crt"), "key": str(wd / f"{host}.key")},
        "static_host_map": {} if host == "P1" else {NEB_IP["P1"]: [f"{lab.ip['P1']}:{NEB_PORT}"]},
        "lighthouse": {"am_lighthouse": host == "P1", "interval": 60,
                       "hosts": [] if host == "P1" else [NEB_IP["P1"]]},
        "listen": {"host": "0.0.0.0", "port": port},
        "punchy": {"punch": True, "respond": True},
        "relay": {"am_relay": host == "P1", "use_relays": host != "P1",
                  "relays": [] if host == "P1" else [NEB_IP["P1"]]},
        "tun": {"disabled": False, "dev": "nebula0", "mtu": 1300},
        "logging": {"level": "info", "format": "json"},
        "firewall": {"outbound": [{"port": "any", "proto": "any", "host": "any"}],
                     "inbound": [{"port": "any", "proto": "any", "host": "any"}]},
    }
    path = wd / f"{host}.yml"
    path.write_text(json.dumps(conf, indent=1) + "\n")  # JSON is YAML
    return path


def nebula_run(lab: NatLab, reps: int, seconds: int) -> dict:
    wd = lab.tmp / "nebula"
    wd.mkdir()
    sh("nebula-cert", "ca", "-name", "reach-bench", "-out-crt", str(wd / "ca.crt"), "-out-key", str(wd / "ca.key"))
    for host, ip in NEB_IP.items():
        sh("nebula-cert", "sign", "-ca-crt", str(wd / "ca.crt"), "-ca-key", str(wd / "ca.key"), "-name", host,
           "-ip", f"{ip}/24", "-out-crt", str(wd / f"{host}.crt"), "-out-key", str(wd / f"{host}.key"))
        sh("nebula", "-test", "-config", str(nebula_config(lab, wd, host)))
    procs: dict[str, subprocess.Popen] = {}

    def start(host: str, port: int = NEB_PORT) -> None:
        log = open(wd / f"{host}.log", "a")
        conf = nebula_config(lab, wd, host, port)
        procs[host] = subprocess.Popen(["ip", "netns", "exec", lab.name(host), "nebula", "-config",
                                        str(conf)], stdout=log, stderr=log)
        wait_for(lambda: lab.in_ns(host, "ip", "addr", "show", "nebula0").returncode == 0, 15, f"nebula0 in {host}")

    def stop(host: str) -> None:
        p = procs.pop(host)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()

    out: dict = {"throughput": {}}
    try:
        for host in ("P1", "A", "B", "C"):
            start(host)
        rows = []
        for rep in range(reps):
            forget_t(lab)
            watch = ConntrackWatch(lab, "T", lab.wan["B"])
            t_start = time.time()
            start("T", T_PORT + rep)
            reply = None
            cp = lab.in_ns("T", "ping", "-D", "-n", "-i", "0.05", "-c", "1", "-w", "20", NEB_IP["B"], timeout=30)
            m = re.search(r"^\[(\d+\.\d+)\] \d+ bytes from", cp.stdout, re.M)
            if m:
                reply = float(m.group(1))
            watch.wait_reply(15.0)  # as long as weftnet gets for its direct path
            first, punched = watch.stop()
            stop("T")
            rows.append({
                "start_to_first_reply_s": None if reply is None else round(reply - t_start, 3),
                "first_packet_to_two_way_s": None if first is None or punched is None else round(punched - first, 3),
            })
            print(f"  nebula rep {rep + 1}: {rows[-1]}", file=sys.stderr)
        out["time_to_direct"] = {"reps": rows, **{k: summarize([r[k] for r in rows]) for k in rows[0]}}
        for host in "ABC":
            lab.extra.append(subprocess.Popen(["ip", "netns", "exec", lab.name(host), "iperf3", "-s", "-B",
                                               NEB_IP[host]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        for a, b, what in (("A", "B", "direct across two cone NATs"), ("A", "C", "relayed: cone to symmetric")):
            wait_for(lambda: lab.in_ns(a, "ping", "-c", "1", "-W", "1", NEB_IP[b]).returncode == 0, 30,
                     f"{a} to reach {b} over nebula")
            row = {"what": what, "load_before": round(load(), 2), **iperf(lab, a, NEB_IP[b], seconds)}
            out["throughput"][f"{a}->{b}"] = row
            print(f"  nebula {a}->{b}: {row}", file=sys.stderr)
    finally:
        for host in list(procs):
            stop(host)
    out["version"] = sh("nebula", "-version").stdout.strip().replace("Version: ", "")
    return out


# -- the simulator ----------------------------------------------------------------------------------

def sim_run(out: Path, nodes: int | None, pairs: int | None) -> dict:
    from weftnet.sim.cli import resolve_scenario
    from weftnet.sim.nat import nat_plot, run_nat_scenario
    from weftnet.sim.scenario import load_scenario

    sc = load_scenario(resolve_scenario("nat-mix"))
    if pairs:
        sc.nat["pairs"] = pairs
    t0 = time.perf_counter()
    c0 = time.process_time()
    summary = run_nat_scenario(sc, None, nodes)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    summary["cpu_seconds"] = round(time.process_time() - c0, 1)
    d = out / "sim" / "nat"
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    nat_plot(d, summary)
    return summary


# -- report -----------------------------------------------------------------------------------------

def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
    return (f"{model}, {os.cpu_count()} cores, {mem / 2**20:.1f} GiB RAM, kernel {platform.release()}, "
            f"Python {platform.python_version()}")


def report(res: dict) -> str:
    from weftnet.sim.nat import nat_text

    w, n = res.get("weftnet", {}), res.get("nebula", {})
    lines = [
        "# NAT traversal (bench/reach/run.py)",
        "",
        f"- date: {res['date']}",
        f"- machine: {res['machine']}",
        f"- load average before: {res['load_before']}; other jobs shared the machine, so the figures are one run's, "
        "not a capacity",
        "- lab: tests/natlab.py — network namespaces, nftables routers (cone = `masquerade`, symmetric = "
        "`masquerade random`, one that drops all UDP), a public segment with a relay/bootstrap P1 and a public P2; "
        "every host on one machine, so there is no propagation delay: the times are protocol and process time",
        "",
        "## Time to a direct path across two cone NATs",
        "",
        f"A fresh node T starts behind a cone NAT and pings B (behind another one); {res['reps']} repetitions; "
        "between them T's router forgets every mapping and B's router every mapping involving T, and T takes "
        "another UDP port, so each starts cold. *first packet → two-way*: from the first packet T's router saw "
        "leave towards B's public address to the first packet that came back from it (conntrack events: the hole "
        "is open both ways). *start → first reply*: from launching T to the first answered ping (through the "
        "relay or direct).",
        "",
        "| system | first packet → two-way, p50 (min–max) | start → first reply, p50 (min–max) | "
        "first packet → path direct (log), p50 (min–max) |",
        "|---|---|---|---|",
    ]

    def cell(d: dict) -> str:
        return "-" if not d or not d.get("n") else f"{d['p50']:.3f} s ({d['min']:.3f}–{d['max']:.3f}), n={d['n']}"

    for name, r in (("weftnet", w), ("nebula " + n.get("version", ""), n)):
        t = r.get("time_to_direct", {})
        lines.append(f"| {name} | {cell(t.get('first_packet_to_two_way_s', {}))} | "
                     f"{cell(t.get('start_to_first_reply_s', {}))} | {cell(t.get('first_packet_to_direct_s', {}))} |")
    lines += [
        "",
        "## Private-network throughput across NATs",
        "",
        f"iperf3, one TCP stream, {res['seconds']} s, the receiver's rate; client, server, both daemons and the relay "
        "share the machine's cores. weftnet's relay ran with its per-peer and total limits lifted (defaults: "
        "40 and 400 Mbit/s) to measure the forwarding path itself.",
        "",
        "| pair | path | weftnet Mbit/s | nebula Mbit/s |",
        "|---|---|---|---|",
    ]
    for key in ("A->B", "A->C", "E->B"):
        wr, nr = w.get("throughput", {}).get(key, {}), n.get("throughput", {}).get(key)
        what = wr.get("what") or (nr or {}).get("what", "")
        wv = wr.get("mbit_s", wr.get("error", "-"))
        nv = "no TCP transport" if key == "E->B" else (nr or {}).get("mbit_s", (nr or {}).get("error", "-"))
        lines.append(f"| {key} | {what}{' (weftnet path: ' + wr['path'] + ')' if wr.get('path') else ''} | {wv} | {nv} |")
    fc = res.get("first_contact")
    if fc:  # recorded by hand from traced runs of tests/test_reach_netns.py (docs/reach.md, "Known limits")
        lines += ["", "## First contact between NATed clients (the NAT lab's module, traced)", "", fc["how"], "",
                  "| code | runs | setup handshakes between clients timed out | first pings (of 6 pairs) that failed "
                  "| first C→D ping: handshake wait |", "|---|---|---|---|---|"]
        lines += [f"| {r['code']} | {r['runs']} | {r['timeouts']} | {r['failed']} | {r['cd_wait']} |" for r in fc["rows"]]
    if "sim" in res:
        lines += ["", "## Simulator: connectivity for a mix of NATs (`weft sim nat-mix`)", "",
                  "Real nodes (NodeCore, sessions, DHT, reach) behind modelled NATs (sim/nat.py) over the "
                  "underlay latency model; the mix is the scenario's assumption, not a measurement. "
                  f"Wall time {res['sim']['wall_seconds']} s"
                  + (f", CPU time {res['sim']['cpu_seconds']} s" if "cpu_seconds" in res["sim"] else "")
                  + (f"; run {res['sim_date']} (load average before {res['sim_load_before']}; other jobs "
                     "shared the machine)" if res.get("sim_date") else "") + ".", "", nat_text(res["sim"])]
        if res.get("sim_note"):  # what the run's misses were traced to, written with the run (docs/reach.md)
            lines += ["", res["sim_note"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--sim-nodes", type=int)
    ap.add_argument("--sim-pairs", type=int)
    ap.add_argument("--skip", default="", help="comma list of: weftnet, nebula, sim")
    ap.add_argument("--sim-from", type=Path, help="with --skip sim: report this earlier sim/nat/summary.json")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    if os.geteuid() != 0:
        print("bench/reach/run.py needs root (namespaces)", file=sys.stderr)
        return 2
    missing = [t for t in ("ip", "nft", "conntrack", "iperf3") if not shutil.which(t)]
    if missing:
        print(f"missing tools: {', '.join(missing)} (apt-get install nftables conntrack iperf3)", file=sys.stderr)
        return 2
    res: dict = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "machine": machine(), "load_before": round(load(), 2), "reps": a.reps, "seconds": a.seconds}
    for system, fn in (("weftnet", weftnet_run), ("nebula", nebula_run)):
        if system in skip or (system == "nebula" and not shutil.which("nebula")):
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"reach-{system}-"))
        lab = NatLab(tmp, tag=f"rb{os.getpid() % 10000}{system[0]}")
        try:
            lab.build_public()
            lab.add_public("P1", 1, relay=True)
            lab.add_public("P2", 2)
            for host, kind in (("A", "eim"), ("B", "eim"), ("C", "edm"), ("E", "udp-blocked"), ("T", "eim")):
                lab.add_client(host, kind)
            lab.init_nodes()
            print(f"{system} ...", file=sys.stderr)
            res[system] = fn(lab, a.reps, a.seconds)
        finally:
            lab.close()
            shutil.rmtree(tmp, ignore_errors=True)
    if "sim" not in skip:
        print("simulator ...", file=sys.stderr)
        res["sim"] = sim_run(a.out, a.sim_nodes, a.sim_pairs)
        res["sim_date"], res["sim_load_before"] = res["date"], res["load_before"]
    elif a.sim_from is not None:
        res["sim"] = json.loads(a.sim_from.read_text())
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "reach.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    (a.out / "reach.md").write_text(report(res))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
