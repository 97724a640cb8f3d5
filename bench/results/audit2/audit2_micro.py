import sys, time, ipaddress
sys.path.insert(0, "tests")
from vpn_packets import udp
from weftnet.core.vpn.firewall import Firewall, parse_packet, INBOUND
from weftnet.core.vpn.l2switch import AgingTable
infos = [parse_packet(udp("10.1.0.3", "10.1.0.1", 1024 + i, 53)) for i in range(20000)]
peers = [bytes([i % 16]) * 32 for i in range(20000)]
def new_flows():
    fw = Firewall.from_config({"inbound": [{"proto": "udp", "port": 53, "host": "any"}]})
    t = time.perf_counter()
    for info, p in zip(infos, peers):
        fw.check(INBOUND, info, p, frozenset(), 1.0)
    return (time.perf_counter() - t) / len(infos) * 1e9
def full_table():
    fw = Firewall.from_config({"inbound": [{"proto": "udp", "port": 53, "host": "any"}], "conntrack": {"max_flows": 4096}})
    for info, p in zip(infos[:4096], peers[:4096]):
        fw.check(INBOUND, info, p, frozenset(), 1.0)
    t = time.perf_counter()
    for info, p in zip(infos[4096:], peers[4096:]):
        fw.check(INBOUND, info, p, frozenset(), 2.0)
    return (time.perf_counter() - t) / (len(infos) - 4096) * 1e9
def tracked():
    fw = Firewall.from_config({"inbound": [{"proto": "udp", "port": 53, "host": "any"}]})
    for info, p in zip(infos[:1000], peers[:1000]):
        fw.check(INBOUND, info, p, frozenset(), 1.0)
    keys = [(17, i.dst, i.dport, i.src, i.sport, p) for i, p in zip(infos[:1000], peers[:1000])]
    t = time.perf_counter()
    for _ in range(20):
        for k in keys:
            fw.pass_tracked(k, 2.0)
    return (time.perf_counter() - t) / 20000 * 1e9
def learn():
    t_ = AgingTable(16384, 1024, 300)
    macs = [i.to_bytes(6, "big") for i in range(1000)]
    for m in macs: t_.learn(m, b"o", None, 0.0)
    t = time.perf_counter()
    for r in range(20):
        now = 1.0 + r * 0.5
        for m in macs: t_.learn(m, b"o", None, now)
    return (time.perf_counter() - t) / 20000 * 1e9
print(f"new flow {new_flows():.0f} ns, new flow into a full table {full_table():.0f} ns, tracked pass {tracked():.0f} ns, MAC confirm {learn():.0f} ns")
