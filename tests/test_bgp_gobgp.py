"""GoBGP as a second, independent EVPN peer (eBGP): type-5 routes both ways, by its CLI.

    G (gobgpd, AS 65003, 10.78.0.1) ==veth== W (weft, AS 65000, 10.78.0.2)

A prefix injected with ``gobgp global rib -a evpn add prefix ...`` (route target
65000:500, gateway 10.105.0.1) is learned by weftnet's EVPN instance for VNI
500 and installed as a kernel route via that gateway on the instance's bridge
(RFC 9136's gateway-address model); weftnet's own configured prefix appears in
``gobgp global rib -a evpn`` with weftnet's route target, VNI label and VTEP
next hop; GoBGP's withdrawal removes the route. Needs root, iproute2 and
gobgpd; skipped otherwise.
"""

from __future__ import annotations

import json

import pytest

from bgp_exabgp import crosscheck
from bgp_lab import Lab, can_netns, have_gobgp, sh, wait_for

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not (can_netns() and have_gobgp()), reason="needs root, iproute2 and GoBGP (apt gobgpd)"),
]

API_PORT = 50151

GOBGP_CONF = """
[global.config]
  as = 65003
  router-id = "10.78.0.1"
  port = 179
  local-address-list = ["10.78.0.1"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.78.0.2"
    peer-as = 65000
  [neighbors.transport.config]
    remote-port = 10179
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"
"""

WEFT_CONF = """
[bgp]
asn = 65000
router_id = "10.78.0.2"
listen = "10.78.0.2"
port = 10179
connect_retry = 1
families = ["evpn"]
[[bgp.peers]]
address = "10.78.0.1"
remote_as = 65003
[[bgp.evpn]]
vni = 500
route_targets = ["65000:500"]
bridge = "br500"
vxlan = "vxlan500"
prefixes = ["10.60.0.0/24"]
"""


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, "bg")
    try:
        yield lab
    except BaseException:
        print(lab.dump_logs())
        raise
    finally:
        lab.close()


def gobgp_evpn(lab: Lab, ns: str) -> list[dict]:
    out = json.loads(lab.gobgp(ns, API_PORT, "global", "rib", "-a", "evpn", "-j") or "{}")
    return [p for paths in out.values() for p in paths]


def test_type5_with_gobgp(lab):
    g, w = lab.add_ns("G"), lab.add_ns("W")
    lab.link(g, "u0", w, "u0")
    sh("ip", "-n", g, "addr", "add", "10.78.0.1/24", "dev", "u0")
    sh("ip", "-n", w, "addr", "add", "10.78.0.2/24", "dev", "u0")
    lab.start_gobgp(g, GOBGP_CONF, API_PORT)
    state = lab.weft_init("W", WEFT_CONF)
    lab.weft_up(w, state)
    wait_for(lambda: sh("ip", "-n", w, "link", "show", "br500", check=False).returncode == 0, 30, "weftnet's bridge")
    sh("ip", "-n", w, "addr", "add", "10.105.0.2/24", "dev", "br500")  # the instance's bridge has an address
    wait_for(lambda: lab.weft_json(state, "bgp", "summary")["peers"][0]["state"] == "Established", 60,
             "the session with GoBGP")

    # GoBGP -> weftnet
    lab.gobgp(g, API_PORT, "global", "rib", "-a", "evpn", "add", "prefix", "10.50.0.0/24", "gw", "10.105.0.1",
              "etag", "0", "label", "500", "rd", "65003:500", "rt", "65000:500", "encap", "vxlan", "nexthop", "10.78.0.1")
    lab.gobgp(g, API_PORT, "global", "rib", "-a", "evpn", "add", "prefix", "10.51.0.0/24", "gw", "0.0.0.0",
              "etag", "0", "label", "501", "rd", "65003:501", "rt", "65003:999", "encap", "vxlan", "nexthop", "10.78.0.1")

    def learned():
        rows = lab.weft_json(state, "bgp", "routes", "--afi", "evpn")["evpn"]
        return [r for r in rows if r.get("type") == 5 and r.get("prefix") == "10.50.0.0/24"]

    r = wait_for(learned, 30, "weftnet to learn GoBGP's type-5 route")[0]
    assert r["rd"] == "65003:500" and r["gateway"] == "10.105.0.1" and r["label"] == 500
    assert r["source"] == "10.78.0.1" and r["attributes"]["as_path"] == "65003"
    assert "65000:500" in r["attributes"]["extended_communities"]
    wait_for(lambda: "10.105.0.1" in sh("ip", "-n", w, "route", "show", "10.50.0.0/24").stdout, 30,
             "the prefix installed as a kernel route via its gateway")
    rows = lab.weft_json(state, "bgp", "routes", "--afi", "evpn")["evpn"]
    assert not any(x.get("prefix") == "10.51.0.0/24" for x in rows)  # no instance imports 65003:999
    assert lab.weft_json(state, "bgp", "summary")["evpn"][0]["remote_prefixes"] == 1
    text = lab.weft(state, "bgp", "routes", "--afi", "evpn")  # the table a person reads
    assert "prefix=10.50.0.0/24" in text and "via 10.78.0.1 from 10.78.0.1" in text and " > " in text
    assert "Established" in lab.weft(state, "bgp", "summary")

    # weftnet -> GoBGP
    def shown():
        return [p for p in gobgp_evpn(lab, g) if p["nlri"].get("value", {}).get("prefix") == "10.60.0.0/24"]

    p = wait_for(shown, 30, "GoBGP to show weftnet's type-5 route")[0]
    nlri = p["nlri"]["value"]
    assert nlri["rd"] == {"type": 1, "admin": "10.78.0.2", "assigned": 500}  # RD router-id:VNI
    assert nlri["label"] == 500 and nlri["gateway"] == "0.0.0.0"
    attrs = {a["type"]: a for a in p["attrs"]}
    assert attrs[14]["nexthop"] == "10.78.0.2"  # the VTEP as next hop
    assert {"type": 0, "subtype": 2, "value": "65000:500"} in attrs[16]["value"]  # the route target
    assert {"type": 3, "subtype": 12, "tunnel_type": 8} in attrs[16]["value"]  # encapsulation: VXLAN
    assert attrs[2]["as_paths"][0]["asns"] == [65000]
    text = lab.gobgp(g, API_PORT, "global", "rib", "-a", "evpn")
    assert "[prefix:10.60.0.0/24]" in text and "65000" in text

    # every UPDATE the daemon sent to the real peer decodes the same in exabgp's parser
    assert crosscheck(lab.sent_updates()) >= 2
    # GoBGP withdraws: weftnet forgets the route and removes it from the kernel
    lab.gobgp(g, API_PORT, "global", "rib", "-a", "evpn", "del", "prefix", "10.50.0.0/24", "gw", "10.105.0.1",
              "etag", "0", "label", "500", "rd", "65003:500")
    wait_for(lambda: not learned(), 30, "the withdrawal")
    wait_for(lambda: not sh("ip", "-n", w, "route", "show", "10.50.0.0/24").stdout.strip(), 30,
             "the kernel route to go")
