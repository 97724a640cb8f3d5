"""EVPN inside the weftnet overlay: two sites peer by node ID, BGP and VXLAN both ride the encrypted sessions.

    hub bridge (underlay 10.81.0.0/24) ── A (weft, overlay address fdA…) ── pod A1 (10.100.0.1)
                                       ── B (weft, overlay address fdB…) ── pod B1 (10.100.0.2)

Each daemon names the other in ``[[bgp.peers]] node = "wn1…"``: the BGP session
is TCP between the two overlay addresses on weft0 (so inside Noise IK
sessions), and each EVPN instance uses its node's overlay address as VTEP, so
the VXLAN packets between the pods travel the overlay too. The overlay
firewall admits only BGP (TCP 10179) and VXLAN (UDP 4789) from the other node.
Needs root, /dev/net/tun and iproute2; skipped otherwise.
"""

from __future__ import annotations

import json
import os

import pytest

from bgp_exabgp import crosscheck
from bgp_lab import Lab, can_netns, sh, wait_for

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not (can_netns() and os.path.exists("/dev/net/tun")),
                                 reason="needs root, /dev/net/tun and iproute2")]

UNDERLAY = {"A": "10.81.0.1", "B": "10.81.0.2"}


def conf(me: str, my_address: str, other_node: str) -> str:
    return f"""
[overlay]
firewall.inbound = [
  {{ proto = "tcp", port = 10179, host = "{other_node}" }},
  {{ proto = "udp", port = 4789, host = "{other_node}" }},
  {{ proto = "icmpv6", port = "any", host = "any" }},
]
[bgp]
asn = 65000
router_id = "{UNDERLAY[me]}"
listen = "::"
port = 10179
hold_time = 9
connect_retry = 1
families = ["evpn"]
[[bgp.peers]]
node = "{other_node}"
remote_as = 65000
port = 10179
[[bgp.evpn]]
vni = 100
local_vtep = "{my_address}"
bridge = "br100"
vxlan = "vxlan100"
"""


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, "bo")
    try:
        yield lab
    except BaseException:
        print(lab.dump_logs())
        raise
    finally:
        lab.close()


def test_evpn_sessions_and_vxlan_inside_the_overlay(lab):
    hub = lab.add_ns("H")
    sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", hub, "link", "set", "br0", "up")
    ns, states, ids = {}, {}, {}
    for host, addr in UNDERLAY.items():
        ns[host] = lab.add_ns(host)
        lab.link(ns[host], "u0", hub, f"h{host}")
        sh("ip", "-n", hub, "link", "set", f"h{host}", "master", "br0")
        sh("ip", "-n", ns[host], "addr", "add", f"{addr}/24", "dev", "u0")
        sh("ip", "-n", ns[host], "link", "add", "br100", "type", "bridge")
        sh("ip", "-n", ns[host], "link", "set", "br100", "up")
        states[host] = lab.weft_init(host, "")
        ids[host] = json.loads(lab.weft(states[host], "id", "--json"))
    for host, other in (("A", "B"), ("B", "A")):
        with open(states[host] / "config.toml", "a") as f:
            f.write(conf(host, ids[host]["address"], ids[other]["node_id"]))
    pods = {}
    for i, host in enumerate(UNDERLAY, start=1):
        pods[host] = lab.container(f"{host}1", ns[host], "br100", f"10.100.0.{i}/24", f"02:00:00:00:0{i}:01")
        sh("ip", "-n", pods[host], "link", "set", "eth0", "mtu", "1200")  # VXLAN over the overlay's 1280
    lab.weft_up(ns["A"], states["A"], ("--listen", UNDERLAY["A"], "--port", "4500"))
    lab.weft_up(ns["B"], states["B"], ("--listen", UNDERLAY["B"], "--port", "4500", "--peer", f"{UNDERLAY['A']}:4500"))

    def up(host):
        (peer,) = lab.weft_json(states[host], "bgp", "summary")["peers"]
        return peer["state"] == "Established" and peer

    peer = wait_for(lambda: up("A") and up("B"), 90, "the BGP session over the overlay")
    assert peer["address"] == ids["A"]["address"] and peer["peer"] == ids["A"]["node_id"]  # B's view of A
    # the routes carry overlay addresses: B floods to A's overlay address, and the pods talk
    wait_for(lambda: f"00:00:00:00:00:00 dst {ids['A']['address']}" in
             sh("ip", "netns", "exec", ns["B"], "bridge", "fdb", "show", "dev", "vxlan100").stdout, 30,
             "A's overlay address as B's flood entry")
    wait_for(lambda: lab.ping(pods["A"], "10.100.0.2") and lab.ping(pods["B"], "10.100.0.1"), 60,
             "the pods to ping each other across the overlay")
    wait_for(lambda: f"02:00:00:00:02:01 dst {ids['B']['address']}" in
             sh("ip", "netns", "exec", ns["A"], "bridge", "fdb", "show", "dev", "vxlan100").stdout, 30,
             "B's pod MAC in A's FDB towards B's overlay address")
    crosscheck(lab.sent_updates())  # (EVPN with IPv6 next hops: exabgp cannot decode those, see bgp_exabgp.py)
