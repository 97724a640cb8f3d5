"""Layer-2 networks inside whole nodes (NodeCore + VpnPlane) on the simulated network: members find
each other through member records in the DHT before any frame, a broadcast reaches every member's
bridge once, the answer comes back unicast, and the next ARP is answered without the WAN."""

import ipaddress
import random
import struct

from weftnet.core.identity import Identity
from weftnet.core.node import NodeCore
from weftnet.core.vpn.ethernet import BROADCAST, parse_arp
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.l2network import L2Network
from weftnet.core.vpn.netcert import L2Grant, MacPrefix, NetworkAuthority, member_key
from weftnet.sim.harness import SimNetwork

ALLOW_ALL = {"outbound": [{"proto": "any", "port": "any", "host": "any"}],
             "inbound": [{"proto": "any", "port": "any", "host": "any"}]}


def build(seed=5, n=6):
    net = SimNetwork(seed)
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        core = NodeCore(Identity.generate(rng), random.Random(seed * 100 + i), net.now)
        addr = (f"198.18.{i}.1", 4500)
        core.set_local_endpoint(addr)
        net.add(addr, core)
        nodes.append(core)
    for core in nodes[1:]:
        core.connect(nodes[0].endpoint, net.now)
        net.flush(core.endpoint)
    net.run_for(20.0)
    return net, rng, nodes


def arp(op, sha, spa, tha, tpa):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, ipaddress.ip_address(spa).packed, tha,
                       ipaddress.ip_address(tpa).packed)
    return (BROADCAST if op == 1 else tha) + sha + b"\x08\x06" + body


def frames(core, network_id):
    out = [p for nid, _vnet, p in core.vpn.tun_out if nid == network_id]
    core.vpn.tun_out.clear()
    return out


def test_members_find_each_other_then_flood_learn_and_answer_arp_locally():
    net, rng, nodes = build()
    auth = NetworkAuthority.create("seg", ["10.9.0.0/16"], rng, net.now, layer=2)
    members = {}
    for n, core in enumerate(nodes[1:4], start=1):
        grant = L2Grant((MacPrefix(bytes((2, n, 0, 0, 0, 0)), 40),), (ipaddress.ip_network(f"10.9.{n}.0/24"),))
        cert = auth.sign_member(core.node_id, [f"10.9.0.{n}"], not_before=int(net.now) - 10,
                                not_after=int(net.now) + 86400, serial=n, l2=grant)
        vnet = L2Network(auth.descriptor, cert, net.now, firewall=Firewall.from_config(ALLOW_ALL))
        core.vpn.add_network(vnet, auth.directory_records(cert))
        members[n] = (core, vnet)
    for core, _ in members.values():
        core.vpn_publish(net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    # Node 2's member record is in the DHT (on nodes other than node 2), under the authority's key.
    assert any(r.key == member_key(auth.descriptor.authority_key, 2)
               for c in nodes if c is not members[2][0] for r in c.dht.store.records())
    # Each member reads the member records of the serials it does not hold, and introduces itself.
    for core, _ in members.values():
        core.vpn_check_revocations(net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    for n, (core, vnet) in members.items():
        assert len(vnet.members()) == 2, n
    assert sum(core.vpn.stats["members_found"] for core, _ in members.values()) >= 3

    a, av = members[1]
    mac_a, mac_c = bytes((2, 1, 0, 0, 0, 5)), bytes((2, 3, 0, 0, 0, 7))
    # A broadcast ARP from a host behind node 1 reaches the bridges of nodes 2 and 3, once each.
    request = arp(1, mac_a, "10.9.1.5", bytes(6), "10.9.3.7")
    a.vpn_outbound(av.network_id, [request], net.now)
    net.flush(a.endpoint)
    net.run_for(2.0)
    assert frames(members[2][0], av.network_id) == [request]
    assert frames(members[3][0], av.network_id) == [request]
    assert av.l2["flooded"] == 1 and av.l2["flood_copies"] == 2
    # The host at 10.9.3.7 answers: unicast to node 1 only, which learns its MAC and binding.
    c, cv = members[3]
    reply = arp(2, mac_c, "10.9.3.7", mac_a, "10.9.1.5")
    c.vpn_outbound(cv.network_id, [reply], net.now)
    net.flush(c.endpoint)
    net.run_for(2.0)
    assert frames(a, av.network_id) == [reply] and frames(members[2][0], av.network_id) == []
    assert av.member_of(mac_c, net.now) == c.node_id.raw
    # The next request for 10.9.3.7 is answered on node 1: nothing crosses.
    a.vpn_outbound(av.network_id, [request], net.now)
    answer = frames(a, av.network_id)
    assert len(answer) == 1 and parse_arp(answer[0][14:]).sha == mac_c
    net.run_for(2.0)
    assert frames(c, av.network_id) == [] and av.l2["flooded"] == 1
    st = a.status(net.now)["networks"][0]
    assert st["layer"] == 2 and st["l2"]["arp_suppressed"] == 1
    assert {m["mac"] for m in st["macs"] if m["kind"] == "learned"} == {"02:03:00:00:00:07"}
