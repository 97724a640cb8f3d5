"""A fragmented payload as one Train: one UDP GSO send out, one UDP GRO read in (core/session/train.py).

The bytes on the wire must be exactly those of the piece-by-piece path, and a run read whole must
be decided exactly as its pieces would be: delivered once, a tampered or replayed one refused,
anything that is not one payload's complete run taken piece by piece.
"""

import asyncio
import socket

from hypothesis import given, settings
from hypothesis import strategies as st
from test_transport import A, Pair, big, events, msg

from weftnet.core.session.train import RunBuffer, SealBuffer, Train, cut, join
from weftnet.core.session.transport import MAX_REASSEMBLED, Received


def pieces_one_by_one(head: bytes, sealed: bytes, step: int) -> list[bytes]:
    count = -(-len(sealed) // step)
    return [head + bytes((i, count)) + sealed[i * step:(i + 1) * step] for i in range(count)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=17, max_value=40_000), st.integers(min_value=64, max_value=9000), st.binary(min_size=14, max_size=14))
def test_cut_lays_out_the_same_datagrams_as_piece_by_piece_and_join_undoes_it(size, step, head):
    sealed = bytes(range(256)) * (size // 256) + bytes(size % 256)
    if -(-size // step) > 64:
        return
    run, count = cut(head, sealed, step)
    assert Train(run, step + 16).datagrams() == pieces_one_by_one(head, sealed, step)
    assert count == -(-size // step)
    if count >= 2 and head[:2] == b"\x01\x07":
        assert join(run, step + 16, 64, MAX_REASSEMBLED) == sealed


def test_join_refuses_anything_but_one_payloads_complete_run_in_order():
    head = b"\x01\x07" + bytes(range(12))
    sealed = bytes(range(200)) * 30  # 6,000 bytes: 5 pieces of 1,328
    run, count = cut(head, sealed, 1328)
    seg = 1344
    assert count == 5 and join(run, seg, 64, MAX_REASSEMBLED) == sealed
    parts = Train(run, seg).datagrams()
    swapped = b"".join([parts[0], parts[2], parts[1], *parts[3:]])
    other_counter = bytearray(run)
    other_counter[2 * seg + 13] ^= 1  # one piece of another payload
    bad_count = bytearray(run)
    bad_count[3 * seg + 15] = 6
    for bad in (swapped, bytes(other_counter), bytes(bad_count), run[:-seg + 10],  # missing last piece
                b"".join(parts[:4]),  # four of five
                run + parts[4]):  # a piece too many
        assert join(bytes(bad), seg, 64, MAX_REASSEMBLED) is None
    assert join(run, seg, 4, MAX_REASSEMBLED) is None  # more pieces than allowed
    assert join(run, seg, 64, 5_000) is None  # more bytes than any payload


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=17, max_value=20_000), st.sampled_from([1344, 1472, 1452, 600]),
       st.integers(min_value=0, max_value=5), st.integers(min_value=0, max_value=255))
def test_a_run_read_is_joined_out_of_the_receive_buffer_as_join_would(size, seg, mutation, value):
    """Train.read joins a run while it is still in the receive buffer (a view the next read
    overwrites): the same payload and first header as join() on its bytes, nothing that refers
    to the buffer, and for anything that is not one payload's run, its bytes for the slow path."""
    sealed = bytes(range(256)) * (size // 256) + bytes(size % 256)
    run, count = cut(b"\x01\x07" + bytes(range(40, 52)), sealed, seg - 16)
    run = bytearray(run)
    if mutation == 1:
        run[(value % count) * seg + value % 16] ^= 1 + value % 255  # a header byte of some piece
    elif mutation == 2:
        run = run[:max(1, len(run) - 1 - value)]
    elif mutation == 3:
        run[15] = value  # another count
    buf = bytearray(b"\xee" * 70_000)
    buf[:len(run)] = run
    t = Train.read(memoryview(buf)[:len(run)], seg, 64, MAX_REASSEMBLED)
    want = join(bytes(run), seg, 64, MAX_REASSEMBLED)
    buf[:] = bytes(len(buf))  # the next read
    assert t.sealed == want and t.count == -(-len(run) // seg)
    if want is None:
        assert t.data == bytes(run)
    else:
        assert t.data is None and t.first == (int.from_bytes(run[2:6], "big"), int.from_bytes(run[6:14], "big"), 0, count)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=64_000), st.sampled_from([1328, 1456, 1436, 584, 9000])),
                min_size=1, max_size=6), st.sampled_from(["aes-256-gcm", "chacha20-poly1305"]))
def test_a_payload_sealed_into_the_buffer_is_cut_as_sealing_and_cutting_it_would(sizes, cipher):
    """SealBuffer.seal_cut (sealed into a kept buffer, cut from its kept views) makes the run
    cut(head, encrypt(payload)) makes, for any size and piece size in any order; a run it returned
    is its own bytes (a later seal into the same buffer leaves it as it was)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    aead = (AESGCM if cipher == "aes-256-gcm" else ChaCha20Poly1305)(bytes(range(32)))
    buf = SealBuffer(MAX_REASSEMBLED)
    runs = []
    for i, (size, step) in enumerate(sizes):
        payload = bytes([i + 1]) * size
        if -(-(size + 16) // step) > 64:
            continue
        nonce = bytes(4) + i.to_bytes(8, "little")
        head = b"\x01\x07" + bytes(range(i, i + 12))
        run, count = buf.seal_cut(aead, nonce, payload, head, step)
        want = cut(head, aead.encrypt(nonce, payload, None), step)
        assert (run, count) == want
        runs.append((run, bytes(run)))
    for run, copy in runs:
        assert run == copy


def test_the_receive_buffer_decides_every_run_as_join_does_whatever_was_read_before():
    """RunBuffer.read (the views of each segment size kept on the buffer) against join() on the
    run's bytes: runs of many segment sizes (more than it keeps views for) and lengths one after
    another in one buffer, whole, cut short, with a header changed or another count; the payload
    it returns is its own (the next read into the buffer leaves it as it was)."""
    import random

    rng = random.Random(5)
    rx = RunBuffer(65_535)
    kept = []
    for k in range(400):
        seg = rng.choice([1344, 1472, 1452, 600] + [rng.randrange(17, 9000) for _ in range(2)])
        size = rng.randrange(17, 60_000)
        if -(-size // (seg - 16)) > 64:
            continue
        sealed = rng.randbytes(size)
        run = bytearray(cut(b"\x01\x07" + rng.randbytes(12), sealed, seg - 16)[0])
        count = run[15]
        mutation = rng.randrange(6)
        if mutation == 1:
            at = rng.randrange(count) * seg + rng.randrange(16)
            run[at] ^= rng.randrange(1, 256)
        elif mutation == 2:
            run = run[:rng.randrange(1, len(run))]
        elif mutation == 3:
            run[15] = rng.randrange(256)
        elif mutation == 4:
            run = run + bytes(rng.randrange(1, 40))
        if len(run) > 65_535:
            continue
        rx.view[:len(run)] = run
        want = join(bytes(run), seg, 64, MAX_REASSEMBLED)
        assert rx.join(len(run), seg, 64, MAX_REASSEMBLED) == want
        t = rx.read(len(run), seg, 64, MAX_REASSEMBLED)
        assert t.sealed == want and t.count == -(-len(run) // seg)
        if want is None:
            assert t.data == bytes(run)
        else:
            assert t.first == (int.from_bytes(run[2:6], "big"), int.from_bytes(run[6:14], "big"), 0, count)
            if mutation in (0, 5):  # (cut short or lengthened in its last piece, it is another payload)
                assert want == sealed
            kept.append((t.sealed, want))
        rx.view[:] = bytes(len(rx.view))  # the next read
    assert len(kept) > 50
    assert all(a == b for a, b in kept)


def trained(p: Pair, payload: bytes) -> list:
    p.a.trains = True
    p.a.send(p.contact_b(), payload, p.now)
    out = p.a.datagrams_to_send(p.now)
    p.a.trains = False
    return out


def test_a_payload_leaves_as_one_train_and_is_opened_once_from_it():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.a), events(p.b)
    out = trained(p, big(1))
    assert len(out) == 1 and type(out[0][0]) is Train
    train = out[0][0]
    assert train.count == -(-(len(big(1)) + 16) // (1344 - 16)) and train.seg == 1344
    assert all(len(d) <= 1344 and d[1] == 7 for d in train.datagrams())
    peer = p.a._peers[p.ib.public_key]
    assert peer.packets_out >= train.count
    p.b.receive_datagrams([(train, A)], p.now)
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [big(1)]
    assert not p.b._reassembly
    p.b.receive_datagrams([(train, A)], p.now)  # the same run again
    assert events(p.b) == [] and p.b.stats["replays_dropped"] >= 1
    # Its datagrams one by one (a receiver without GRO) are the same payload.
    out = trained(p, big(2))
    p.b.receive_datagrams([(d, A) for d in out[0][0].datagrams()], p.now)
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [big(2)]


def test_a_tampered_train_fails_whole_and_a_read_of_two_payloads_still_delivers_both():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.b)
    train = trained(p, big(3))[0][0]
    bad = bytearray(train.data)
    bad[5 * train.seg + 100] ^= 1
    p.b.receive_datagrams([(Train(bytes(bad), train.seg), A)], p.now)
    assert events(p.b) == [] and p.b.stats["auth_failures"] == 1
    # GRO joins datagrams of equal size: two payloads whose last pieces are full come as one read.
    size = 10 * 1328 - 16 - 2
    one, two = trained(p, big(4, size))[0][0], trained(p, big(5, size))[0][0]
    assert len(one.data) == 10 * 1344
    p.b.receive_datagrams([(Train(one.data + two.data, 1344), A)], p.now)
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [big(4, size), big(5, size)]


def test_a_train_from_a_stranger_buffers_nothing_and_an_oversized_one_is_refused():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    forged, _ = cut(b"\x01\x07" + b"\x00\x00\x00\x09" + bytes(8), bytes(5000), 1328)
    p.b.receive_datagrams([(Train(forged, 1344), A)], p.now)
    assert p.b.stats["unknown_index_dropped"] >= 4 and not p.b._reassembly
    index = p.b._peers[p.ia.public_key].current.local_index
    huge, _ = cut(b"\x01\x07" + index.to_bytes(4, "big") + (50).to_bytes(8, "big"), bytes(3 * 30_000), 30_000)
    p.b.receive_datagrams([(Train(huge, 30_016), A)], p.now)
    assert not p.b._reassembly and p.b.stats["malformed_dropped"] == 1 and p.b.stats["auth_failures"] == 0


def test_the_driver_sends_a_large_payload_in_one_gso_send_and_the_other_opens_it():
    """Two nodes' drivers on loopback: a 60 kB payload leaves in one sendmsg (a Train), is read in
    one recvmsg with UDP GRO and delivered whole; the send backlog counts a Train's datagrams."""
    from weftnet.core.identity import Identity
    from weftnet.core.node import NodeCore
    from weftnet.runtime.driver import BACKLOG_MAX, UdpDriver, open_udp_socket
    import random
    import time

    async def main():
        cores = [NodeCore(Identity.generate(random.Random(i)), random.Random(10 + i), time.time()) for i in (1, 2)]
        drivers = [UdpDriver(c, open_udp_socket("127.0.0.1", 0)) for c in cores]
        a, b = drivers
        try:
            if not a.gso:
                return  # a kernel without UDP GSO: the datagrams go one by one (tested elsewhere)
            got = []
            await a.request(lambda c, now: c.connect(b.core.endpoint, now), timeout=5)
            # From now on B's transport hands payloads of type 0x20 (test_transport.msg) to the test.
            sink, types = b.core.transport.sink, b.core.transport.sink_types
            b.core.transport.sink_types = types | {0x20}
            b.core.transport.sink = lambda nid, data, now: got.append(data) if data[1] == 0x20 else sink(nid, data, now)
            assert a.core.transport.trains
            sends, sent = a.gso_sends, a.sent
            payload = b"\x01\x20" + random.Random(7).randbytes(60_000)
            a.core.transport.send_to(b.core.node_id, payload, time.time())
            a.transmit()
            assert a.gso_sends == sends + 1 and a.sent - sent == -(-(len(payload) + 16) // (1344 - 16))
            # Small datagrams and Trains to one address in one batch: each leaves, in order.
            more = [b"\x01\x20" + random.Random(8 + i).randbytes(n) for i, n in enumerate((51_000, 52_000))]
            for p in (msg(1), more[0], msg(2), msg(3), more[1]):
                a.core.transport.send_to(b.core.node_id, p, time.time())
            a.transmit()
            sent_in_order = [payload, msg(1), more[0], msg(2), msg(3), more[1]]
            for _ in range(250):
                if len([d for d in got if d in sent_in_order]) == len(sent_in_order):
                    break
                await asyncio.sleep(0.02)
            assert [d for d in got if d in sent_in_order] == sent_in_order
            assert b.core.transport.stats["auth_failures"] == 0
            # A full socket: Trains wait in the backlog, bounded by the datagrams they hold.
            train = Train(bytes(1344 * 40), 1344)
            a._backlog.append((b"x", ("127.0.0.1", 9)))
            a._backlog_weight = 1
            dropped = a.dropped
            a._queue([(train, ("127.0.0.1", 9))] * (BACKLOG_MAX // 40 + 5))
            assert a._backlog_weight <= BACKLOG_MAX
            assert sum(d.count if type(d) is Train else 1 for d, _ in a._backlog) == a._backlog_weight
            assert a.dropped - dropped == 1 + 40 * (BACKLOG_MAX // 40 + 5) - a._backlog_weight
        finally:
            for d in drivers:
                d.close()

    asyncio.run(main())
