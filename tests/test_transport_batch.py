"""SecureTransport.receive_datagrams: a batch's in-order runs of fragments are joined at once.

The fast path must decide exactly what the piece-by-piece path decides: deliver a payload once,
refuse a replayed or tampered one, buffer nothing for a stranger, and fall back for anything else.
"""

from test_transport import A, C, Pair, big, events, msg

from weftnet.core.session.transport import Received


def fragments(p: Pair, payload: bytes) -> list:
    p.a.send(p.contact_b(), payload, p.now)
    return p.a.datagrams_to_send(p.now)


def test_a_run_of_fragments_is_one_payload_and_a_replayed_run_is_refused():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.a), events(p.b)
    out = fragments(p, big(1)) + fragments(p, big(2))
    before = p.b.stats["malformed_dropped"]
    p.b.receive_datagrams(out, p.now)
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [big(1), big(2)]
    assert not p.b._reassembly and p.b.stats["malformed_dropped"] == before  # nothing went piece by piece
    peer = p.b._peers[p.ia.public_key]
    assert peer.packets_in >= len(out)
    p.b.receive_datagrams(out, p.now)
    assert events(p.b) == [] and p.b.stats["replays_dropped"] >= 2


def test_mixed_reordered_and_partial_batches_fall_back_and_still_deliver_once():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.b)
    one, two = fragments(p, big(3)), fragments(p, big(4))
    p.a.send(p.contact_b(), msg(9), p.now)
    small = p.a.datagrams_to_send(p.now)
    swapped = one[:2] + [one[3], one[2]] + one[4:]
    p.b.receive_datagrams(small + swapped + two[:5], p.now)  # a run cut at the batch's end waits ...
    p.b.receive_datagrams(two[5:] + two[:2], p.now)  # ... for the rest, with duplicates
    got = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert sorted(got) == sorted([msg(9), big(3), big(4)])


def test_a_tampered_run_fails_whole_and_a_strangers_run_is_not_buffered():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.b)
    out = fragments(p, big(5))
    d, a = out[7]
    bad = bytearray(d)
    bad[-1] ^= 1
    out[7] = (bytes(bad), a)
    p.b.receive_datagrams(out, p.now)
    assert events(p.b) == [] and p.b.stats["auth_failures"] == 1
    # A run from another address (a stranger copying the header) is not one run; no session: no buffer.
    stranger = [(d, C if i % 2 else A) for i, (d, _) in enumerate(fragments(p, big(6)))]
    forged = [(b"\x01\x07" + b"\x00\x00\x00\x09" + bytes(8) + bytes((i, 3)) + b"x" * 100, C) for i in range(3)]
    p.b.receive_datagrams(forged + stranger[::-1][:3], p.now)
    assert p.b.stats["unknown_index_dropped"] >= 3 and all(k[0] != 9 for k in p.b._reassembly._table)


def test_a_run_adding_up_to_more_than_any_payload_goes_piece_by_piece_and_is_refused():
    from weftnet.core.session.transport import MAX_REASSEMBLED

    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    index = p.b._peers[p.ia.public_key].current.local_index
    piece = b"z" * 30_000
    run = [(b"\x01\x07" + index.to_bytes(4, "big") + (50).to_bytes(8, "big") + bytes((i, 3)) + piece, A)
           for i in range(3)]
    p.b.receive_datagrams(run, p.now)
    assert 3 * 30_000 > MAX_REASSEMBLED and not p.b._reassembly
    assert p.b.stats["malformed_dropped"] == 1 and p.b.stats["auth_failures"] == 0


def test_a_short_datagram_inside_a_run_costs_only_itself():
    """A 15-byte datagram after a run's first piece (index byte in place, no count byte) once
    raised out of the batch and lost every datagram after it (found by the ``train`` fuzz target)."""
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.b)
    out = fragments(p, big(7))
    p.a.send(p.contact_b(), msg(2), p.now)
    small = p.a.datagrams_to_send(p.now)
    short = (out[0][0][:14] + b"\x01", A)
    p.b.receive_datagrams([out[0], short] + out[1:] + small, p.now)
    got = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert sorted(got) == sorted([big(7), msg(2)]) and p.b.stats["malformed_dropped"] == 1
