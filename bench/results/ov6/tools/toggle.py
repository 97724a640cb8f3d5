"""The overlay plane's own cost per packet, fast paths on and off alternately in one process.

A's plane (tests/test_overlay_fastpath.py's world: B resolved, the overlay's default firewall with
`weft allow tcp 5201`, the flow opened) takes a 64,000-byte TCPv6 superpacket from its TUN
(`outbound`: checks, resolution, firewall, the chunk payload; the transport is a recorder), and
a chunk holding one superpacket's ACK from B's session (`on_payload`). Each burst of N calls is
timed with perf_counter_ns; bursts alternate between the fast paths and the full paths alone.

    PYTHONPATH=src:tests python bench/results/ov6/tools/toggle.py --rounds 20 --n 2000
"""
import argparse
import statistics
import time

from test_overlay_fastpath import VNETS, A, B, _a, chunk, world
from vpn_packets import tcp

p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=20)
p.add_argument("--n", type=int, default=2000)
args = p.parse_args()

pl = world()
pl.data.chunk_size = 65_000  # the daemon's (OVERLAY_CHUNK_SIZE): one superpacket, one chunk
now = 1_700_000_001.0
syn = VNETS[1] + tcp(_a(A), _a(B), 40000, 5201, flags=0x02)
pl.outbound([syn], now)
pl.transport.send_to = lambda node_id, payload, now: True  # a session is up; nothing recorded
fast_out, fast_in = pl.data.outbound_fast, pl.data.inbound_fast
sp = VNETS[0] + tcp(_a(A), _a(B), 40000, 5201, flags=0x18, data=bytes(64_000 - 60))
ack = VNETS[1] + tcp(_a(B), _a(A), 5201, 40000, flags=0x10)
ackp = chunk(ack[:10], ack[10:])
res = {k: [] for k in ("out fast", "out full", "in fast", "in full")}
for r in range(args.rounds):
    for mode in ("fast", "full") if r % 2 == 0 else ("full", "fast"):
        # the full paths: the fast ones declined at once (a call returning None, ~0.05 µs)
        pl.data.outbound_fast = fast_out if mode == "fast" else (lambda buf, cache, now: None)
        pl.data.inbound_fast = fast_in if mode == "fast" else (lambda peer, payload, now: None)
        t0 = time.process_time_ns()
        for _ in range(args.n):
            pl.outbound([sp], now)
        t1 = time.process_time_ns()
        for _ in range(args.n):
            pl.on_payload(B.node_id, ackp, now)
            pl.tun_out.clear()
        t2 = time.process_time_ns()
        res[f"out {mode}"].append((t1 - t0) / args.n / 1000)
        res[f"in {mode}"].append((t2 - t1) / args.n / 1000)
for k, v in res.items():
    v.sort()
    print(f"{k:9s} µs/packet: median {statistics.median(v):.2f}, min {v[0]:.2f}, max {v[-1]:.2f} ({len(v)} bursts)")
