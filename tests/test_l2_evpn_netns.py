"""EVPN inside the overlay: three weftnet hosts of one layer-2 network run BGP EVPN with each other,
the BGP sessions carried inside weftnet's encrypted overlay (each peer named by its node ID, reached
at its overlay address on weft0), and the EVPN routes steer the layer-2 switch: remote MACs come from
type-2 routes instead of flooding and learning, and ARP is answered from their MAC/IP bindings.

The topology is tests/test_l2_netns.py's without the fabrics: hosts H1-H3 on a hub, three pods on
each host's bridge, network "pods" (10.9.0.0/16, layer 2). Each host adds

    [bgp] asn 65000, router_id 10.9.0.h, listen "::" port 10179, family evpn
    [[bgp.peers]] node = the other two hosts' node IDs (iBGP full mesh)
    [[bgp.evpn]] vni 100 on bridge wb-pods, local VTEP 10.9.0.h (its address in the network)
    [overlay] inbound TCP 10179 (BGP) besides ICMPv6

Needs root, /dev/net/tun and iproute2; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from test_l2_netns import Lab, finish, pod_ip, pod_mac, sh, wait_for, weft

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip") and shutil.which("bridge")),
        reason="needs root, /dev/net/tun and iproute2's ip and bridge (the test makes its own namespaces)",
    ),
]

BGP = """
[overlay]
firewall.inbound = [ {{ proto = "icmpv6", port = "any", host = "any" }}, {{ proto = "tcp", port = 10179, host = "any" }} ]

[bgp]
asn = 65000
router_id = "10.9.0.{h}"
listen = "::"
port = 10179
families = ["evpn"]
connect_retry = 1.0
{peers}
[[bgp.evpn]]
vni = 100
bridge = "wb-pods"
local_vtep = "10.9.0.{h}"
"""
PEER = """
[[bgp.peers]]
node = "{node}"
remote_as = 65000
port = 10179
"""


class EvpnLab(Lab):
    def add_ns(self, what: str) -> str:
        ns = super().add_ns(what)
        if what in ("H1", "H2", "H3"):
            self.ipv6(ns, True)  # weft0 carries the BGP sessions over IPv6 overlay addresses
        return ns

    def up(self, h: int) -> None:
        super().up(h)
        # The bridge itself stays IPv4-only, as in the other test: no stray neighbour discovery.
        sh("ip", "netns", "exec", self.name(f"H{h}"), "sh", "-c",
           "echo 1 > /proc/sys/net/ipv6/conf/wb-pods/disable_ipv6")

    def build(self) -> None:
        super().build()
        nodes = {h: json.loads(weft(self.state[f"H{h}"], "id", "--json"))["node_id"] for h in (1, 2, 3)}
        for h in (1, 2, 3):
            peers = "".join(PEER.format(node=nodes[o]) for o in (1, 2, 3) if o != h)
            with open(self.state[f"H{h}"] / "config.toml", "a") as f:
                f.write(BGP.format(h=h, peers=peers))

    def bgp(self, host: str) -> dict:
        return json.loads(weft(self.state[host], "bgp", "summary", "--json"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = EvpnLab(tmp_path_factory.mktemp("l2evpn"), fabrics=(), tag="ev")
    try:
        lab.build()
        for h in (1, 2, 3):
            lab.up(h)
        yield lab
    finally:
        lab.close()


def test_bgp_sessions_between_members_run_inside_the_overlay(lab):
    for host in ("H1", "H2", "H3"):
        wait_for(lambda: [p["state"] for p in lab.bgp(host)["peers"]] == ["Established"] * 2, 60,
                 f"{host}'s two BGP sessions")
    summary = lab.bgp("H1")
    # The peers are node IDs, reached at their key-derived overlay addresses through weft0.
    assert all(p["address"].startswith("fd77:6566:") for p in summary["peers"])
    assert all(p["families"] == ["l2vpn/evpn"] or "evpn" in "".join(p["families"]) for p in summary["peers"])


def test_every_pod_pings_every_other_pod_with_evpn(lab):
    pods = [(h, i) for h in (1, 2, 3) for i in (1, 2, 3)]
    procs = [lab.pingall(f"P{h}{i}", [pod_ip(*o) for o in pods if o != (h, i)]) for h, i in pods]
    for p in procs:
        assert "all 8 answered" in finish(p)
    # Remote pods' MACs are known from type-2 routes: kind "evpn", not learned from frames.
    for h, other in (("H2", 1), ("H3", 2)):
        wait_for(lambda: {m["mac"]: m["kind"] for m in lab.status(h)["macs"]}.get(pod_mac(other, 3)) == "evpn", 30,
                 f"{h} to hold pod {other}3's MAC from EVPN")


def test_a_host_known_only_through_evpn_is_answered_locally(lab):
    # A new pod on H1 talks only to its neighbour on the same bridge: its ARP never crosses the WAN
    # (H1 answers it, the asked address being local), but H1's switch and bridge saw it, and EVPN
    # carries its MAC and IP to the other hosts.
    pod = lab.add_ns("P14")
    lab.add_host_on(pod, "eth0", pod_mac(1, 4), f"{pod_ip(1, 4)}/16", lab.name("H1"), "p4", "wb-pods")
    finish(lab.pingall("P14", [pod_ip(1, 1)]))
    try:
        wait_for(lambda: any(b["ip"] == pod_ip(1, 4) and b["kind"] == "evpn" for b in lab.status("H2")["bindings"]),
                 30, "H2 to hold P14's MAC/IP route")
    except AssertionError:
        h1 = lab.bgp("H1")
        raise AssertionError(f"H1 evpn {h1.get('evpn')} dataplane {h1.get('dataplane')}; H1 l2 {lab.status('H1')['l2']}"
                             f"; H1 neighbors {lab.status('H1')['neighbors']}") from None
    before = {h: lab.status(h) for h in ("H1", "H2")}
    sh("ip", "-n", lab.name("P21"), "neigh", "flush", "all")
    assert "all 1 answered" in finish(lab.pingall("P21", [pod_ip(1, 4)]))
    after = {h: lab.status(h) for h in ("H1", "H2")}
    assert after["H2"]["l2"]["arp_suppressed"] > before["H2"]["l2"]["arp_suppressed"]
    assert after["H2"]["l2"]["flooded"] == before["H2"]["l2"]["flooded"]
    assert after["H1"]["l2"]["floods_in"] == before["H1"]["l2"]["floods_in"]
    st = json.loads(weft(lab.state["H2"], "status", "--json"))
    assert st["bgp"]["dataplane"]["remote_installed"] >= 1 and st["bgp"]["dataplane"]["remote_refused"] == 0
