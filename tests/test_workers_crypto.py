"""A data-plane worker's crypto (core/session/workers.py) against the real transport: what a
worker seals with the keys the main process hands it, a plain SecureTransport and the peer's
worker open, each once; other partitions, replays and forgeries are refused; an old session asks
for a rekey and the new keys carry on; a restarted worker never repeats a counter."""

from __future__ import annotations

from test_transport import A, Pair, events, msg

from weftnet.core.session.replay import PARTITION_SHIFT, partition_of
from weftnet.core.session.transport import Received, TransportConfig
from weftnet.core.session.workers import COUNTER_BLOCK, SEND_MARGIN, WorkerCrypto, WorkerSlots
from weftnet.core.wire import decode, encode


def _up(p: Pair) -> None:
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    events(p.a), events(p.b)


def _worker(t, peer, slot: int, start: int = 0) -> WorkerCrypto:
    w = WorkerCrypto(slot, start, t.config.rekey_after_time, t.config.reject_after_time)
    w.install(*t.worker_keys([peer]))
    return w


def test_a_plain_transport_opens_what_a_worker_sealed_small_and_fragmented():
    p = Pair()
    _up(p)
    w = _worker(p.a, p.ib.node_id, 3)
    big = b"\x01\x20" + bytes(range(256)) * 200  # cut in TransportFragment pieces, sealed once
    out = w.seal(p.ib.node_id.raw, msg(7), p.now) + w.seal(p.ib.node_id.raw, big, p.now)
    assert len(out) > 2 and all(partition_of(int.from_bytes(d[6:14], "big")) == 3 for d in out)
    for d in out[::-1]:
        p.b.receive_datagram(d, A, p.now)
    p.a.send_to(p.ib.node_id, msg(8), p.now)  # the main process's own partition 0 goes on too
    for d, _ in p.a.datagrams_to_send(p.now):
        p.b.receive_datagram(d, A, p.now)
    got = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert sorted(got) == sorted([msg(7), big, msg(8)])


def test_the_peers_worker_opens_its_own_partition_once_and_nothing_else():
    p = Pair()
    _up(p)
    wa = _worker(p.a, p.ib.node_id, 1)
    wb = _worker(p.b, p.ia.node_id, 1)
    other = _worker(p.a, p.ib.node_id, 2)
    big = b"\x01\x20" + bytes(3000)
    mine = wa.seal(p.ib.node_id.raw, msg(1), p.now) + wa.seal(p.ib.node_id.raw, big, p.now)
    opened = [wb.open(d, p.now) for d in mine]
    assert [r[1] for r in opened if r] == [msg(1), big]
    assert all(r[0] == p.ia.node_id.raw for r in opened if r)
    assert [wb.open(d, p.now) for d in mine] == [None] * len(mine)  # replays
    assert wb.stats["replays_dropped"] == len(mine)
    theirs = other.seal(p.ib.node_id.raw, msg(2), p.now)[0]
    assert wb.open(theirs, p.now) is None and wb.stats["foreign_dropped"] == 1  # slot 2's window is elsewhere
    forged = bytearray(wa.seal(p.ib.node_id.raw, msg(3), p.now)[0])
    forged[-1] ^= 1
    assert wb.open(bytes(forged), p.now) is None and wb.stats["auth_failures"] == 1


def test_an_old_session_asks_for_a_rekey_and_the_new_keys_carry_on():
    p = Pair(TransportConfig(rekey_after_time=120, reject_after_time=180))
    _up(p)
    node = p.ib.node_id
    wa, wb = _worker(p.a, node, 1), _worker(p.b, p.ia.node_id, 1)
    p.now += 121
    assert wa.wants_rekey(node.raw, p.now)
    assert wb.open(wa.seal(node.raw, msg(1), p.now)[0], p.now)[1] == msg(1)  # still sealing meanwhile
    p.a.send_to(node, b"", p.now)  # what the main process does when its worker asks
    p.deliver()
    events(p.a), events(p.b)
    wa.install(*p.a.worker_keys([node]))
    wb.install(*p.b.worker_keys([p.ia.node_id]))
    assert not wa.wants_rekey(node.raw, p.now)
    d = wa.seal(node.raw, msg(2), p.now)[0]
    assert wb.open(d, p.now)[1] == msg(2)
    # The old keys stop sealing before the receiver would refuse them.
    stale = WorkerCrypto(1, 0, 120, 180)
    stale.install(*p.a.worker_keys([node]))
    p.now += 180 - SEND_MARGIN
    assert stale.seal(node.raw, msg(3), p.now) is None


def test_a_restarted_worker_starts_above_every_counter_its_predecessor_used():
    p = Pair()
    _up(p)
    w = _worker(p.a, p.ib.node_id, 1)
    floor = w.reserve()  # what the runtime stores in shared memory before sealing
    used = [int.from_bytes(w.seal(p.ib.node_id.raw, msg(i), p.now)[0][6:14], "big") for i in range(5)]
    assert floor == COUNTER_BLOCK and w.reserve() is None
    again = _worker(p.a, p.ib.node_id, 1, start=floor)  # the worker died; the new one reads the floor
    nxt = int.from_bytes(again.seal(p.ib.node_id.raw, msg(9), p.now)[0][6:14], "big")
    assert nxt > max(used) and nxt == (1 << PARTITION_SHIFT) | floor


def test_a_worker_stopped_on_purpose_hands_its_windows_on_and_nothing_opens_twice():
    p = Pair()
    _up(p)
    wa, wb = _worker(p.a, p.ib.node_id, 1), _worker(p.b, p.ia.node_id, 1)
    sent = [wa.seal(p.ib.node_id.raw, msg(i), p.now)[0] for i in range(3)]
    assert all(wb.open(d, p.now) for d in sent)
    successor = WorkerCrypto(1, 0)
    successor.install(*p.b.worker_keys([p.ia.node_id]), wb.windows())
    assert [successor.open(d, p.now) for d in sent] == [None] * 3  # replays, after the handover too
    later = wa.seal(p.ib.node_id.raw, msg(9), p.now)[0]
    assert successor.open(later, p.now)[1] == msg(9)


def test_worker_slots_is_a_one_byte_message():
    assert encode(WorkerSlots(4)) == b"\x01\x31\x04"
    assert decode(b"\x01\x31\x10") == WorkerSlots(16)


def test_the_main_transport_never_opens_a_partition_of_its_own_workers():
    p = Pair()
    _up(p)
    p.b.worker_slots = frozenset({1})  # B runs a worker in slot 1: that window is the worker's
    w1, w2 = _worker(p.a, p.ib.node_id, 1), _worker(p.a, p.ib.node_id, 2)
    for d in w1.seal(p.ib.node_id.raw, msg(1), p.now) + w2.seal(p.ib.node_id.raw, msg(2), p.now):
        p.b.receive_datagram(d, A, p.now)
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(2)]


def test_a_worker_seals_a_large_payload_as_one_train_and_its_peer_opens_the_run_whole():
    """With ``trains`` a worker's fragmented payload is one Train (one GSO send): its datagrams are
    what the plain transport opens; the peer's worker opens a GRO read of it at once, once."""
    from weftnet.core.session.train import Train

    p = Pair()
    _up(p)
    wa = _worker(p.a, p.ib.node_id, 1)
    wa.trains = True
    wb = _worker(p.b, p.ia.node_id, 1)
    other = _worker(p.b, p.ia.node_id, 2)
    big = b"\x01\x20" + bytes(range(256)) * 200
    (t,) = wa.seal(p.ib.node_id.raw, big, p.now)
    assert type(t) is Train and t.count > 2 and t.seg == p.a.config.max_datagram
    assert wa.seal(p.ib.node_id.raw, msg(1), p.now)[0][:2] == b"\x01\x04"  # small: one datagram as before
    assert other.open_train(t.data, t.seg, p.now) is False  # slot 2 does not hold slot 1's window
    assert wb.open_train(t.data, t.seg, p.now) == (p.ia.node_id.raw, big)
    assert wb.open_train(t.data, t.seg, p.now) is None and wb.stats["replays_dropped"] == 1
    (t2,) = wa.seal(p.ib.node_id.raw, big, p.now)
    bad = bytearray(t2.data)
    bad[-1] ^= 1
    assert wb.open_train(bytes(bad), t2.seg, p.now) is None and wb.stats["auth_failures"] == 1
    assert wb.open_train(t2.data[: t2.seg * 2], t2.seg, p.now) is False  # not a whole payload: piece by piece
    for d in t2.datagrams():  # what the plain transport receives of it, one by one
        p.b.receive_datagram(d, A, p.now)
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [big]


def test_a_run_joined_as_read_is_laid_out_again_byte_for_byte_for_the_process_it_belongs_to():
    """A worker hands another partition's GRO read on as the datagrams it came as; one joined
    as it was read (RunBuffer) is laid out again from its header fields and payload: the same bytes."""
    import random

    from weftnet.core.session.train import RunBuffer, cut, join
    from weftnet.core.session.workers import relaid

    rng = random.Random(3)
    rx = RunBuffer(65_535)
    for _ in range(200):
        seg = rng.choice([1344, 1472, 1452, 600, rng.randrange(40, 9000)])
        local, counter = rng.getrandbits(32), rng.getrandbits(64)
        sealed = rng.randbytes(rng.randrange(seg - 15, 60_000))
        if -(-len(sealed) // (seg - 16)) > 64:
            continue
        run = bytes(cut(b"\x01\x07" + local.to_bytes(4, "big") + counter.to_bytes(8, "big"), sealed, seg - 16)[0])
        rx.view[:len(run)] = run
        t = rx.read(len(run), seg, 64, 65_016)
        assert t.sealed == sealed == join(run, seg, 64, 65_016)
        assert relaid(t.first[0], t.first[1], t.sealed, seg) == run
