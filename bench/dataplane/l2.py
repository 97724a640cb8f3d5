#!/usr/bin/env python3
"""Layer-2 throughput: iperf3 TCP between containers on one L2 segment across two hosts.

Side by side, in one run, on fresh namespaces per row (bench/dataplane/netns.py: hosts A and B
joined by a veth underlay 10.200.0.1/24 <-> 10.200.0.2/24, MTU 1500):

| row | what | iperf3 between |
|---|---|---|
| `vxlan-l2` | plain kernel VXLAN (VNI 42, UDP 4789, unicast remote) enslaved to a bridge on each host, no encryption | container CA behind A's bridge and CB behind B's |
| `weftnet-l2` | `weft up` on each host, a layer-2 network (`weft net create --l2`): bridge + TAP, frames in encrypted sessions | CA and CB, the same containers |
| `weftnet-l2-host` | the same layer-2 network | the hosts themselves, on their bridges' addresses |
| `weftnet-l3` | `weft up` on each host, a layer-3 network (TUN), as bench/dataplane/run.py's weftnet row | the hosts, on their TUN addresses |

A "container" is a network namespace with a veth whose other end is a port of its host's
bridge. The device whose counters must see the traffic is the tunnel device on A (vx0, the TAP
wt-bench, the TUN wn-bench): a run where it saw less than iperf3 moved is an error, not a figure.

    sudo python3 bench/dataplane/l2.py                      # all four rows, 10 s per direction
    sudo python3 bench/dataplane/l2.py --only weftnet-l2 --seconds 5 --out /tmp/l2

Writes l2.json and l2.md into --out (default bench/results/). Needs root, iproute2, iperf3 and ping.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import UNDERLAY_A, UNDERLAY_B, UNDERLAY_DEV, BenchError, Topology, require_tools, run  # noqa: E402
from run import IPERF_PORT, machine  # noqa: E402
from systems import REPO, WEFT_DEFAULT, Overlay, Weftnet, first_line, has_addr, kernel_version  # noqa: E402

REQUIRED = ("ip", "iperf3", "ping", "ss")


class PodTopology(Topology):
    """Hosts A and B, plus container namespaces CA and CB that the systems attach to a bridge."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, prefix=f"l2b-{os.getpid()}")
        self.ca, self.cb = f"{self.a}c", f"{self.b}c"

    def __enter__(self) -> "PodTopology":
        super().__enter__()
        try:
            for ns in (self.ca, self.cb):
                run(["ip", "netns", "add", ns])
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise
        return self

    def ns(self, side: str) -> str:
        return {"a": self.a, "b": self.b, "ca": self.ca, "cb": self.cb}[side]

    def close(self) -> None:
        super().close()
        for ns in (self.ca, self.cb):
            if Path("/run/netns", ns).exists():
                for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                run(["ip", "netns", "del", ns], check=False)

    def attach(self, host: str, container: str, bridge: str, mac: str, cidr: str, mtu: int) -> None:
        """Container's eth0 (MAC, address, MTU), its veth peer a port of ``bridge`` in ``host``."""
        run(["ip", "-n", self.ns(host), "link", "add", "pod0", "mtu", str(mtu), "type", "veth", "peer", "name",
             "eth0", "netns", self.ns(container)])
        run(["ip", "-n", self.ns(container), "link", "set", "eth0", "address", mac, "up"])
        run(["ip", "-n", self.ns(container), "addr", "add", cidr, "dev", "eth0"])
        run(["ip", "-n", self.ns(host), "link", "set", "pod0", "master", bridge, "up"])

    def wait_ping_from(self, side: str, addr: str, timeout: float = 30.0) -> None:
        self.wait_for(lambda: self.exec(side, ["ping", "-c1", "-W1", addr], timeout=5, check=False).returncode == 0,
                      f"ping {addr} from {side}", timeout=timeout)


class Row:
    name = ""
    title = ""
    client = "a"   # where iperf3's client runs
    server = "b"   # where its server runs

    def setup(self, topo: PodTopology, wd: Path) -> Overlay:
        raise NotImplementedError

    def version(self, weft: str) -> str:
        return kernel_version()


class VxlanL2(Row):
    name, title, client, server = "vxlan-l2", "kernel VXLAN, bridged (containers)", "ca", "cb"
    MTU = 1450  # the VXLAN device's on a 1500-byte underlay; the containers must not exceed it

    def setup(self, topo: PodTopology, wd: Path) -> Overlay:
        for side, local, remote, n in (("a", UNDERLAY_A, UNDERLAY_B, 1), ("b", UNDERLAY_B, UNDERLAY_A, 2)):
            topo.exec(side, ["ip", "link", "add", "br0", "type", "bridge"])
            topo.exec(side, ["ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local, "remote", remote,
                             "dstport", "4789", "dev", UNDERLAY_DEV])
            topo.exec(side, ["ip", "link", "set", "vx0", "master", "br0", "up"])
            topo.exec(side, ["ip", "link", "set", "br0", "up"])
            topo.attach(side, "c" + side, "br0", f"02:0{n}:00:00:00:01", f"10.97.{n}.1/16", self.MTU)
        topo.wait_ping_from("ca", "10.97.2.1")
        return Overlay("10.97.2.1", "vx0", self.MTU, {"encryption": "none", "transport": "UDP 4789, VNI 42",
                                                      "containers": f"veth MTU {self.MTU}"})


class WeftnetL2(Row):
    name, title, client, server = "weftnet-l2", "weftnet layer 2 (containers)", "ca", "cb"
    PORT = 4500

    def __init__(self, weft: str):
        self.weft = weft

    def version(self, weft: str) -> str:
        return first_line([weft, "--version"])

    def w(self, state: Path, *args: str) -> str:
        return run([self.weft, "--state-dir", str(state), *args], timeout=60).stdout

    def setup(self, topo: PodTopology, wd: Path) -> Overlay:
        owner = wd / "owner"
        self.w(owner, "init")
        self.w(owner, "net", "create", "bench", "--ipv4", "10.98.0.0/16", "--l2")
        conf = ('\n[networks.bench]\n'
                'firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]\n'
                'firewall.inbound  = [ { proto = "any", port = "any", host = "any" } ]\n')
        for side, n in (("a", 1), ("b", 2)):
            state = wd / f"s{side}"
            self.w(state, "init")
            node = json.loads(self.w(state, "id", "--json"))["node_id"]
            cert = wd / f"{side}.cert"
            self.w(owner, "net", "sign", "bench", "--node", node, "--ip", f"10.98.0.{n}", "--mac",
                   f"02:0{n}:00:00:00:00/40", "--source", f"10.98.{n}.0/24", "--out", str(cert))
            self.w(state, "net", "join", str(cert))
            with open(state / "config.toml", "a") as fh:
                fh.write(conf)
        for side, under, peer in (("b", UNDERLAY_B, []), ("a", UNDERLAY_A, ["--peer", f"{UNDERLAY_B}:{self.PORT}"])):
            topo.spawn(side, [self.weft, "--state-dir", str(wd / f"s{side}"), "up", "--listen", under,
                              "--port", str(self.PORT), *peer], f"weft-{side}")
            n = 1 if side == "a" else 2
            topo.wait_for(lambda s=side, n=n: has_addr(topo, s, "wb-bench", f"10.98.0.{n}"), f"wb-bench in {side}")
        for side, n in (("a", 1), ("b", 2)):
            topo.attach(side, "c" + side, "wb-bench", f"02:0{n}:00:00:00:01", f"10.98.{n}.1/16", 1500)
        topo.wait_ping_from("ca", "10.98.2.1")
        return Overlay(self.target(), "wt-bench", 1500,
                       {"encryption": "ChaCha20-Poly1305 (Noise IK, Python daemon)", "transport": f"UDP {self.PORT}",
                        "offload": "TAP with IFF_VNET_HDR + TSO: TCP superframes in 60 kB chunks",
                        "containers": "veth MTU 1500", "firewall": "allow all"})

    def target(self) -> str:
        return "10.98.2.1"


class WeftnetL2Host(WeftnetL2):
    name, title, client, server = "weftnet-l2-host", "weftnet layer 2 (hosts, on their bridges)", "a", "b"

    def target(self) -> str:
        return "10.98.0.2"

    def setup(self, topo: PodTopology, wd: Path) -> Overlay:
        ov = super().setup(topo, wd)
        ov.notes.pop("containers", None)
        ov.notes["hosts"] = "bridge wb-bench, MTU 1500, addresses from the certificates"
        return ov


class WeftnetL3(Row):
    name, title, client, server = "weftnet-l3", "weftnet layer 3 (hosts, TUN)", "a", "b"

    def __init__(self, weft: str):
        self.inner = Weftnet(Path(weft))

    def version(self, weft: str) -> str:
        return first_line([weft, "--version"])

    def setup(self, topo: PodTopology, wd: Path) -> Overlay:
        return self.inner.setup(topo, wd)


def all_rows(weft: str) -> list[Row]:
    return [VxlanL2(), WeftnetL2(weft), WeftnetL2Host(weft), WeftnetL3(weft)]


def iperf(topo: PodTopology, row: Row, server: str, dev: str, seconds: int, reverse: bool) -> dict:
    before = topo.dev_bytes("a", dev)
    argv = ["iperf3", "-c", server, "-p", str(IPERF_PORT), "-t", str(seconds), "-J", "--connect-timeout", "5000"]
    if reverse:
        argv.append("-R")
    cp = topo.exec(row.client, argv, timeout=seconds + 20, check=False)
    try:
        data = json.loads(cp.stdout)
    except ValueError as e:
        topo.check_alive()
        raise BenchError(f"iperf3 gave no JSON (exit {cp.returncode}): {(cp.stderr or cp.stdout).strip()[:300]}") from e
    if data.get("error"):
        raise BenchError(f"iperf3{' -R' if reverse else ''}: {data['error']}")
    after = topo.dev_bytes("a", dev)
    end = data["end"]
    moved = end["sum_received"]["bytes"]
    seen = after[0] - before[0] if reverse else after[1] - before[1]
    if seen < moved:
        raise BenchError(f"{dev} counted {seen} bytes but iperf3 moved {moved}: traffic bypassed it")
    return {"gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3), "bytes": moved, "dev_bytes": seen,
            "retransmits": end.get("sum_sent", {}).get("retransmits")}


def measure(row: Row, weft: str, workroot: Path, seconds: int) -> dict:
    out: dict = {"name": row.name, "title": row.title, "version": row.version(weft),
                 "load_1m": round(os.getloadavg()[0], 2)}
    wd = workroot / row.name
    wd.mkdir(parents=True)
    try:
        with PodTopology(wd) as topo:
            ov = row.setup(topo, wd)
            out.update(server=ov.server, dev=ov.dev, mtu=ov.mtu, notes=ov.notes)
            topo.spawn(row.server, ["iperf3", "-s", "-p", str(IPERF_PORT)], "iperf3-server")
            topo.wait_for(lambda: topo.listening(row.server, IPERF_PORT), "iperf3 server", timeout=10)
            out["forward"] = iperf(topo, row, ov.server, ov.dev, seconds, reverse=False)
            out["reverse"] = iperf(topo, row, ov.server, ov.dev, seconds, reverse=True)
            topo.check_alive()
        out["status"] = "ok"
    except BenchError as e:
        out.update(status="error", error=str(e))
    except Exception as e:
        out.update(status="error", error=f"{type(e).__name__}: {e}")
    return out


def combine(rows: list[dict]) -> dict:
    """One row from several rounds: the median rate per direction, every round's figures kept."""
    ok = [r for r in rows if r["status"] == "ok"]
    out = dict(ok[0] if ok else rows[0])
    out["rounds"] = [{"status": r["status"], "load_1m": r["load_1m"],
                      **({"forward": r["forward"]["gbit_s"], "reverse": r["reverse"]["gbit_s"]}
                         if r["status"] == "ok" else {"error": r.get("error")})} for r in rows]
    if ok and len(rows) > 1:
        for d in ("forward", "reverse"):
            rates = sorted(r[d]["gbit_s"] for r in ok)
            out[d] = dict(out[d], gbit_s=rates[len(rates) // 2] if len(rates) % 2 else
                          round((rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2, 3))
        out["status"] = "ok" if len(ok) == len(rows) else f"ok in {len(ok)} of {len(rows)} rounds"
    return out


def markdown(report: dict) -> str:
    m = report["machine"]
    rounds = report.get("rounds", 1)
    lines = [
        "# Layer-2 throughput (bench/dataplane/l2.py)",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, kernel {m['kernel']}, {m['os']}, "
        f"Python {m['python']}",
        f"- load: {m['iperf3']}, one TCP stream, {report['seconds']} s per direction; the rate is the receiver's",
        f"- underlay: veth pair {UNDERLAY_A}/24 <-> {UNDERLAY_B}/24 between two fresh host namespaces per row, "
        "MTU 1500; containers are namespaces on a veth port of their host's bridge",
        "- both hosts, both containers and both tunnel ends share the same 2 cores: a figure is what one machine "
        "pushes through both ends at once, not a link speed. 'load before' is the 1-minute load average when "
        "the row was set up (it still holds the previous row's work)",
    ]
    if rounds > 1:
        lines.append(f"- every row was measured {rounds} times, the rows in alternating order between rounds; "
                     "the table gives the median, every round is listed below it")
    if report.get("note"):
        lines.append(f"- {report['note']}")
    lines += [
        "",
        "| row | status | Gbit/s A→B | Gbit/s B→A (-R) | retransmits A→B | MTU | load before | version |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        fwd, rev = r.get("forward"), r.get("reverse")
        if fwd and rev:
            lines.append(f"| {r['title']} | {r['status']} | {fwd['gbit_s']:.2f} | {rev['gbit_s']:.2f} | "
                         f"{fwd['retransmits']} | {r.get('mtu')} | {r['load_1m']} | {r['version']} |")
        else:
            lines.append(f"| {r['title']} | {r['status']} | — | — | — | {r.get('mtu', '')} | {r['load_1m']} | "
                         f"{r['version']} |")
    if rounds > 1:
        lines += ["", "## Every round (Gbit/s A→B / B→A, load before)", ""]
        for r in report["results"]:
            lines.append(f"- {r['title']}: " + "; ".join(
                f"{x['forward']:.2f} / {x['reverse']:.2f} (load {x['load_1m']})" if x["status"] == "ok"
                else f"{x['status']}: {x.get('error')}" for x in r["rounds"]))
    lines += ["", "## Configuration notes", ""]
    for r in report["results"]:
        bits = [f"{k}: {v}" for k, v in r.get("notes", {}).items()]
        if r.get("dev"):
            bits.insert(0, f"device counted {r['dev']} on A")
        if r.get("server"):
            bits.append(f"iperf3 to {r['server']}")
        if r.get("error"):
            bits.append(f"**{r['status']}**: {r['error']}")
        lines.append(f"- **{r['title']}** — " + "; ".join(bits))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated rows (default: all): vxlan-l2,weftnet-l2,weftnet-l2-host,weftnet-l3")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=1, help="measure every row this many times (report the median)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--weft", type=Path, default=WEFT_DEFAULT)
    p.add_argument("--note", default="", help="a line for the report (e.g. that other jobs shared the machine)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (network namespaces, TAP devices)")
    require_tools(p, REQUIRED)
    rows = all_rows(str(args.weft))
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {r.name for r in rows}
        if unknown:
            p.error(f"unknown rows: {', '.join(sorted(unknown))}")
        rows = [r for r in rows if r.name in wanted]
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt(f"signal {s}")))
    workroot = Path(tempfile.mkdtemp(prefix=f"l2b-{os.getpid()}-"))
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "seconds": args.seconds, "rounds": args.rounds, "note": args.note,
              "results": []}
    runs: dict[str, list[dict]] = {r.name: [] for r in rows}
    try:
        for k in range(args.rounds):
            # Rows alternate order each round, so a load that drifts during the run hits them evenly.
            for row in rows if k % 2 == 0 else rows[::-1]:
                print(f"[l2] round {k + 1}: {row.name} ...", file=sys.stderr, flush=True)
                r = measure(row, str(args.weft), workroot / f"r{k}", args.seconds)
                print(f"[l2] {row.name}: {r['status']} "
                      + (f"{r['forward']['gbit_s']} / {r['reverse']['gbit_s']} Gbit/s" if r["status"] == "ok"
                         else r.get("error", "")), file=sys.stderr, flush=True)
                runs[row.name].append(r)
        for row in rows:
            report["results"].append(combine(runs[row.name]))
    except KeyboardInterrupt as e:
        print(f"[l2] interrupted ({e}); torn down, no results written", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "l2.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "l2.md").write_text(markdown(report))
    print(f"[l2] wrote {args.out / 'l2.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
