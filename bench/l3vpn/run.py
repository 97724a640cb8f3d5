#!/usr/bin/env python3
"""L3VPN bench: VPN route convergence and VRF-to-VRF throughput, side by side in one run (docs/l3vpn.md).

    sudo .venv/bin/python bench/l3vpn/run.py [--routes 10000] [--seconds 10]

1. Convergence. An FRR PE (control plane only) originates N VPNv4 prefixes (one RD, one route
   target, one label) to three iBGP receivers at once: a weftnet PE, which imports them into a
   VRF and programs them into the VRF namespace's table; a second FRR; GoBGP. The clock starts
   when the FRR source's bgpd is started (the receivers are already waiting); for each receiver
   we record when it held the first and the last of the N routes (weftnet: in the VRF table, and
   in the kernel table of the VRF namespace), each receiver polled by its own thread.
2. Throughput. iperf3, one TCP stream, between two weftnet nodes on a veth underlay: through a
   plain weftnet private network (as bench/dataplane) and through L3VPN VRFs of two weftnet PEs
   (VPNv4 over iBGP between them, labelled packets in their session), measured from inside the
   VRF namespaces and from hosts behind them (one routed hop more on each side).

Results go to bench/results/l3vpn.{json,md}. Needs root, iproute2, frr, gobgpd, iperf3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench" / "dataplane"))

from l3vpn_lab import Lab, have_tools, sh, wait_for  # noqa: E402

from weftnet.runtime.control import call  # noqa: E402

RESULTS = REPO / "bench" / "results"


def control(lab: Lab, pe: str, op: str, **kw):
    return call(lab.state[pe] / "control.sock", op, timeout=30, **kw)


# -- 1. convergence --------------------------------------------------------------------------------

def source_config(n: int) -> str:
    nets = "\n".join(f"  network 20.{i // 256}.{i % 256}.0/24 rd 65000:9 label 100 route-map RT" for i in range(n))
    peers = "".join(f" neighbor 10.252.0.{i} remote-as 65000\n" for i in (2, 3, 4))
    act = "".join(f"  neighbor 10.252.0.{i} activate\n" for i in (2, 3, 4))
    return f"""frr defaults datacenter
hostname src
route-map RT permit 10
 set extcommunity rt 65000:100
exit
router bgp 65000
 bgp router-id 10.252.0.1
 no bgp ebgp-requires-policy
{peers} address-family ipv4 unicast
{''.join(f'  no neighbor 10.252.0.{i} activate{chr(10)}' for i in (2, 3, 4))} exit-address-family
 address-family ipv4 vpn
{act}{nets}
 exit-address-family
!
"""


RECEIVER_FRR = """frr defaults datacenter
hostname rcv
router bgp 65000
 bgp router-id 10.252.0.3
 neighbor 10.252.0.1 remote-as 65000
 address-family ipv4 unicast
  no neighbor 10.252.0.1 activate
 exit-address-family
 address-family ipv4 vpn
  neighbor 10.252.0.1 activate
 exit-address-family
!
"""
RECEIVER_GOBGP = """[global.config]
  as = 65000
  router-id = "10.252.0.4"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.252.0.1"
    peer-as = 65000
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-unicast"
"""


def convergence(n: int, work: Path) -> dict:
    lab = Lab(work / "conv", tag=f"cv{os.getpid() % 10000}")
    (work / "conv").mkdir(parents=True, exist_ok=True)
    try:
        core = lab.add_ns("core")
        sh("ip", "-n", core, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", core, "link", "set", "br0", "up")
        for i, name in enumerate(("src", "pe", "rcv", "gb"), start=1):
            ns = lab.add_ns(name)
            lab.link(core, f"p{i}", "", ns, "u0", f"10.252.0.{i}/24")
            sh("ip", "-n", core, "link", "set", f"p{i}", "master", "br0")
        lab.init_pe("pe")
        other = lab.init_pe("other")  # a node ID for the source's next hop, so routes resolve and reach the kernel
        vrf_ns = lab.add_ns("vrf")
        lab.start_pe("pe", lab.n("pe"), "10.252.0.2", f"""
[bgp]
asn = 65000
router_id = "10.252.0.2"
listen = "10.252.0.2"
port = 179
families = ["vpnv4"]
[[bgp.peers]]
address = "10.252.0.1"
remote_as = 65000
max_prefixes = 1000000
[l3vpn.pes]
"10.252.0.1" = "{other}"
[vrf.bench]
rd = "65000:2"
route_targets = ["65000:100"]
netns = "{vrf_ns}"
""")
        lab.start_frr(lab.n("rcv"), RECEIVER_FRR)
        lab.start_gobgp(lab.n("gb"), RECEIVER_GOBGP, 50100 + os.getpid() % 1000)

        def weft():
            v = control(lab, "pe", "vrf_ls")[0]
            return v["routes"]["remote"], v["kernel"].get("routes_installed", 0)

        def frr():
            d = lab.vtysh_json(lab.n("rcv"), "show bgp ipv4 vpn summary json")
            peer = d.get("peers", {}).get("10.252.0.1", {})
            return peer.get("pfxRcd", 0)

        def gobgp():
            out = lab.gobgp(lab.n("gb"), "global", "rib", "-a", "vpnv4", "summary")
            for tok in out.replace(",", " ").split():
                if tok.isdigit():
                    return int(tok)  # "Table vpnv4: Destination: N, Path: N"
            return 0

        probes = {"weftnet VRF table": lambda: weft()[0], "weftnet kernel": lambda: weft()[1], "FRR": frr,
                  "GoBGP": gobgp}
        marks: dict[str, dict[str, float]] = {k: {} for k in probes}
        import threading

        def watch(name, probe, t0):
            # one thread per receiver, so a slow probe (a CLI under load) does not delay the others
            while time.monotonic() - t0 < 180 and "all" not in marks[name]:
                try:
                    c = probe()
                except Exception:  # noqa: BLE001 - a receiver not answering yet
                    c = 0
                now = time.monotonic() - t0
                if c > 0 and "first" not in marks[name]:
                    marks[name]["first"] = now
                if c >= n:
                    marks[name]["all"] = now
                time.sleep(0.02)

        t0 = time.monotonic()
        lab.start_frr(lab.n("src"), source_config(n))
        threads = [threading.Thread(target=watch, args=(k, p, t0)) for k, p in probes.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        st = control(lab, "pe", "status")["l3vpn"]
        out = {"_weftnet_internal": {"first_vpn_route_to_last_s": st["vpn_burst_s"],
                                     "first_vpn_route_to_kernel_done_s": st["kernel_after_first_s"],
                                     "vpn_routes_in": st["vpn_routes_in"]}}
        for k, m in marks.items():
            out[k] = {"first_s": round(m.get("first", -1), 2), "all_s": round(m.get("all", -1), 2),
                      "convergence_s": round(m["all"] - m["first"], 2) if "all" in m and "first" in m else None}
        return out
    finally:
        if os.environ.get("WEFT_LAB_LOG"):
            print((lab.tmp / "pe.log").read_text()[-4000:], file=sys.stderr)
        lab.close()


# -- 2. throughput ---------------------------------------------------------------------------------

def iperf(lab: Lab, client_ns: str, server: str, bind: str, seconds: int) -> dict:
    argv = ["iperf3", "-c", server, "-B", bind, "-t", str(seconds), "-J", "--connect-timeout", "5000", "-p", "5201"]
    cp = lab.in_ns(client_ns, *argv, timeout=seconds + 30)
    data = json.loads(cp.stdout)
    if data.get("error"):
        raise RuntimeError(data["error"])
    end = data["end"]
    return {"gbit_s": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
            "retransmits": end.get("sum_sent", {}).get("retransmits")}


def throughput(seconds: int, work: Path) -> dict:
    rows = {}
    lab = Lab(work / "tp", tag=f"tp{os.getpid() % 10000}")
    (work / "tp").mkdir(parents=True, exist_ok=True)
    try:
        a, b = lab.add_ns("a"), lab.add_ns("b")
        lab.link(a, "veth0", "10.200.0.1/24", b, "veth0", "10.200.0.2/24")
        na, nb = lab.init_pe("a"), lab.init_pe("b")
        owner = lab.tmp / "owner"
        sh(sys.executable, "-m", "weftnet.cli.main", "--state-dir", str(owner), "init")
        sh(sys.executable, "-m", "weftnet.cli.main", "--state-dir", str(owner), "net", "create", "bench",
           "--ipv4", "10.99.0.0/24")
        conf = {}
        for side, node, ip, other_ip, other_node in (("a", na, "10.99.0.1", "10.200.0.2", nb),
                                                     ("b", nb, "10.99.0.2", "10.200.0.1", na)):
            cert = lab.tmp / f"{side}.cert"
            sh(sys.executable, "-m", "weftnet.cli.main", "--state-dir", str(owner), "net", "sign", "bench",
               "--node", node, "--ip", ip, "--out", str(cert))
            lab.weft(side, "net", "join", str(cert))
            idx = 1 if side == "a" else 2
            vrf_ns, host = lab.add_ns(f"{side}red"), lab.add_ns(f"{side}host")
            lab.link(vrf_ns, "lan0", f"172.16.{idx}.1/24", host, "eth0", f"172.16.{idx}.5/24")
            sh("ip", "-n", host, "route", "add", "default", "via", f"172.16.{idx}.1")
            me = "10.200.0.1" if side == "a" else "10.200.0.2"
            conf[side] = f"""
[networks.bench]
firewall.outbound = [ {{ proto = "any", port = "any", host = "any" }} ]
firewall.inbound  = [ {{ proto = "any", port = "any", host = "any" }} ]
[bgp]
asn = 65000
router_id = "{me}"
listen = "{me}"
port = 179
families = ["vpnv4"]
[[bgp.peers]]
address = "{other_ip}"
remote_as = 65000
[l3vpn.pes]
"{other_ip}" = "{other_node}"
[vrf.red]
rd = "65000:{idx}"
route_targets = ["65000:100"]
netns = "{vrf_ns}"
static = [{{ prefix = "172.16.{idx}.0/24", dev = "lan0" }}]
"""
        lab.start_pe("b", b, "10.200.0.2", conf["b"])
        lab.start_pe("a", a, "10.200.0.1", conf["a"], peer="10.200.0.2:4500")
        for ns in (b, lab.n("bred"), lab.n("bhost")):
            lab.procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-s", "-p", "5201"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: lab.ping(a, "10.99.0.2"), 30, "the private network")
        wait_for(lambda: lab.ping(lab.n("ahost"), "172.16.2.5"), 30, "the VRF path")
        load = round(os.getloadavg()[0], 2)
        cases = (("plain private network (TUN namespace to TUN namespace)", a, "10.99.0.2", "10.99.0.1"),
                 ("L3VPN: VRF namespace to VRF namespace", lab.n("ared"), "172.16.2.1", "172.16.1.1"),
                 ("L3VPN: host behind VRF to host behind VRF", lab.n("ahost"), "172.16.2.5", "172.16.1.5"))
        for title, ns, server, bind in cases:
            try:
                rows[title] = iperf(lab, ns, server, bind, seconds)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                rows[title] = {"error": str(exc)[:300]}
        rows["_load_before"] = load
        v = control(lab, "a", "vrf_ls")[0]
        rows["_vrf_counters_a"] = {k: v["counters"][k] for k in ("packets_out", "bytes_out", "packets_in")}
        return rows
    finally:
        lab.close()


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    frr = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "frr"], capture_output=True, text=True).stdout
    gobgp = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "gobgpd"], capture_output=True, text=True).stdout
    ip3 = subprocess.run(["iperf3", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem / 2**20, 1), "kernel": platform.release(),
            "python": platform.python_version(), "frr": frr, "gobgpd": gobgp, "iperf3": ip3,
            "host": socket.gethostname()}


def markdown(r: dict) -> str:
    m = r["machine"]
    out = [f"# L3VPN bench (bench/l3vpn/run.py)\n",
           f"- date: {r['date']}",
           f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB, Linux {m['kernel']}, "
           f"Python {m['python']}; FRR {m['frr']}, GoBGP {m['gobgpd']}, {m['iperf3']}",
           f"- load average before: {r['load_before']} (other jobs shared the machine; figures are of one run)",
           "", f"## VPN route convergence: {r['routes']:,} VPNv4 prefixes from an FRR PE", "",
           "All receivers peer with the same FRR source (iBGP, VPNv4) and are up before its bgpd starts; "
           "times are seconds from starting the source's bgpd; each receiver is polled by its own thread "
           "(control socket, `vtysh ... json`, `gobgp global rib summary`) as fast as it answers, so a figure is "
           "an upper bound by one probe's time.", "",
           "| receiver | first route | all routes | first to all |", "|---|---|---|---|"]
    for k, v in r["convergence"].items():
        if not k.startswith("_"):
            out.append(f"| {k} | {v['first_s']} | {v['all_s']} | {v['convergence_s']} |")
    w = r["convergence"]["_weftnet_internal"]
    out += ["", f"The weftnet daemon's own clock (`weft status --json`, l3vpn): {w['vpn_routes_in']:,} VPN routes "
            f"from the first to the last in {w['first_vpn_route_to_last_s']} s (parsed, best path, imported into "
            f"the VRF table); the namespace's table complete {w['first_vpn_route_to_kernel_done_s']} s after the "
            "first. While it works through one large read the daemon answers no control request, which is why its "
            "probe shows 'first' and 'all' together."]
    out += ["", "Goal (issue 13): < 5 s into the VRF tables. 'weftnet kernel' is when the VRF namespace's "
            "routing table held all of them (rtnetlink requests in batches of 256, one acknowledgement per route).", "",
            f"## Throughput: one TCP stream, {r['seconds']} s (iperf3), weftnet PE to weftnet PE over a veth underlay",
            "", "| path | Gbit/s | retransmits |", "|---|---|---|"]
    for k, v in r["throughput"].items():
        if k.startswith("_"):
            continue
        out.append(f"| {k} | {v.get('gbit_s', 'error: ' + v.get('error', ''))} | {v.get('retransmits', '')} |")
    out += ["", "Client, server and both daemons share the 2 cores, so each figure is the cost of both ends on one "
            "machine, not a link speed. The rows were measured one after the other in one run; compare them with "
            "each other, not with bench/results/dataplane.md, whose plain-network figure was taken on a quieter "
            "machine (see the load average above).", ""]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--routes", type=int, default=10_000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--skip-throughput", action="store_true")
    a = p.parse_args()
    missing = have_tools()
    if missing:
        print(f"bench: {missing}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="weft-l3bench-"))
    try:
        return _run(a, work)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _run(a, work: Path) -> int:
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "load_before": round(os.getloadavg()[0], 2), "routes": a.routes, "seconds": a.seconds}
    report["convergence"] = convergence(a.routes, work)
    print(json.dumps(report["convergence"], indent=1), flush=True)
    report["throughput"] = {} if a.skip_throughput else throughput(a.seconds, work)
    print(json.dumps(report["throughput"], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "l3vpn.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "l3vpn.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
