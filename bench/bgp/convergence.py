#!/usr/bin/env python3
"""Convergence of 10,000 EVPN MAC routes from FRR into a receiving VTEP's kernel FDB: weftnet and FRR side by side.

    sudo .venv/bin/python bench/bgp/convergence.py [--macs 10000]

Topology (namespaces made and removed by the script, names unique per run):

    S: FRR, the source VTEP (10.79.0.1): br100 + vxlan100, one port holding N learned MACs
    W: weftnet (10.79.0.2), R: FRR as the other receiver (10.79.0.3)     all three on one hub bridge

S learns N MACs on its bridge (dynamic FDB entries, added over netlink) and
advertises them as type-2 routes (``advertise-all-vni``). The weftnet daemon
in W and a second FRR in R run as passive iBGP peers of S; S starts with both
neighbours shut down. At t0 one vtysh command enables both: S connects to
each, the sessions come up, the routes flow. The script polls both kernels'
FDBs (iproute2's ``bridge``, cheap) and records when each holds all N MACs as
entries towards S's VTEP: connection, session, UPDATEs and FDB programming,
without either program's start-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from bgp_lab import Lab, sh, wait_for  # noqa: E402

SOURCE = """frr defaults datacenter
hostname s
router bgp 65000
 bgp router-id 10.79.0.1
 no bgp default ipv4-unicast
 neighbor 10.79.0.2 remote-as 65000
 neighbor 10.79.0.2 port 10179
 neighbor 10.79.0.2 shutdown
 neighbor 10.79.0.3 remote-as 65000
 neighbor 10.79.0.3 shutdown
 address-family l2vpn evpn
  neighbor 10.79.0.2 activate
  neighbor 10.79.0.3 activate
  advertise-all-vni
 exit-address-family
"""
RECEIVER = """frr defaults datacenter
hostname r
router bgp 65000
 bgp router-id 10.79.0.3
 no bgp default ipv4-unicast
 neighbor 10.79.0.1 remote-as 65000
 neighbor 10.79.0.1 passive
 address-family l2vpn evpn
  neighbor 10.79.0.1 activate
  advertise-all-vni
 exit-address-family
"""
WEFT = """
[bgp]
asn = 65000
router_id = "10.79.0.2"
listen = "10.79.0.2"
port = 10179
connect_retry = 1
families = ["evpn"]
[[bgp.peers]]
address = "10.79.0.1"
remote_as = 65000
passive = true
[[bgp.evpn]]
vni = 100
bridge = "br100"
vxlan = "vxlan100"
"""


def vtep(ns: str, addr: str, vxlan: bool = True) -> None:
    sh("ip", "-n", ns, "link", "add", "br100", "type", "bridge")
    sh("ip", "-n", ns, "link", "set", "br100", "up")
    if vxlan:
        sh("ip", "-n", ns, "link", "add", "vxlan100", "type", "vxlan", "id", "100", "local", addr, "dstport", "4789",
           "nolearning")
        sh("ip", "-n", ns, "link", "set", "vxlan100", "master", "br100")
        sh("ip", "-n", ns, "link", "set", "vxlan100", "up")


def fdb_count(ns: str, vtep_ip: str) -> int:
    """MAC entries towards ``vtep_ip`` on vxlan100 (iproute2's ``bridge``: a poll must cost little itself)."""
    out = sh("ip", "netns", "exec", ns, "bridge", "fdb", "show", "dev", "vxlan100", check=False).stdout
    return sum(1 for line in out.splitlines() if f"dst {vtep_ip}" in line and not line.startswith("00:00:00:00:00:00"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--macs", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole scenario (fresh namespaces) this often")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    results = [run_once(a.macs) for _ in range(a.runs)]
    summary = {}
    for k in ("weftnet", "frr"):
        vals = sorted(r["seconds_to_full_fdb"].get(k, float("inf")) for r in results)
        after = sorted(r["seconds_from_session_up"][k] for r in results if k in r["seconds_from_session_up"])
        summary[k] = {"median_s": vals[len(vals) // 2], "all_s": vals}
        line = f"{k:8s} median of {a.runs}: {vals[len(vals) // 2]:.2f} s to a full FDB; all: {vals}"
        if after:  # weftnet reports its session uptime; the FRR receiver's is not read
            summary[k]["median_after_session_up_s"] = after[len(after) // 2]
            line += f" ({after[len(after) // 2]:.2f} s after its session came up)"
        print(line)
    if a.json:
        a.json.write_text(json.dumps({"macs": a.macs, "runs": a.runs, "summary": summary, "python": platform.python_version(),
                                      "results": results}, indent=2) + "\n")
    return 0


def run_once(macs: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bgpbench"))
    lab = Lab(tmp, "bb")
    try:
        hub = lab.add_ns("H")
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        nss = {}
        for short, addr in (("S", "10.79.0.1"), ("W", "10.79.0.2"), ("R", "10.79.0.3")):
            ns = nss[short] = lab.add_ns(short)
            lab.link(ns, "u0", hub, f"h{short}")
            sh("ip", "-n", hub, "link", "set", f"h{short}", "master", "br0")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "u0")
        vtep(nss["S"], "10.79.0.1")
        vtep(nss["W"], "10.79.0.2", vxlan=False)
        vtep(nss["R"], "10.79.0.3")
        sh("ip", "-n", nss["S"], "link", "add", "hp0", "type", "veth", "peer", "name", "hp1")
        sh("ip", "-n", nss["S"], "link", "set", "hp0", "master", "br100")
        for d in ("hp0", "hp1"):
            sh("ip", "-n", nss["S"], "link", "set", d, "up")
        src = lab.start_frr(nss["S"], SOURCE)
        from pyroute2 import IPRoute

        with IPRoute(netns=nss["S"], flags=0) as ipr:
            port = ipr.link_lookup(ifname="hp0")[0]
            for i in range(macs):
                mac = (0x020000000000 + i).to_bytes(6, "big").hex(":")
                ipr.fdb("add", ifindex=port, lladdr=mac, flags=0x04, state=0x02)  # master, reachable (learned)
        wait_for(lambda: lab.vtysh(src, "show evpn vni 100 json").get("numMacs", 0) >= macs, 120,
                 "FRR to learn the MACs")
        time.sleep(2)
        state = lab.weft_init("W", WEFT)
        rname = lab.start_frr(nss["R"], RECEIVER)
        lab.weft_up(nss["W"], state)
        wait_for(lambda: lab.weft_json(state, "bgp", "summary")["evpn"], 30, "weftnet's EVPN instance")
        wait_for(lambda: "10.79.0.1" in lab.vtysh(rname, "show bgp l2vpn evpn summary"), 30, "FRR R's neighbour")
        time.sleep(1)
        t0 = time.monotonic()
        sh("vtysh", "-N", src, "-c", "configure terminal", "-c", "router bgp 65000",
           "-c", "no neighbor 10.79.0.2 shutdown", "-c", "no neighbor 10.79.0.3 shutdown")
        done: dict[str, float] = {}
        samples: list[tuple[float, int, int]] = []
        while len(done) < 2 and time.monotonic() - t0 < 120:
            now = time.monotonic() - t0
            w, r = fdb_count(nss["W"], "10.79.0.1"), fdb_count(nss["R"], "10.79.0.1")
            samples.append((round(now, 3), w, r))
            if w >= macs and "weftnet" not in done:
                done["weftnet"] = now
            if r >= macs and "frr" not in done:
                done["frr"] = now
            time.sleep(0.05)
        # when each session came up, on the same monotonic clock: now - its uptime
        summ = lab.weft_json(state, "bgp", "summary")
        up = {"weftnet": time.monotonic() - t0 - summ["peers"][0]["uptime"]}
        result = {"macs": macs, "seconds_to_full_fdb": {k: round(v, 2) for k, v in done.items()},
                  "session_up_at": {k: round(v, 2) for k, v in up.items()},
                  "seconds_from_session_up": {k: round(done[k] - up[k], 2) for k in done if k in up},
                  "weftnet_routes": summ["routes"], "weftnet_dataplane": summ.get("dataplane"),
                  "python": platform.python_version(), "samples": samples[::10]}
        for k in ("weftnet", "frr"):
            v = done.get(k)
            extra = f" (session up at {up[k]:.2f} s: {v - up[k]:.2f} s after it)" if v is not None and k in up else ""
            print(f"{k:8s} {macs} MACs in the kernel FDB after " + (f"{v:.2f} s" if v is not None else "> 120 s")
                  + extra)
        return result
    finally:
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
