"""A data-plane worker (runtime/dpworkers.py, ``_WorkerLoop``) decides every packet as the
one-process path does.

A worker reads its TUN queue and its socket in batches and decides with the network's fast paths
first and the full path where they decline (core/vpn/network.py), handing what it cannot carry
(no route yet, a payload of someone not a member) to the main process. Two copies of the same
two networks see the same generated packets (tests/test_vpn_fastpath.py's, changed at random,
the clock moving on): one copy inside a worker loop, in batches read from a TUN queue (a
SOCK_SEQPACKET pair) and handed to its receive side, the other through the full path alone, one
packet at a time. Every packet's outcome (the payloads sealed for a peer, the packets written to
the TUN, the drops and their reasons, the hand-overs) and the networks' state after each batch
must be the same. The cipher is left out (a seal that returns the payload): the worker's keys
and counters are tests/test_workers_crypto.py's.
"""

from __future__ import annotations

import socket
import time
import types
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from test_vpn_fastpath import IN, MAIN, OUT, T0, VNETS, chunk, result, state, step, world
from vpn_packets import altered

from weftnet.core.vpn.network import Drop, Send
from weftnet.runtime import dpworkers
from weftnet.runtime.dpworkers import _WorkerLoop

EP = ("127.0.0.1", 9)


class _Seal:
    """The worker's crypto, without the cipher: a payload leaves as itself."""

    counter, reserved = 0, 1 << 60

    def seal(self, node, payload, now):
        return [payload]

    def wants_rekey(self, node, now):
        return False


def _clock(now: float):
    """The worker reads the wall clock per batch; here it reads the test's."""
    return mock.patch.object(dpworkers, "time", types.SimpleNamespace(time=lambda: now, monotonic=time.monotonic))


class _Worker:
    """A worker loop over network ``net`` whose TUN queue is one end of a SOCK_SEQPACKET pair,
    with what it would send, write, hand over and count recorded per packet."""

    def __init__(self, net, peer: bytes):
        self.tun, self.queue = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.queue.setblocking(False)
        self.loop = _WorkerLoop.__new__(_WorkerLoop)
        lp = self.loop
        lp.slot, lp.nets, lp.coalesce = 1, {net.network_id: net}, set()
        lp.queue_of, lp.net_of = {net.network_id: self.queue.fileno()}, {self.queue.fileno(): net.network_id}
        lp.crypto, lp.endpoints = _Seal(), {peer: EP}
        lp.stats = {"packets_out": 0, "packets_in": 0, "bytes_out": 0, "bytes_in": 0, "upcalls": 0,
                    "tun_write_errors": 0, "send_errors": 0, "acks_filtered": 0}
        lp._written, lp._nudged = set(), {}
        self.seen: list = []
        lp._send_all = lambda out: self.seen.extend(("sealed", d) for d, ep in out if ep == EP)
        lp._write = lambda fd, vnet, packet: self.seen.append(("deliver", bytes(vnet), bytes(packet)))
        lp._upcall = lambda msg: self.seen.append(("upcall", msg[0]))
        lp._count_drop = lambda way, r: self.seen.append(("drop", r.reason))

    def out(self, packets: list[bytes], now: float) -> list:
        for p in packets:
            self.tun.send(p)
        self.seen = []
        with _clock(now):
            self.loop._on_tun(self.queue.fileno())
        return self.seen

    def into(self, node: bytes, payloads: list[bytes], now: float) -> list:
        self.loop._opened = lambda datagrams, _now: ((node, p) for p in datagrams)
        self.seen = []
        with _clock(now):
            self.loop._on_udp(payloads)
        return self.seen

    def close(self) -> None:
        self.tun.close()
        self.queue.close()


def _full_out(net, buf: bytes, now: float) -> list:
    r = net.outbound_read(buf, now)
    if type(r) is Send:
        return [("sealed", p) for p in r.payloads]
    if type(r) is Drop:
        return [("upcall", "out")] if r.reason == "no-route" else [("drop", r.reason)]
    return [result(r)]  # a Deliver (ICMP "too big" for our host)


def _full_in(net, node: bytes, payload: bytes, now: float) -> list:
    if node not in net._members or payload[1] not in (0x52, 0x55):
        return [("upcall", "in")]
    r = net._inbound_packet(node, payload, now) if payload[1] == 0x52 else net._inbound_chunk(node, payload, now)
    if type(r) is Drop:
        return [("drop", r.reason)]
    return [] if r is None else [result(r)]  # None: a piece of a chunk, kept until it is whole


def _discard(net) -> None:
    net.messages_to_send()
    while net.next_event() is not None:
        pass


def run(batches) -> tuple[int, int]:
    """The batches through a worker and through the full path; returns (packets, fast-path
    packets) so a caller can tell the fast paths were exercised."""
    wnet, ib = world()
    full, _ = world()
    peer = ib.node_id.raw
    w = _Worker(wnet, peer)
    now, packets = T0, 0
    before = wnet.firewall.counters.get("tracked_pass", 0)
    try:
        for out, steps, later in batches:
            now += later
            bufs, want = [], []
            for which, v, flips, cut, count, plain in steps:
                buf = altered(VNETS[v] + (OUT if out else IN)[which], flips, cut)
                if out:
                    bufs.append(buf)
                    want += _full_out(full, buf, now)
                else:
                    if plain:  # a VpnPacket (no offload header)
                        payload = b"\x01\x52" + wnet.network_id + buf[10:]
                    else:
                        payload = chunk(wnet, buf[:10], buf[10:], count)
                    bufs.append(payload)
                    want += _full_in(full, peer, payload, now)
            got = w.out(bufs, now) if out else w.into(peer, bufs, now)
            _discard(full)  # the worker leaves what its network asks to send to the main process
            packets += len(bufs)
            # The worker sends a batch's datagrams together after deciding it (one GSO send per run):
            # what it sends, and the rest, each in the order of the packets.
            assert [x for x in got if x[0] == "sealed"] == [x for x in want if x[0] == "sealed"]
            assert [x for x in got if x[0] != "sealed"] == [x for x in want if x[0] != "sealed"]
            assert state(wnet) == state(full)
        return packets, wnet.firewall.counters.get("tracked_pass", 0) - before
    finally:
        w.close()


_STEP = step.map(lambda s: s[1:])  # (which, vnet, flips, cut, later, count, plain): the direction is the batch's
batch = st.tuples(st.booleans(), st.lists(_STEP.map(lambda s: (s[0], s[1], s[2], s[3], s[5], s[6])), min_size=1,
                                          max_size=12),
                  st.sampled_from([0.0] * 6 + [0.5, 5.0, 25.0, 100.0]))


@settings(max_examples=100, deadline=None)
@given(st.lists(batch, min_size=4, max_size=20))
def test_a_worker_decides_every_packet_as_the_one_process_path(batches):
    run(batches)


def test_the_comparison_takes_the_workers_fast_paths_often():
    """(The property above is worth something only if the worker's fast paths are taken in it.)"""
    import random

    rng = random.Random(7)
    batches = [(rng.random() < 0.5, [(rng.choice(MAIN), rng.choice([0, 0, 1, 2, 2, 3]), [], 0, 1, rng.random() < 0.3)
                                     for _ in range(rng.randint(1, 10))], 0.5) for _ in range(60)]
    packets, fast = run(batches)
    assert fast >= packets // 3


def test_a_batch_of_a_tracked_flow_leaves_as_the_full_path_sends_it():
    """A flow's first packet through the full path, then a batch of its superpackets and ACKs
    read at once from the TUN queue: the worker seals the same payloads as the full path would."""
    wnet, ib = world()
    full, _ = world()
    w = _Worker(wnet, ib.node_id.raw)
    try:
        first = VNETS[2] + OUT[1]  # A's flow to B:5201: its first packet opens it (the full path)
        assert w.out([first], T0) == _full_out(full, first, T0)
        assert wnet.firewall.counters.get("tracked_pass", 0) == 0
        burst = [VNETS[0] + OUT[0]] * 5 + [VNETS[2] + OUT[1]]
        got = w.out(burst, T0 + 1)
        assert len(got) == 6 and all(kind == "sealed" for kind, _ in got)
        assert got == [x for b in burst for x in _full_out(full, b, T0 + 1)]
        assert wnet.firewall.counters["tracked_pass"] == 6
    finally:
        w.close()
