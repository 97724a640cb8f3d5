"""Three weftnet VTEPs, three pods each, one layer-2 segment (VNI 100) by EVPN alone; A reflects routes for B and C.

Run twice: on a plain underlay (VTEPs on the hub addresses), and as the
Kubernetes-style scenario of issue 12 across a WAN: every BGP session is to a
node ID and every VTEP an overlay address, so routes and frames all travel in
weftnet's encrypted sessions.

    hub bridge (underlay 10.80.0.0/24) ── A (10.80.0.1, route reflector) ── pods A1..A3
                                       ── B (10.80.0.2, client of A)     ── pods B1..B3
                                       ── C (10.80.0.3, client of A)     ── pods C1..C3

B and C have no session with each other: everything they learn of each other
comes through A (RFC 4456: ORIGINATOR_ID and CLUSTER_LIST set, next hop kept,
so traffic goes straight from VTEP to VTEP). Every pod pings every other pod.
Needs root and iproute2; skipped otherwise.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest

from bgp_exabgp import crosscheck
from bgp_lab import Lab, can_netns, sh, wait_for

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not can_netns(), reason="needs root and iproute2 (ip, bridge)")]

HOSTS = {"A": "10.80.0.1", "B": "10.80.0.2", "C": "10.80.0.3"}


def conf(host: str, ids: dict | None = None) -> str:
    """Underlay mode without ``ids``; overlay mode (peers by node ID, VTEP = overlay address) with them."""
    me = HOSTS[host]
    peers = [h for h in HOSTS if h != host] if host == "A" else ["A"]
    out = ""
    if ids:
        rules = ",\n".join([f'  {{ proto = "tcp", port = 10179, host = "{ids[h]["node_id"]}" }}' for h in peers]
                           # VXLAN from every other VTEP: B and C exchange frames directly, not through A
                           + [f'  {{ proto = "udp", port = 4789, host = "{ids[h]["node_id"]}" }}'
                              for h in HOSTS if h != host])
        out += f"[overlay]\nfirewall.inbound = [\n{rules},\n  {{ proto = \"icmpv6\", port = \"any\", host = \"any\" }},\n]\n"
    out += f"""
[bgp]
asn = 65000
router_id = "{me}"
listen = "{'::' if ids else me}"
port = 10179
hold_time = 9
connect_retry = 1
families = ["evpn"]
"""
    for p in peers:
        where = f'node = "{ids[p]["node_id"]}"' if ids else f'address = "{HOSTS[p]}"'
        out += f"""[[bgp.peers]]
{where}
remote_as = 65000
port = 10179
route_reflector_client = {"true" if host == "A" else "false"}
"""
    return out + f"""[[bgp.evpn]]
vni = 100
bridge = "br100"
vxlan = "vxlan100"
{f'local_vtep = "{ids[host]["address"]}"' if ids else ""}
"""


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, "bm")
    try:
        yield lab
    except BaseException:
        print(lab.dump_logs())
        raise
    finally:
        lab.close()


@pytest.mark.parametrize("mode", ["underlay", pytest.param("overlay", marks=pytest.mark.skipif(
    not os.path.exists("/dev/net/tun"), reason="the overlay interface needs /dev/net/tun"))])
def test_three_vteps_nine_pods_one_segment(lab, mode):
    hub = lab.add_ns("H")
    sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", hub, "link", "set", "br0", "up")
    states, pods = {}, {}
    for i, (host, addr) in enumerate(HOSTS.items(), start=1):
        ns = lab.add_ns(host)
        lab.link(ns, "u0", hub, f"h{host}")
        sh("ip", "-n", hub, "link", "set", f"h{host}", "master", "br0")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "u0")
        sh("ip", "-n", ns, "link", "add", "br100", "type", "bridge")
        sh("ip", "-n", ns, "link", "set", "br100", "up")
        for j in range(1, 4):
            pod = f"{host}{j}"
            pods[pod] = (lab.container(pod, ns, "br100", f"10.100.0.{i * 10 + j}/24", f"02:00:00:00:0{i}:0{j}"),
                         f"10.100.0.{i * 10 + j}")
            if mode == "overlay":  # VXLAN over IPv6 inside the overlay's 1280-octet MTU
                sh("ip", "-n", pods[pod][0], "link", "set", "eth0", "mtu", "1200")
        states[host] = (ns, lab.weft_init(host, "" if mode == "overlay" else conf(host)))
    vtep = dict(HOSTS)
    if mode == "overlay":
        ids = {h: json.loads(lab.weft(st, "id", "--json")) for h, (_, st) in states.items()}
        vtep = {h: ids[h]["address"] for h in HOSTS}
        for host, (_, st) in states.items():
            with open(st / "config.toml", "a") as f:
                f.write(conf(host, ids))
        for host, (ns, st) in states.items():  # the overlay joins B and C through A
            peer = () if host == "A" else ("--peer", f"{HOSTS['A']}:4500")
            lab.weft_up(ns, st, ("--listen", HOSTS[host], "--port", "4500", *peer))
    else:
        for ns, st in states.values():
            lab.weft_up(ns, st)
    a_state = states["A"][1]
    wait_for(lambda: all(p["state"] == "Established" for p in lab.weft_json(a_state, "bgp", "summary")["peers"]), 60,
             "A's sessions with B and C")
    # C learned B's inclusive-multicast route through A, reflected
    c_state = states["C"][1]

    def reflected():
        rows = lab.weft_json(c_state, "bgp", "routes", "--afi", "evpn")["evpn"]
        return [r for r in rows if r.get("type") == 3 and r.get("originator") == vtep["B"]]

    r = wait_for(reflected, 60, "B's type-3 route at C")[0]
    assert r["next_hop"] == vtep["B"] and r["source"] in ("10.80.0.1", ids["A"]["node_id"] if mode == "overlay" else "")
    assert r["attributes"]["originator_id"] == "10.80.0.2" and r["attributes"]["cluster_list"] == ["10.80.0.1"]
    for host, (ns, _) in states.items():
        wait_for(lambda ns=ns: sh("ip", "netns", "exec", ns, "bridge", "fdb", "show", "dev", "vxlan100").stdout
                 .count("00:00:00:00:00:00 dst") == 2, 30, f"{host}'s flood entries for both other VTEPs")
    # every pod reaches every other pod (the first packets flood, then MAC routes make them unicast)
    for (p, (src, _)), (q, (_, dst)) in itertools.permutations(pods.items(), 2):
        wait_for(lambda: lab.ping(src, dst), 30, f"{p} to ping {q}")
    # the MACs were learned by EVPN: C's FDB sends B's pods straight to B's VTEP
    wait_for(lambda: all(f"02:00:00:00:02:0{j} dst {vtep['B']}" in sh("ip", "netns", "exec", states["C"][0], "bridge",
                                                                    "fdb", "show", "dev", "vxlan100").stdout
                         for j in range(1, 4)), 30, "B's MACs in C's FDB")
    # every UPDATE the daemon sent to the real peer decodes the same in exabgp's parser
    assert crosscheck(lab.sent_updates()) >= (2 if mode == "underlay" else 0)
