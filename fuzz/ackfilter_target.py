"""The ``ackfilter`` fuzz target (fuzz/weftfuzz.py): TUN read batches (core/vpn/ackfilter.py).

Each input is cut into a batch of packets (mostly real TCP ACKs and data of a few connections
with a ``virtio_net_hdr``, mutated). ``filter_acks`` must never raise and must return a
subsequence of its input, in order, that keeps every packet it cannot prove to be a pure ACK
superseded by a later pure ACK of its connection.
"""

from __future__ import annotations

import random
import struct

from weftnet.core.vpn.ackfilter import _classify, filter_acks

_VNET = struct.pack("=BBHHHH", 1, 0, 0, 0, 20, 16)


def _seg(ack: int, sport: int, flags: int = 0x10, data: bytes = b"", v6: bool = False) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, 5201, 7, ack, 8 << 4, flags, 500, 0, 0) + bytes((1, 1, 8, 10)) + bytes(8)
    tcp += data
    if v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, bytes(15) + b"\x02", bytes(15) + b"\x01")
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, b"\n\x01\x00\x02",
                         b"\n\x01\x00\x01")
    return _VNET + ip + tcp


def corpus() -> list[bytes]:
    """Batches written as one input: packets joined with a 2-byte length before each."""
    out = []
    for k in range(8):
        rng = random.Random(k)
        pkts = [_seg(rng.randrange(1 << 32) if k == 7 else 1000 * (i + rng.randrange(3)), 40000 + rng.randrange(2),
                     rng.choice((0x10, 0x10, 0x10, 0x18, 0x11)), b"d" * rng.randrange(2), v6=k % 2 == 1)
                for i in range(rng.randrange(2, 9))]
        out.append(b"".join(len(p).to_bytes(2, "big") + p for p in pkts))
    return out


def _batch(data: bytes) -> list[bytes]:
    pkts, i = [], 0
    while i + 2 <= len(data) and len(pkts) < 64:
        n = int.from_bytes(data[i:i + 2], "big")
        pkts.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return pkts


class AckFilterTarget:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def __call__(self, data: bytes) -> None:
        pkts = _batch(data)
        out = filter_acks(pkts)
        it = iter(range(len(pkts)))
        kept = []
        for q in out:  # a subsequence, by identity, in order
            kept.append(next(i for i in it if pkts[i] is q))
        for i, p in enumerate(pkts):
            if i in kept:
                continue
            c = _classify(p)
            if c is None or c[1] is None:
                raise AssertionError("a packet that is no pure ACK was left out")
            later = [j for j in range(i + 1, len(pkts)) if (cj := _classify(pkts[j])) is not None and cj[0] == c[0]]
            if not later or _classify(pkts[later[0]])[1] is None:
                raise AssertionError("an ACK was left out with no later pure ACK of its connection next")
