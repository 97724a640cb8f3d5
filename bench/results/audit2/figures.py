"""The attack figures of bench/results/audit2/README.md, as the attacker and its victims see them.

Run once against the code before the fixes and once after (PYTHONPATH=<src>:tests); prints JSON.
Deterministic: no clock, no sockets (the sans-IO cores, as tests/test_hostile_dataplane.py drives them).
"""

import json
import sys
import time

sys.path.insert(0, "tests")

from test_hostile_dataplane import H4, M4, M6, V4, V6, H, M, _stranger_offer, _vpn, _vpn_packet  # noqa: E402
from test_l2_core import A as L2_A, C as L2_C, L2Lab, arp_request, ip_frame  # noqa: E402
from test_vpn_core import T0  # noqa: E402
from vpn_packets import tcp, udp  # noqa: E402
from weftnet.core import wire  # noqa: E402
from weftnet.core.vpn import netcert  # noqa: E402
from weftnet.core.vpn.ethernet import parse_mac  # noqa: E402
from weftnet.core.vpn.l2network import L2Frame  # noqa: E402
from weftnet.core.vpn.network import Deliver, Send  # noqa: E402

out = {}

# 1. conntrack: a member's 70,000 flows against the victim's TCP connection to an honest member.
net, v, h, m = _vpn()
v.outbound(tcp(V4, H4, 40000, 22, flags=0x02), T0)
for i in range(70_000):
    src, dst = (M4, V4) if i % 2 else (M6, V6)
    v.inbound(M.node_id, _vpn_packet(v, udp(src, dst, 1024 + i // 2, 53, data=b"q")), T0 + 1 + i * 1e-5)
r = v.inbound(H.node_id, _vpn_packet(v, tcp(H4, V4, 22, 40000, flags=0x12)), T0 + 2)
out["conntrack"] = {"attacker_packets": 70_000, "table": len(v.firewall), "evicted": v.firewall.counters["evicted"],
                    "honest_reply": "delivered" if isinstance(r, Deliver) else f"dropped ({r.reason})"}

# 2. MAC table: A at its quota, C's third MAC; then one unicast frame from B's host to it.
lab = L2Lab(max_macs=6, mac_quota=4)
b = lab.b
for i in range(4):
    b.inbound(L2_A.node_id, wire.encode(L2Frame(b.network_id, arp_request(parse_mac(f"02:aa:00:00:00:{0x10 + i:02x}"),
                                                                        "10.1.0.17", "10.1.0.2"))), T0 + i)
macs = [parse_mac(f"02:cc:00:00:00:{0x10 + i:02x}") for i in range(3)]
for i, mac in enumerate(macs):
    b.inbound(L2_C.node_id, wire.encode(L2Frame(b.network_id, arp_request(mac, "10.1.0.49", "10.1.0.2"))), T0 + 10 + i)
sent_to = []
for k in range(1000):  # B's host sends 1,000 frames to C's host within one second
    r = b.outbound(ip_frame(macs[2], parse_mac("02:bb:00:00:00:01"), udp("10.1.0.33", "10.1.0.49", 5000, 5000)),
                   T0 + 21 + k * 1e-3)
    sent_to += [s.node_id for s in (r if isinstance(r, list) else [r]) if isinstance(s, Send)]
out["mac_table"] = {"c_mac_learned": b.member_of(macs[2], T0 + 20) is not None,
                    "frames_to_c": sum(1 for n in sent_to if n == L2_C.node_id),
                    "copies_to_attacker_A": sum(1 for n in sent_to if n == L2_A.node_id),
                    "of": 1000}

# 3. signature checks: a stranger's 1,000 offers; a member's 1,000 replays of the list held.
calls = []
real = netcert.verify_signature
netcert.verify_signature = lambda *a: calls.append(1) or real(*a)
net, v, h, m = _vpn()
stranger, offer = _stranger_offer(v, h)
calls.clear()
t = time.perf_counter()
for i in range(1000):
    v.inbound(stranger.node_id, offer, T0 + i * 0.001)
offer_s = time.perf_counter() - t
n_offer = len(calls)
rl = net.auth.revocation_list(1, int(T0), serials=[77])
v.inbound(H.node_id, wire.encode(rl), T0)
calls.clear()
t = time.perf_counter()
for i in range(1000):
    v.inbound(M.node_id, wire.encode(rl), T0 + 1 + i * 0.001)
rl_s = time.perf_counter() - t
out["signature_checks"] = {"stranger_offers": 1000, "checks": n_offer, "cpu_ms": round(offer_s * 1e3, 1),
                           "offer_bytes": len(offer), "replayed_lists": 1000, "list_checks": len(calls),
                           "list_cpu_ms": round(rl_s * 1e3, 1)}
netcert.verify_signature = real

# 4. L3VPN: a PE announces 1,500 routes into a VRF with a limit of 1,000; then the site adds a route.
from test_hostile_dataplane import Identity  # noqa: E402
import ipaddress  # noqa: E402
from weftnet.core.l3vpn.ids import parse_rd, parse_rt  # noqa: E402
from weftnet.core.l3vpn.plane import L3vpnPlane  # noqa: E402
from weftnet.core.l3vpn.policy import VrfPolicy  # noqa: E402
from weftnet.core.l3vpn.vrf import LocalRoute, VpnRoute, VrfConfig  # noqa: E402

N = ipaddress.ip_network
plane = L3vpnPlane(lambda node, payloads, now: None, [], nexthop="192.0.2.1")
plane.set_pes({"192.0.2.5": Identity.from_seed(bytes([5]) * 32).node_id})
plane.add_vrf(VrfConfig("red", parse_rd("65000:1"), VrfPolicy.from_config(["65000:100"], ["65000:100"]), label=100,
                        max_routes=1000))
plane.update_vpn([VpnRoute(parse_rd("65000:9"), N(f"10.{200 + i // 256}.{i % 256}.0/24"), 200,
                           frozenset({parse_rt("65000:100")}), "192.0.2.5", "bgp") for i in range(1500)])
ok = plane.set_local_route("red", LocalRoute(N("10.1.1.0/24"), "ce1", "192.168.1.3"))
out["l3vpn_vrf"] = {"pe_routes": 1500, "max_routes": 1000, "site_route_accepted": ok,
                    "imported": len(plane.vrfs["red"].imported)}

# 5. EVPN: type-3 routes naming 3,000 VTEPs (150 per UPDATE), then 10,000 announced and withdrawn.
import test_hostile_bgp as hb  # noqa: E402
import test_hostile_dataplane as hd  # noqa: E402

sp, ev = hb.speaker(evpn=True)
hb.establish(sp, hb.PEER, 65002, 1)
names = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(3000)]
sent_bytes = 0
for k in range(0, 3000, 150):
    u = hb.type3_update(names[k:k + 150])
    sent_bytes += len(u)
    sp.data_received(1, u, hb.T0 + 1)
flood = len(ev.dp.flood.get(100, ()))
sp, ev = hb.speaker(evpn=True, max_prefixes=20_000)
hb.establish(sp, hb.PEER, 65002, 1)
names = [str(ipaddress.IPv4Address(0x0A000000 + i)) for i in range(10_000)]
for k in range(0, len(names), 150):
    sp.data_received(1, hb.type3_update(names[k:k + 150]), hb.T0 + 1)
t = time.perf_counter()
for k in range(0, len(names), 150):
    sp.data_received(1, hb.type3_update(names[k:k + 150], withdraw=True), hb.T0 + 2)
out["evpn_type3"] = {"peer_bytes": sent_bytes, "vteps_named": 3000, "flood_list": flood,
                     "copies_per_flooded_frame": flood, "withdraw_10000_s": round(time.perf_counter() - t, 2)}
# 6. LAN beacons of fresh keys, two a second for 30 s, "from" a victim's address.
sent, got, dg = hd.lan_beacon_reflection()
out["lan_beacon"] = {"beacon_bytes": sent, "victim_bytes": got, "victim_datagrams": dg, "ratio": round(got / sent, 2)}
print(json.dumps(out, indent=1))
