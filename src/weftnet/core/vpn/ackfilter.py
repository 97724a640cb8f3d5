"""Pure TCP ACKs made redundant by a later one in the same TUN read batch, left out (sans-IO).

Why: the data plane pays per packet (a firewall check, a seal, a datagram at one end; an open,
a check and a TUN write at the other), and a TCP receiver behind a TUN hands over about one ACK
per superpacket it gets, several per wake-up (docs/dataplane.md, "CPU per GB"). When one read of
the TUN holds two pure ACKs of one connection and the later acknowledges more, the earlier tells
the sender nothing the later does not: it is left out, as CAKE's ack-filter does (sch_cake,
"conservative" mode) and as a receiver's delayed ACK or GRO would have done anyway.

An ACK is left out only if all of these hold:

* it and a later packet of the same batch are both *pure* ACKs of one connection (the same
  addresses and ports; ``virtio_net_hdr`` without offload; IPv4 without options and not a
  fragment, or IPv6 with TCP as the first next header; the flags exactly ACK: no SYN, FIN, RST,
  PSH, URG, ECE or CWR; no payload; options only NOP, EOL and timestamps, so no SACK blocks);
* the later acknowledges strictly more (serial number arithmetic): ACKs with equal numbers
  (duplicate ACKs, which drive fast retransmit, and window updates) are kept unless a later one
  acknowledges more than all of them (then the hole they reported is filled already);
* no other packet of that connection (data, a flag, a SACK) comes between them.

The packets kept keep their order; nothing else is changed. Inputs and outputs are
``virtio_net_hdr`` + IP packet bytes, as a TUN with ``IFF_VNET_HDR`` reads them.
"""

from __future__ import annotations

from weftnet.core.vpn.coalesce import coalesce_udp

__all__ = ["filter_acks", "prepare_batch"]

_VNET = 10
_TCP = 6
_ACK_ONLY = 0x10
#: The shortest packet worth looking at (header, IPv4, TCP) and the longest a pure ACK can be
#: (header, IPv6, TCP with 40 bytes of options).
_MIN = _VNET + 20 + 20
_MAX = _VNET + 40 + 60


def _classify(p: bytes):
    """``(key, ack)`` for a pure ACK, ``(key, None)`` for any other TCP packet whose connection
    is known, ``None`` for anything else."""
    n = len(p)
    if n < _MIN or p[1] != 0:  # p[1]: gso_type; an offloaded packet is data
        return None
    v = p[_VNET] >> 4
    if v == 4:
        if p[_VNET] != 0x45 or p[_VNET + 9] != _TCP or (p[_VNET + 6] & 0x3F) or p[_VNET + 7]:
            return None  # options, another protocol, or a fragment
        t = _VNET + 20
        key = p[_VNET + 12:_VNET + 20] + p[t:t + 4]
        total = _VNET + ((p[_VNET + 2] << 8) | p[_VNET + 3])
    elif v == 6:
        if n < _VNET + 40 + 20 or p[_VNET + 6] != _TCP:
            return None
        t = _VNET + 40
        key = p[_VNET + 8:_VNET + 40] + p[t:t + 4]
        total = t + ((p[_VNET + 4] << 8) | p[_VNET + 5])
    else:
        return None
    if n > _MAX or total != n:
        return key, None
    doff = (p[t + 12] >> 4) * 4
    if doff < 20 or t + doff != n or p[t + 13] != _ACK_ONLY or p[t + 12] & 0x0F:
        return key, None  # payload, a flag besides ACK, or reserved bits set
    i, end = t + 20, n
    while i < end:  # options: NOP, EOL and timestamps only (a SACK block is information)
        kind = p[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
        elif kind == 8 and i + 10 <= end and p[i + 1] == 10:
            i += 10
        else:
            return key, None
    return key, int.from_bytes(p[t + 8:t + 12], "big")


def filter_acks(packets: list[bytes]) -> list[bytes]:
    """``packets`` (one TUN read batch) without the pure ACKs a later pure ACK of the same
    connection supersedes; the same list object if nothing is left out."""
    runs: dict[bytes, list[tuple[int, int]]] = {}  # connection -> its pure ACKs since its last other packet
    drop: set[int] | None = None
    for i, p in enumerate(packets):
        c = _classify(p)
        if c is None:
            continue
        key, ack = c
        if ack is None:
            runs.pop(key, None)  # another packet of the connection: the ACKs before it stay
            continue
        run = runs.get(key)
        if run is None:
            runs[key] = [(i, ack)]
            continue
        keep = []
        for j, a in run:
            if 0 < ((ack - a) & 0xFFFFFFFF) < 0x80000000:  # this one acknowledges more
                if drop is None:
                    drop = set()
                drop.add(j)
            else:
                keep.append((j, a))
        keep.append((i, ack))
        runs[key] = keep
    if drop is None:
        return packets
    return [p for i, p in enumerate(packets) if i not in drop]


def prepare_batch(packets: list[bytes], ack_filter: bool) -> tuple[list[bytes], int]:
    """A TUN read batch of two packets or more as the readers hand it on (the daemon's private
    networks, its data-plane workers, the overlay interface): UDP bursts joined
    (core/vpn/coalesce.py), then, with ``ack_filter``, the superseded pure ACKs left out; and
    how many ACKs were."""
    if sum(1 for p in packets if len(p) > 1 and not p[1]) < 2:
        # Both steps look only at packets without segmentation offload (gso_type 0) and need two
        # of them: a batch of TCP superpackets (the bulk a sender reads) has nothing for either.
        return packets, 0
    packets = coalesce_udp(packets)
    if not ack_filter:
        return packets, 0
    n = len(packets)
    packets = filter_acks(packets)
    return packets, n - len(packets)
