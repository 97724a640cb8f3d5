"""Pieces of one UDP GRO read that belong to different worker slots (runtime/dpworkers.py, Handoff).

All counter partitions of a peer share one address pair, so the kernel's UDP GRO joins their
datagrams into one read, and steers that read by its first piece only (runtime/dpsteer.py). A
process that dropped the pieces it cannot open lost segments of concurrent TCP flows (the
reverted first version of the workers). Here a GSO send over loopback makes such a read for
real: the kernel hands it whole to the socket of its first piece. Every piece must then be
opened exactly once, by the process that holds its partition's replay window.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import random
import select
import socket
import struct
import time

from test_transport import A, Pair, events
from test_workers_crypto import _up, _worker

from weftnet.core.identity import Identity
from weftnet.core.node import NodeCore
from weftnet.core.session.train import Train
from weftnet.core.session.transport import Received
from weftnet.runtime.dpsteer import open_steered_group, steer_slot, steering_program
from weftnet.runtime.dpworkers import Handoff, _WorkerLoop
from weftnet.runtime.driver import UdpDriver

SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104
SLOTS = 3


def _group(n: int) -> list[socket.socket]:
    group = open_steered_group("127.0.0.1", 0, n)
    for s in group:
        s.setsockopt(SOL_UDP, UDP_GRO, 1)
    return group


def _send_merged(tx: socket.socket, port: int, datagrams: list[bytes]) -> None:
    """One GSO send of equal-sized datagrams: on loopback the receiver with UDP_GRO gets it as one
    read, as GRO makes of a burst from a peer on a real link."""
    tx.sendmsg([b"".join(datagrams)], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(datagrams[0])))], 0,
               ("127.0.0.1", port))


def _payload(i: int) -> bytes:
    return b"\x01\x20" + i.to_bytes(4, "big") + bytes(200)  # equal sizes: GRO joins only those


def _wait_readable(socks, timeout: float = 0.5) -> list:
    return select.select(socks, [], [], timeout)[0]


class _Sender:
    """Node A: its main process seals partition 0, its workers partitions 1 and 2."""

    def __init__(self, p: Pair):
        self.p = p
        self.workers = {k: _worker(p.a, p.ib.node_id, k) for k in range(1, SLOTS)}

    def seal(self, slot: int, payload: bytes) -> bytes:
        if slot == 0:
            self.p.a.send_to(self.p.ib.node_id, payload, self.p.now)
            (d, _dst), = self.p.a.datagrams_to_send(self.p.now)
            return d
        (d,) = self.workers[slot].seal(self.p.ib.node_id.raw, payload, self.p.now)
        return d


def test_the_kernel_hands_pieces_of_several_partitions_to_one_socket_in_one_read():
    p = Pair()
    _up(p)
    sender = _Sender(p)
    group = _group(SLOTS)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        pieces = [sender.seal(k, _payload(i)) for i, k in enumerate((1, 2, 0, 2, 1))]
        assert len({len(d) for d in pieces}) == 1
        _send_merged(tx, group[0].getsockname()[1], pieces)
        assert _wait_readable(group) == [group[1]]  # steered by its first piece
        data, anc, _flags, _addr = group[1].recvmsg(65535, socket.CMSG_SPACE(4))
        seg = [struct.unpack("=i", v[:4])[0] for lvl, kind, v in anc if (lvl, kind) == (SOL_UDP, UDP_GRO)]
        assert data == b"".join(pieces) and seg == [len(pieces[0])]  # one read, five pieces, three partitions
        assert [steer_slot(d, SLOTS) for d in pieces] == [1, 2, 0, 2, 1]
    finally:
        tx.close()
        for s in group:
            s.close()


def test_every_piece_of_mixed_reads_is_opened_once_by_the_process_that_owns_its_partition():
    """Concurrent flows at A's three slots, their datagrams joined in reads of mixed partitions
    at B: B's main transport and B's two workers each open exactly their own partition's
    payloads, all of them, and refuse none as foreign or replayed."""
    p = Pair()
    _up(p)
    sender = _Sender(p)
    p.b.worker_slots = frozenset(range(1, SLOTS))  # B runs workers: its main process opens partition 0 only
    b_workers = {k: _worker(p.b, p.ia.node_id, k) for k in range(1, SLOTS)}
    group = _group(SLOTS)
    handoff = Handoff(SLOTS)
    floors = mmap.mmap(-1, 8 * 16)
    ctrl = socket.socketpair()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loops = {}
    for k in range(1, SLOTS):
        loops[k] = _WorkerLoop(k, {}, set(), {}, group[k], ctrl[0], floors, os.getpid(), handoff)
        loops[k].crypto = b_workers[k]
    rng = random.Random(16)
    sent: dict[int, set[bytes]] = {k: set() for k in range(SLOTS)}
    opened: dict[int, list[bytes]] = {k: [] for k in range(SLOTS)}
    try:
        port = group[0].getsockname()[1]
        n = 0
        for _read in range(40):
            batch = []
            for _ in range(rng.randint(2, 12)):
                slot, payload = rng.randrange(SLOTS), _payload(n)
                n += 1
                sent[slot].add(payload)
                batch.append(sender.seal(slot, payload))
            _send_merged(tx, port, batch)
        # Each process reads its socket (the reads the kernel steered to it), then its inbox.
        while _wait_readable(group + handoff.rx, 0.2):
            while True:
                try:
                    data, anc, _f, addr = group[0].recvmsg(65535, socket.CMSG_SPACE(4))
                except BlockingIOError:
                    break
                seg = next(struct.unpack("=i", v[:4])[0] for lvl, kind, v in anc if (lvl, kind) == (SOL_UDP, UDP_GRO))
                for d in (handoff.split(0, data, seg, addr) if seg < len(data) else [data]):
                    p.b.receive_datagram(d, A, p.now)
            for k, loop in loops.items():  # a read of one payload of ours is opened whole (a Train)
                opened[k] += [plain for _node, plain in loop._opened(loop._datagrams(), p.now)]
            for _addr, pieces in handoff.receive(0):
                for d in pieces:
                    p.b.receive_datagram(d, A, p.now)
            for k, loop in loops.items():
                for d in loop._handed():
                    r = loop.crypto.open(d, p.now)
                    if r is not None:
                        opened[k].append(r[1])
        opened[0] = [e.payload for e in events(p.b) if isinstance(e, Received)]
        for k in range(SLOTS):
            assert len(opened[k]) == len(sent[k]) and set(opened[k]) == sent[k], (k, len(opened[k]), len(sent[k]))
        assert all(w.stats["foreign_dropped"] == 0 and w.stats["replays_dropped"] == 0 for w in b_workers.values())
        assert p.b.stats["replays_dropped"] == 0
        assert handoff.stats["handed"] > 0 and handoff.stats["lost"] == 0
        assert handoff.stats["handed"] == handoff.stats["handed_in"]
    finally:
        tx.close()
        handoff.close()
        floors.close()
        for s in [*group, *ctrl]:
            s.close()


def test_the_main_driver_keeps_its_pieces_and_hands_a_workers_to_it():
    async def run():
        rng = random.Random(5)
        core = NodeCore(Identity.generate(rng), rng, time.time())
        group = _group(2)
        handoff = Handoff(2)
        driver = UdpDriver(core, group[0])
        driver.divert, driver.divert_slots = (lambda data, seg, addr: handoff.split(0, data, seg, addr)), 2
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            p = Pair()
            _up(p)
            sender = _Sender(p)
            pieces = [sender.seal(k, _payload(i)) for i, k in enumerate((0, 1, 0, 1, 1))]
            _send_merged(tx, group[0].getsockname()[1], pieces)
            for _ in range(50):
                await asyncio.sleep(0.01)
                if driver.received:
                    break
            assert driver.received == 2  # its own two pieces went to its core (which cannot open them: not its peer)
            handed = [d for _addr, ps in handoff.receive(1) for d in ps]
            assert handed == [pieces[1], pieces[3], pieces[4]]
            assert handoff.stats["lost"] == 0
        finally:
            tx.close()
            driver.close()
            group[1].close()
            handoff.close()

    asyncio.run(run())


class _Recording:
    """A driver's core that records each batch it is handed and lets transport B open it."""

    def __init__(self, core: NodeCore, p: Pair):
        self._core, self.p, self.batches = core, p, []

    def receive_datagrams(self, batch, _now):
        self.batches.append(batch)
        self.p.b.receive_datagrams([(d, A) for d, _src in batch], self.p.now)  # on the pair's clock

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_the_main_driver_opens_a_run_of_its_own_partition_whole():
    """With workers, a GRO read that is one payload of the main process's partition goes to its
    transport whole, joined as read (one copy, no cutting in pieces), and is opened once; the
    first version cut every GRO read in pieces to sort them (twice the CPU per GB at a receiver
    whose flow the main process carries)."""
    async def run():
        rng = random.Random(6)
        core = NodeCore(Identity.generate(rng), rng, time.time())
        group = _group(2)
        handoff = Handoff(2)
        driver = UdpDriver(core, group[0])
        driver.divert, driver.divert_slots = (lambda data, seg, addr: handoff.split(0, data, seg, addr)), 2
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            p = Pair()
            _up(p)
            p.b.worker_slots = frozenset({1})  # B runs a worker: its main process opens partition 0
            driver.core = rec = _Recording(core, p)
            big = b"\x01\x20" + bytes(range(256)) * 200
            p.a.send_to(p.ib.node_id, big, p.now)
            pieces = [d for d, _dst in p.a.datagrams_to_send(p.now)]
            assert len(pieces) > 2 and {steer_slot(d, 2) for d in pieces} == {0}
            _send_merged(tx, group[0].getsockname()[1], pieces)
            for _ in range(50):
                await asyncio.sleep(0.01)
                if driver.received:
                    break
            (batch,) = rec.batches
            (train, _src), = batch
            assert type(train) is Train and train.sealed is not None  # joined as read, not cut in pieces
            assert driver.received == len(pieces)
            assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [big]
            assert handoff.stats["handed"] == 0
        finally:
            tx.close()
            driver.close()
            group[1].close()
            handoff.close()

    asyncio.run(run())


def _run_cbpf(prog: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """Classic BPF as the kernel runs the steering program (only the opcodes it uses)."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x80:
            a = len(pkt)
        elif code == 0x30:
            if k >= len(pkt):
                return 0  # the kernel ends a program that reads past the end: socket 0's fallback
            a = pkt[k]
        elif code == 0x54:
            a &= k
        elif code in (0x35, 0x15):
            pc += jt if (a >= k if code == 0x35 else a == k) else jf
        elif code == 0x16:
            return a
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {code:#x}")


def test_the_pieces_are_steered_by_the_kernels_own_rule():
    rng = random.Random(3)
    for workers in (2, 3, 16):
        prog = steering_program(workers)
        for _ in range(3000):
            size = rng.choice((0, 1, 2, 7, 13, 14, 15, 40))
            pkt = bytes(rng.choice((0, 1, 4, 7, rng.randrange(256))) for _ in range(size))
            assert steer_slot(pkt, workers) == _run_cbpf(prog, pkt), (workers, pkt.hex())
