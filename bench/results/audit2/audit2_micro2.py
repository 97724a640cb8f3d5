import sys, time
sys.path.insert(0, "tests")
from test_hostile_dataplane import _vpn, _vpn_packet, M, M4, V4, T0
from vpn_packets import udp
net, v, h, m = _vpn()
pk = [_vpn_packet(v, udp(M4, V4, 1024 + i, 53, data=b"q" * 20)) for i in range(20000)]
nid = M.node_id
best = 1e9
t = time.perf_counter()
for p in pk:
    v.inbound(nid, p, T0 + 1)
new = (time.perf_counter() - t) / len(pk) * 1e9
t = time.perf_counter()
for p in pk:
    v.inbound(nid, p, T0 + 2)
old = (time.perf_counter() - t) / len(pk) * 1e9
print(f"VpnNetwork.inbound, a new flow's packet {new:.0f} ns, a tracked flow's (full path) {old:.0f} ns")
