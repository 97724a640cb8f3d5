"""L3VPN end to end: two weftnet PEs, FRR CEs, an FRR route reflector and GoBGP, in namespaces.

The topology is tests/l3vpn_lab.py's: two customers (red, blue), two sites each, both inside
10.0.0.0/24; every CE is an FRR instance speaking eBGP to its weftnet PE; the PEs exchange VPNv4
through an FRR route reflector (which also originates a VPNv4 route of its own, as a control-plane
PE) and carry packets between VRFs as labelled messages in their encrypted session. GoBGP is an
iBGP VPNv4 peer of pe1. A hub-and-spoke VPN (static site routes) shares the PEs. Needs root,
/dev/net/tun, iproute2, frr and gobgpd (CI installs them); skipped otherwise.
"""

from __future__ import annotations

import json
import time

import pytest

from l3vpn_lab import Lab, RTS, build_customers, have_tools, pe_vrf_config, sh, wait_for

MISSING = have_tools()
pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]

HUB = """
[vrf.hub]
rd = "65000:50"
import_targets = ["65000:2"]
export_targets = ["65000:1"]
netns = "{ns}"
static = [{{ prefix = "172.16.0.0/24", dev = "lan0" }}]
[vrf.spoke-a]
rd = "65000:51"
import_targets = ["65000:1"]
export_targets = ["65000:2"]
netns = "{ns_a}"
static = [{{ prefix = "172.16.1.0/24", dev = "lan0" }}]
"""
SPOKE_B = """
[vrf.spoke-b]
rd = "65000:52"
import_targets = ["65000:1"]
export_targets = ["65000:2"]
netns = "{ns}"
static = [{{ prefix = "172.16.2.0/24", dev = "lan0" }}]
"""


def pe_config(lab: Lab, me: int, other_node: str, peers: list[tuple[str, int]]) -> str:
    peer_tables = "".join(f'\n[[bgp.peers]]\naddress = "{a}"\nremote_as = 65000\nhold_time = 9\n' for a, _ in peers)
    return f"""
[bgp]
asn = 65000
router_id = "10.251.0.{me}"
listen = "10.251.0.{me}"
port = 179
families = ["vpnv4", "vpnv6"]
hold_time = 9
{peer_tables}
[l3vpn.pes]
"10.251.0.{3 - me}" = "{other_node}"
""" + pe_vrf_config(lab, me)


RR_CONF = """frr defaults datacenter
hostname rr
route-map RT permit 10
 set extcommunity rt 65000:100
exit
router bgp 65000
 bgp router-id 10.251.0.3
 bgp cluster-id 10.251.0.3
 no bgp ebgp-requires-policy
 neighbor 10.251.0.1 remote-as 65000
 neighbor 10.251.0.1 timers 3 9
 neighbor 10.251.0.2 remote-as 65000
 neighbor 10.251.0.2 timers 3 9
 address-family ipv4 unicast
  no neighbor 10.251.0.1 activate
  no neighbor 10.251.0.2 activate
 exit-address-family
 address-family ipv4 vpn
  neighbor 10.251.0.1 activate
  neighbor 10.251.0.1 route-reflector-client
  neighbor 10.251.0.2 activate
  neighbor 10.251.0.2 route-reflector-client
  network 10.9.0.0/24 rd 65000:9 label 100 route-map RT
 exit-address-family
!
"""

GOBGP_CONF = """[global.config]
  as = 65000
  router-id = "10.251.0.4"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.251.0.1"
    peer-as = 65000
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-unicast"
"""


def build(lab: Lab) -> None:
    if True:
        core = lab.add_ns("core")
        sh("ip", "-n", core, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", core, "link", "set", "br0", "up")
        for i, name in enumerate(("pe1", "pe2", "rr", "gb"), start=1):
            ns = lab.add_ns(name)
            lab.link(core, f"p{i}", "", ns, "u0", f"10.251.0.{i}/24")
            sh("ip", "-n", core, "link", "set", f"p{i}", "master", "br0")
        for pe in (1, 2):
            build_customers(lab, pe)
        # hub-and-spoke sites: a host on a LAN of the VRF's namespace
        for pe, vrf, lan in ((1, "hub", 0), (1, "sa", 1), (2, "sb", 2)):
            v, h = lab.add_ns(f"p{pe}{vrf}"), lab.add_ns(f"h{pe}{vrf}")
            lab.link(v, "lan0", f"172.16.{lan}.1/24", h, "eth0", f"172.16.{lan}.5/24")
            sh("ip", "-n", h, "route", "add", "default", "via", f"172.16.{lan}.1")
        nodes = {pe: lab.init_pe(pe) for pe in ("pe1", "pe2")}
        lab.start_frr(lab.n("rr"), RR_CONF)
        lab.start_gobgp(lab.n("gb"), GOBGP_CONF, 50051 + (lab.tag.__hash__() % 1000))
        c1 = pe_config(lab, 1, nodes["pe2"], [("10.251.0.3", 0), ("10.251.0.4", 0)])
        c1 += HUB.format(ns=lab.n("p1hub"), ns_a=lab.n("p1sa"))
        c1 += '\n[metrics]\nlisten = "127.0.0.1:9477"\n'  # in pe1's namespace
        c2 = pe_config(lab, 2, nodes["pe1"], [("10.251.0.3", 0)]) + SPOKE_B.format(ns=lab.n("p2sb"))
        lab.start_pe("pe1", lab.n("pe1"), "10.251.0.1", c1)
        lab.start_pe("pe2", lab.n("pe2"), "10.251.0.2", c2, peer="10.251.0.1:4500")
        lab.nodes = nodes


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("l3vpn"))
    try:
        build(lab)
        yield lab
    finally:
        lab.close()


def vrf(lab, pe, name):
    return next(v for v in lab.weft_json(pe, "vrf", "ls") if v["name"] == name)


def table(lab, pe, name):
    return {r["prefix"]: r for r in lab.weft_json(pe, "vrf", "routes", name)["routes"]}


def ping_until(lab, ns, dst, timeout=40.0):
    wait_for(lambda: lab.ping(ns, dst), timeout, f"an echo reply from {dst} in {ns}")


def test_hosts_of_one_customer_reach_each_other_and_customers_stay_apart(lab):
    h = {k: lab.n(k) for k in ("h1red", "h2red", "h1blue", "h2blue")}
    # CE routes travel CE -> PE (eBGP) -> RR (VPNv4) -> PE -> CE; the first pings wait for that.
    ping_until(lab, h["h1red"], "10.0.0.200")
    ping_until(lab, h["h2red"], "10.0.0.10")
    ping_until(lab, h["h1blue"], "10.0.0.130")
    ping_until(lab, h["h2blue"], "10.0.0.10")
    before = {(pe, c): vrf(lab, pe, c)["counters"] for pe in ("pe1", "pe2") for c in ("red", "blue")}
    # Red pings blue's site-2 address, blue pings red's: no route in their own VRF, nothing crosses.
    assert not lab.ping(h["h1red"], "10.0.0.130", 2)
    assert not lab.ping(h["h1blue"], "10.0.0.200", 2)
    after = {(pe, c): vrf(lab, pe, c)["counters"] for pe in ("pe1", "pe2") for c in ("red", "blue")}
    for pe in ("pe1", "pe2"):
        for c in ("red", "blue"):
            assert after[(pe, c)]["packets_in"] == before[(pe, c)]["packets_in"], (pe, c)
    # the red VRF of pe1 saw the packets from its CE and found no route; the other side got nothing
    assert after[("pe1", "red")]["packets_out"] == before[("pe1", "red")]["packets_out"]
    # red's traffic went to pe2's red VRF only, from pe1 (per-PE counters name the sender)
    assert set(after[("pe2", "red")]["peers"]) == {lab.nodes["pe1"]}


def test_vrf_tables_show_rd_rt_and_labels_and_the_namespace_holds_the_routes(lab):
    ping_until(lab, lab.n("h1red"), "10.0.0.200")
    red2_label = vrf(lab, "pe2", "red")["label"]
    t = table(lab, "pe1", "red")
    assert t["10.0.0.0/25"]["kind"] == "local"
    remote = next(p for p in t["10.0.0.192/26"]["paths"] if p["best"])
    assert (remote["type"], remote["rd"], remote["label"], remote["rts"], remote["nexthop"]) == (
        "remote", "65000:21", red2_label, [RTS["red"]], "10.251.0.2")
    assert remote["pe"] == lab.nodes["pe2"]
    k = json.loads(lab.weft("pe1", "vrf", "routes", "red", "--kernel", "--json"))["kernel"]
    assert k["10.0.0.192/26"]["dev"] == "l3-red"
    assert k["10.0.0.0/25"]["via"] == "192.168.1.2"
    text = lab.weft("pe1", "vrf", "ls")
    assert f"red  RD 65000:11  label {vrf(lab, 'pe1', 'red')['label']}" in text and "CE 192.168.1.2 AS 65101: Established" in text
    assert "> remote" in lab.weft("pe1", "vrf", "routes", "red")
    assert "no VRF named 'nope'" in lab.weft("pe1", "vrf", "routes", "nope", check=False)
    vpn = lab.weft_json("pe1", "bgp", "routes", "--afi", "vpnv4")["vpnv4"]
    assert any(r["rd"] == "65000:21" and r["prefix"] == "10.0.0.192/26" and r["label"] == red2_label
               for r in vpn)


def test_frr_and_gobgp_see_weftnet_vpn_routes_with_rd_rt_and_label(lab):
    red1 = vrf(lab, "pe1", "red")["label"]

    def frr_has():
        d = lab.vtysh_json(lab.n("rr"), "show bgp ipv4 vpn rd 65000:11 10.0.0.0/25 json")
        paths = d.get("65000:11", {}).get("paths", [])
        return paths and paths[0]
    path = wait_for(frr_has, 30, "pe1's red route at the FRR route reflector")
    assert path["extendedCommunity"]["string"] == f"RT:{RTS['red']}"
    assert path["remoteLabel"] == red1
    assert path["nexthops"][0]["ip"] == "10.251.0.1"
    out = wait_for(lambda: "65000:11" in (o := lab.gobgp(lab.n("gb"), "global", "rib", "-a", "vpnv4")) and o, 30,
                   "pe1's routes in GoBGP")
    line = next(l for l in out.splitlines() if "65000:11:10.0.0.0/25" in l)
    assert f"[{red1}]" in line and f"Extcomms: [{RTS['red']}]" in line and "10.251.0.1" in line


def test_vpn_routes_from_frr_and_gobgp_arrive_with_rd_rt_and_label(lab):
    lab.gobgp(lab.n("gb"), "global", "rib", "-a", "vpnv4", "add", "10.8.0.0/24", "label", "200", "rd", "65000:8",
              "rt", RTS["red"], "nexthop", "10.251.0.4")
    t = wait_for(lambda: (t := table(lab, "pe1", "red")).get("10.8.0.0/24") and "10.9.0.0/24" in t and t, 30,
                 "FRR's and GoBGP's VPNv4 routes in pe1's red VRF")
    frr = t["10.9.0.0/24"]["paths"][0]
    gb = t["10.8.0.0/24"]["paths"][0]
    assert (frr["rd"], frr["label"], frr["rts"], frr["nexthop"]) == ("65000:9", 100, [RTS["red"]], "10.251.0.3")
    assert (gb["rd"], gb["label"], gb["rts"], gb["nexthop"]) == ("65000:8", 200, [RTS["red"]], "10.251.0.4")
    # neither next hop is a weftnet PE: kept and shown, never forwarded to, not in the namespace
    assert frr["type"] == gb["type"] == "unresolved"
    assert "10.8.0.0/24" not in table(lab, "pe1", "blue")
    k = json.loads(lab.weft("pe1", "vrf", "routes", "red", "--kernel", "--json"))["kernel"]
    assert "10.8.0.0/24" not in k and "10.9.0.0/24" not in k
    # imported routes are advertised to the VRF's CE: FRR's route reaches ce1red over eBGP
    ce = wait_for(lambda: lab.vtysh_json(lab.n("c1red"), "show bgp ipv4 unicast 10.0.0.192/26 json").get("paths"),
                  30, "the remote site's route at ce1red")
    assert ce[0]["aspath"]["string"] == "65000 65102"


def test_hub_and_spoke_spokes_reach_the_hub_but_not_each_other(lab):
    ping_until(lab, lab.n("h1sa"), "172.16.0.5")  # spoke-a -> hub, inside pe1
    ping_until(lab, lab.n("h2sb"), "172.16.0.5")  # spoke-b (pe2) -> hub (pe1)
    assert not lab.ping(lab.n("h1sa"), "172.16.2.5", 2)
    assert not lab.ping(lab.n("h2sb"), "172.16.1.5", 2)
    assert set(table(lab, "pe2", "spoke-b")) == {"172.16.0.0/24", "172.16.2.0/24"}
    assert set(table(lab, "pe1", "hub")) == {"172.16.0.0/24", "172.16.1.0/24", "172.16.2.0/24"}


def test_metrics_show_the_neighbours_and_the_vrfs(lab):
    from opstools import check_documented, sample, scrape_netns

    ping_until(lab, lab.n("h1red"), "10.0.0.200")
    before = vrf(lab, "pe1", "red")
    summ = lab.weft_json("pe1", "bgp", "summary")
    fams = scrape_netns(lab.n("pe1"))
    check_documented(fams, "BGP")
    check_documented(fams, "VRFs")
    # the route reflector (FRR) and GoBGP: established, with the prefix counts weft bgp summary shows
    for p in summ["peers"]:
        g = {"instance": "global", "peer": p["peer"]}
        assert sample(fams, "weftnet_bgp_peer_state", **g, state="established") == 1, p["peer"]
        assert sample(fams, "weftnet_bgp_peer_prefixes", **g, direction="received") == p["prefixes_received"]
        assert sample(fams, "weftnet_bgp_peer_prefixes", **g, direction="sent") == p["prefixes_sent"] > 0
    assert {p["peer"] for p in summ["peers"]} == {"10.251.0.3", "10.251.0.4"}
    assert sample(fams, "weftnet_bgp_peer_prefixes", instance="global", peer="10.251.0.4", direction="received") >= 1
    # each VRF's CE session (FRR) is a neighbour of its own speaker
    ce = before["ce"][0]
    assert sample(fams, "weftnet_bgp_peer_state", instance="vrf:red", peer=ce["peer"], state="established") == 1
    assert sample(fams, "weftnet_bgp_peer_prefixes", instance="vrf:red", peer=ce["peer"],
                  direction="received") == ce["prefixes_received"] >= 1
    # routes per VRF by kind, as weft vrf ls counts them; traffic at least what it showed just before
    for kind, n in before["routes"].items():
        assert sample(fams, "weftnet_vrf_routes", vrf="red", kind=kind) == n, kind
    assert before["routes"]["local"] >= 1 and before["routes"]["remote"] >= 1
    for d in ("in", "out"):
        assert sample(fams, "weftnet_vrf_packets", vrf="red", direction=d) >= before["counters"][f"packets_{d}"] > 0
        assert sample(fams, "weftnet_vrf_bytes", vrf="red", direction=d) >= before["counters"][f"bytes_{d}"] > 0
    assert sample(fams, "weftnet_vrf_routes", vrf="hub", kind="vrf") >= 1  # spoke-a's route leaked in on this PE


def test_withdrawals_and_a_lost_ce_session_propagate_within_the_hold_time(lab):
    ping_until(lab, lab.n("h1blue"), "10.0.0.130")
    # 1. the CE withdraws its site: gone from the far PE's VRF, its namespace and the far CE
    lab.vtysh(lab.n("c2blue"), "conf t", "router bgp 65202", "address-family ipv4 unicast", "no network 10.0.0.128/26")
    wait_for(lambda: "10.0.0.128/26" not in table(lab, "pe1", "blue"), 15, "the withdrawal at pe1")
    wait_for(lambda: not lab.vtysh_json(lab.n("c1blue"), "show bgp ipv4 unicast 10.0.0.128/26 json").get("paths"),
             15, "the withdrawal at ce1blue")
    assert not lab.ping(lab.n("h1blue"), "10.0.0.130", 1)
    # 2. the CE link goes silent (no FIN, no RST): the hold timer (9 s) ends the session, the routes go
    t0 = time.monotonic()
    sh("ip", "-n", lab.n("c2red"), "link", "set", "pe0", "down")
    wait_for(lambda: "10.0.0.192/26" not in table(lab, "pe1", "red"), 9 + 15,
             "the lost CE session's routes to leave pe1's red VRF")
    took = time.monotonic() - t0
    assert took < 9 + 15  # the hold time plus a generous margin for a shared machine (docs/l3vpn.md)
    ce_state = next(c for c in vrf(lab, "pe2", "red")["ce"])["state"]
    assert ce_state != "Established"
