"""EVPN interop with FRR: FRR is one VTEP (kernel VXLAN + bridge, advertise-all-vni), a weft daemon the other.

    C1 (10.100.0.1) --br100/vxlan100-- F (FRR, 10.77.0.1) ==underlay veth== W (weft, 10.77.0.2) --br100/vxlan100-- C2, C3

Containers are namespaces with a veth into their host's bridge, all on VNI 100.
Checked: containers on both sides ping each other; FRR's ``show bgp l2vpn evpn
json`` holds weftnet's type-2 and type-3 routes and weftnet's kernel FDB holds
FRR's (extern_learn MAC entries, a flood entry); a container that moves from
weftnet's side to FRR's is learned there with a MAC Mobility sequence number
and weftnet withdraws its route and repoints its FDB, and one that moves the
other way is advertised by weftnet with the next sequence number; removing a
container withdraws its route. Needs root, iproute2 and FRR; skipped otherwise.
"""

from __future__ import annotations

import pytest

from bgp_exabgp import crosscheck
from bgp_lab import Lab, can_netns, have_frr, sh, wait_for

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not (can_netns() and have_frr()), reason="needs root, iproute2 (ip, bridge) and FRR (apt frr)"),
]

FRR_CONF = """\
frr defaults datacenter
hostname {name}
router bgp 65000
 bgp router-id 10.77.0.1
 no bgp default ipv4-unicast
 timers bgp 3 9
 neighbor 10.77.0.2 remote-as 65000
 neighbor 10.77.0.2 port 10179
 neighbor 10.77.0.2 timers connect 1
 address-family l2vpn evpn
  neighbor 10.77.0.2 activate
  advertise-all-vni
 exit-address-family
"""

WEFT_CONF = """
[bgp]
asn = 65000
router_id = "10.77.0.2"
listen = "10.77.0.2"
port = 10179
hold_time = 9
connect_retry = 1
families = ["evpn"]
[[bgp.peers]]
address = "10.77.0.1"
remote_as = 65000
[[bgp.evpn]]
vni = 100
bridge = "br100"
vxlan = "vxlan100"
"""

MAC = {1: "02:00:00:00:01:01", 2: "02:00:00:00:01:02", 3: "02:00:00:00:01:03"}


def vtep_host(lab: Lab, ns: str, addr: str, with_vxlan: bool) -> None:
    sh("ip", "-n", ns, "link", "add", "br100", "type", "bridge")
    sh("ip", "-n", ns, "link", "set", "br100", "up")
    if with_vxlan:
        sh("ip", "-n", ns, "link", "add", "vxlan100", "type", "vxlan", "id", "100", "local", addr, "dstport", "4789",
           "nolearning")
        sh("ip", "-n", ns, "link", "set", "vxlan100", "master", "br100")
        sh("ip", "-n", ns, "link", "set", "vxlan100", "type", "bridge_slave", "learning", "off")
        sh("ip", "-n", ns, "link", "set", "vxlan100", "up")


def frr_evpn(lab: Lab, name: str) -> dict:
    """FRR's EVPN table as {(route type, rd, mac or ip): path dicts}; FRR's own RD is router-id:<its EVI
    number>, so its routes are found with :func:`frr_own`."""
    js = lab.vtysh(name, "show bgp l2vpn evpn json")
    out: dict = {}
    for rd, routes in js.items():
        if not isinstance(routes, dict) or ":" not in rd:
            continue
        for prefix, entry in routes.items():
            if not isinstance(entry, dict) or "paths" not in entry:
                continue
            for group in entry["paths"]:
                for p in (group if isinstance(group, list) else [group]):
                    key = (p.get("routeType"), rd, p.get("mac") or p.get("ip") or prefix)
                    out.setdefault(key, []).append(p)
    return out


def frr_own(table: dict, rtype: int, what: str) -> list:
    """The paths FRR originated itself (any RD but weftnet's) for a MAC or IP."""
    return [p for (t, rd, x), paths in table.items() if t == rtype and x == what and rd != WEFT_RD for p in paths]


WEFT_RD = "10.77.0.2:100"


def weft_fdb(lab: Lab, ns: str) -> list[str]:
    return sh("ip", "netns", "exec", ns, "bridge", "fdb", "show", "dev", "vxlan100").stdout.splitlines()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, "bf")
    try:
        yield lab
    except BaseException:
        print(lab.dump_logs())
        raise
    finally:
        lab.close()


def test_evpn_with_frr(lab):
    f, w = lab.add_ns("F"), lab.add_ns("W")
    lab.link(f, "u0", w, "u0")
    sh("ip", "-n", f, "addr", "add", "10.77.0.1/24", "dev", "u0")
    sh("ip", "-n", w, "addr", "add", "10.77.0.2/24", "dev", "u0")
    vtep_host(lab, f, "10.77.0.1", with_vxlan=True)
    vtep_host(lab, w, "10.77.0.2", with_vxlan=False)  # weftnet creates its VXLAN device itself
    c1 = lab.container("C1", f, "br100", "10.100.0.1/24", MAC[1])
    c2 = lab.container("C2", w, "br100", "10.100.0.2/24", MAC[2])
    c3 = lab.container("C3", w, "br100", "10.100.0.3/24", MAC[3])
    frr = lab.start_frr(f, FRR_CONF.format(name=lab.name("F")))
    state = lab.weft_init("W", WEFT_CONF)
    lab.weft_up(w, state)

    wait_for(lambda: lab.weft_json(state, "bgp", "summary")["peers"][0]["state"] == "Established", 60,
             "the session with FRR")
    # weftnet made the VXLAN device as FRR expects it: VNI 100, local VTEP, learning off
    details = sh("ip", "-n", w, "-d", "link", "show", "vxlan100").stdout
    assert "vxlan id 100" in details and "local 10.77.0.2" in details and "nolearning" in details

    # type 3 both ways: FRR holds weftnet's, weftnet has FRR's flood entry
    wait_for(lambda: (3, WEFT_RD, "10.77.0.2") in frr_evpn(lab, frr), 30, "weftnet's type-3 route in FRR")
    imet = frr_evpn(lab, frr)[(3, WEFT_RD, "10.77.0.2")][0]
    assert imet["nexthops"][0]["ip"] == "10.77.0.2"
    wait_for(lambda: any(l.startswith("00:00:00:00:00:00 dst 10.77.0.1") for l in weft_fdb(lab, w)), 30,
             "FRR's VTEP as a flood entry in weftnet's FDB")

    # containers across the two VTEPs reach each other
    wait_for(lambda: lab.ping(c1, "10.100.0.2") and lab.ping(c1, "10.100.0.3"), 30, "C1 to ping C2 and C3")
    assert lab.ping(c2, "10.100.0.1") and lab.ping(c3, "10.100.0.1")

    # type 2 both ways: FRR installed weftnet's MACs, weftnet installed FRR's (extern_learn towards FRR's VTEP)
    wait_for(lambda: (2, WEFT_RD, MAC[2]) in frr_evpn(lab, frr)
             and (2, WEFT_RD, MAC[3]) in frr_evpn(lab, frr), 30, "weftnet's type-2 routes in FRR")
    frr_fdb = sh("ip", "netns", "exec", f, "bridge", "fdb", "show", "dev", "vxlan100").stdout
    assert f"{MAC[2]} dst 10.77.0.2" in frr_fdb  # FRR's zebra installed our MAC towards our VTEP
    wait_for(lambda: any(l.startswith(f"{MAC[1]} dst 10.77.0.1") and "extern_learn" in l for l in weft_fdb(lab, w)),
             30, "FRR's MAC in weftnet's FDB")
    routes = lab.weft_json(state, "bgp", "routes", "--afi", "evpn")["evpn"]
    assert any(r.get("type") == 2 and r.get("mac") == MAC[1] and r["next_hop"] == "10.77.0.1" for r in routes)

    # C2 moves to FRR's side (same MAC and IP); its old port stays up but silent, as after a live migration
    sh("ip", "-n", c2, "addr", "flush", "dev", "eth0")
    c2b = lab.container("C2b", f, "br100", "10.100.0.2/24", MAC[2])
    wait_for(lambda: lab.ping(c2b, "10.100.0.1") and lab.ping(c2b, "10.100.0.3"), 30, "moved C2 to ping C1 and C3")

    def moved_away():
        t = frr_evpn(lab, frr)
        own = frr_own(t, 2, MAC[2])
        return own and (2, WEFT_RD, MAC[2]) not in t and own

    own = wait_for(moved_away, 30, "FRR to own C2's MAC and weftnet to withdraw its route")
    assert "MM:1" in own[0]["extendedCommunity"]["string"]  # RFC 7432 15: FRR bumped the sequence number
    wait_for(lambda: any(l.startswith(f"{MAC[2]} dst 10.77.0.1") for l in weft_fdb(lab, w)), 30,
             "weftnet's FDB to point C2's MAC at FRR")
    summ = lab.weft_json(state, "bgp", "summary")
    assert summ["evpn"][0]["mac_moves"] >= 1

    # C1 moves to weftnet's side: weftnet advertises it with FRR's sequence number + 1 and FRR withdraws its own
    sh("ip", "-n", c1, "addr", "flush", "dev", "eth0")
    c1b = lab.container("C1b", w, "br100", "10.100.0.1/24", MAC[1])
    wait_for(lambda: lab.ping(c1b, "10.100.0.2"), 30, "moved C1 to ping C2")

    def weft_owns_c1():
        t = frr_evpn(lab, frr)
        ours = t.get((2, WEFT_RD, MAC[1]))
        return ours and not frr_own(t, 2, MAC[1]) and ours

    ours = wait_for(weft_owns_c1, 30, "weftnet to own C1's MAC after the move")
    assert "MM:1" in ours[0]["extendedCommunity"]["string"]

    # removing a container withdraws its route
    sh("ip", "netns", "del", c3)
    lab.ns.remove(c3)
    wait_for(lambda: (2, WEFT_RD, MAC[3]) not in frr_evpn(lab, frr), 30, "C3's route to be withdrawn")
    # every UPDATE the daemon sent to the real peer decodes the same in exabgp's parser
    assert crosscheck(lab.sent_updates()) >= 2
    st = lab.weft_json(state, "status")
    assert st["bgp"]["peers_established"] == 1 and st["bgp"]["dataplane"]["fdb_installed"] >= 2
