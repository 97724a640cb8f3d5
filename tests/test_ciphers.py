"""Transport ciphers negotiated in the handshake (core/session/ciphers.py, docs/handshake.md,
"Transport ciphers"): two nodes that both prefer AES-256-GCM use it (and so do their data-plane
workers), a node that offers only ChaCha20-Poly1305 gets it whichever end it is, an older node
(no offer) interoperates, and an offer or a choice changed on the way breaks the handshake."""

from __future__ import annotations

import random

import pytest
from test_transport import A, B, T0, Pair, events, ident, msg

from weftnet.core.session import ciphers as cph
from weftnet.core.session import handshake as hs
from weftnet.core.session.packets import EarlyData, HandshakeInit, HandshakeResponse
from weftnet.core.session.transport import Received, SecureTransport, SessionUp, TransportConfig
from weftnet.core.session.workers import WorkerCrypto
from weftnet.core.wire import decode, encode
from weftnet.errors import ConfigError, HandshakeError
from weftnet.runtime.config import load_config
from weftnet.runtime.underlay import transport_ciphers

AES_FIRST = TransportConfig(ciphers=(cph.AES_256_GCM, cph.CHACHA20_POLY1305))
CHACHA_ONLY = TransportConfig()


def _pair(ca: TransportConfig, cb: TransportConfig) -> Pair:
    p = Pair()
    p.a = SecureTransport(p.ia, random.Random(3), p.now, ca)
    p.b = SecureTransport(p.ib, random.Random(4), p.now, cb)
    return p


def _current(t: SecureTransport, node):
    return t._by_node[node].current


def _talk(p: Pair) -> tuple[list, list]:
    """A first payload a -> b (early data of the Init), the handshake, then one each way."""
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    p.a.send_to(p.ib.node_id, msg(2), p.now)
    p.b.send_to(p.ia.node_id, msg(3), p.now)
    big = b"\x01\x20" + bytes(range(256)) * 100  # sealed once, sent in fragments
    p.a.send_to(p.ib.node_id, big, p.now)
    p.deliver()
    got_b = [e.payload for e in events(p.b) if isinstance(e, Received)]
    got_a = [e.payload for e in events(p.a) if isinstance(e, Received)]
    assert got_b == [msg(1), msg(2), big] and got_a == [msg(3)]
    return got_a, got_b


def test_two_nodes_that_prefer_aes_gcm_negotiate_it_and_carry_data_with_it():
    p = _pair(AES_FIRST, AES_FIRST)
    _talk(p)
    sa, sb = _current(p.a, p.ib.node_id), _current(p.b, p.ia.node_id)
    assert sa.cipher == sb.cipher == cph.AES_256_GCM
    # The data really is AES-GCM: the last datagram a sent opens with AESGCM under its key.
    p.a.send_to(p.ib.node_id, msg(9), p.now)
    (pkt, _), = p.a.datagrams_to_send(p.now)
    counter = int.from_bytes(pkt[6:14], "big")
    nonce = bytes(4) + counter.to_bytes(8, "little")
    assert cph.AESGCM(sb.recv_key).decrypt(nonce, pkt[14:], None) == msg(9)
    with pytest.raises(Exception):
        cph.ChaCha20Poly1305(sb.recv_key).decrypt(nonce, pkt[14:], None)


@pytest.mark.parametrize("ca, cb", [(AES_FIRST, CHACHA_ONLY), (CHACHA_ONLY, AES_FIRST), (CHACHA_ONLY, CHACHA_ONLY)])
def test_a_node_that_offers_only_chacha_gets_chacha_whichever_end_it_is(ca, cb):
    p = _pair(ca, cb)
    _talk(p)
    assert _current(p.a, p.ib.node_id).cipher == _current(p.b, p.ia.node_id).cipher == cph.CHACHA20_POLY1305


def test_a_chacha_only_node_sends_the_handshake_of_before():
    """No offer, no choice: an older node sees exactly the bytes it always did (and a node that
    offers gets an older responder's empty Response payload as ChaCha20-Poly1305, above)."""
    p = _pair(CHACHA_ONLY, CHACHA_ONLY)
    p.a.send(p.contact_b(), b"", p.now)  # nothing to carry: an empty early-data field
    (init, _), = p.a.datagrams_to_send(p.now)
    assert len(init) == 164
    q = _pair(AES_FIRST, CHACHA_ONLY)
    q.a.send(q.contact_b(), b"", q.now)
    (init2, _), = q.a.datagrams_to_send(q.now)
    assert len(init2) == 164 + 4 + 4  # EarlyData header and length, the list 01 02 02 01
    res = hs.consume_init(q.ib, decode(init2))
    assert decode(res.payload) == EarlyData(b"", bytes((1, 2, 2, 1)))


def test_an_initiator_that_offers_aes_interoperates_with_a_responder_that_ignores_offers():
    """An older responder unwraps the early data, ignores the tail and answers with an empty payload."""
    p = _pair(AES_FIRST, CHACHA_ONLY)
    p.a.send(p.contact_b(), msg(1), p.now)
    (init, _), = p.a.datagrams_to_send(p.now)
    res = hs.consume_init(p.ib, decode(init))
    assert decode(res.payload).payload == msg(1)  # what an older node's _unpadded returns
    resp, send, recv = hs.create_response(res, 77, random.Random(1), b"")
    p.a.receive_datagram(resp, B, p.now)
    s = _current(p.a, p.ib.node_id)
    assert s is not None and s.cipher == cph.CHACHA20_POLY1305 and s.send_key == recv


def test_a_tampered_offer_breaks_the_handshake():
    p = _pair(AES_FIRST, AES_FIRST)
    p.a.send(p.contact_b(), b"", p.now)
    (init, _), = p.a.datagrams_to_send(p.now)
    m = decode(init)
    # The offer is the last bytes of the sealed early data, just before its tag: flip one.
    enc = bytearray(m.encrypted_payload)
    enc[-17] ^= 0x03  # the last code of the list, 01, would read 02
    bad = encode(HandshakeInit(m.sender_index, m.ephemeral, m.encrypted_static, m.encrypted_timestamp,
                               bytes(enc), m.mac1, m.mac2))
    bad = bad[:-32] + hs.MAC(hs.mac1_key(p.ib.public_key), bad[:-32]) + bytes(16)  # mac1 fixed up: passes
    p.b.receive_datagram(bad, A, p.now)
    assert p.b.stats["auth_failures"] == 1 and p.b.datagrams_to_send(p.now) == []
    assert p.b._by_node.get(p.ia.node_id) is None


def test_a_tampered_choice_breaks_the_handshake_and_the_honest_one_still_completes():
    p = _pair(AES_FIRST, AES_FIRST)
    p.a.send(p.contact_b(), b"", p.now)
    (init, _), = p.a.datagrams_to_send(p.now)
    p.b.receive_datagram(init, A, p.now)
    (resp, _), = p.b.datagrams_to_send(p.now)
    m = decode(resp)
    enc = bytearray(m.encrypted_payload)
    enc[-17] ^= 0x03  # the choice AES-256-GCM (02) would read ChaCha20-Poly1305 (01)
    bad = encode(HandshakeResponse(m.sender_index, m.receiver_index, m.ephemeral, bytes(enc), m.mac1, m.mac2))
    bad = bad[:-32] + hs.MAC(hs.mac1_key(p.ia.public_key), bad[:-32]) + bytes(16)
    p.a.receive_datagram(bad, B, p.now)
    assert p.a.stats["auth_failures"] == 1 and _current(p.a, p.ib.node_id) is None
    p.a.receive_datagram(resp, B, p.now)
    assert _current(p.a, p.ib.node_id).cipher == cph.AES_256_GCM


def test_a_responder_that_picks_a_cipher_never_offered_is_refused():
    """An authentic Response (the responder's own keys) whose choice the initiator did not offer."""
    p = _pair(CHACHA_ONLY, AES_FIRST)
    p.a.send(p.contact_b(), b"", p.now)
    (init, _), = p.a.datagrams_to_send(p.now)
    res = hs.consume_init(p.ib, decode(init))
    choice = encode(EarlyData(b"", cph.offer_tail((cph.AES_256_GCM,))))
    resp, _, _ = hs.create_response(res, 77, random.Random(1), choice)
    p.a.receive_datagram(resp, B, p.now)
    assert p.a.stats["auth_failures"] == 1 and _current(p.a, p.ib.node_id) is None


def test_a_malformed_cipher_list_in_an_authentic_init_is_refused():
    p = _pair(CHACHA_ONLY, AES_FIRST)
    raw, _ = hs.create_init(p.ia, p.ib.public_key, 5, p.now, random.Random(2),
                            encode(EarlyData(b"", bytes((1, 9, 2)))))  # says nine, holds one
    p.b.receive_datagram(raw, A, p.now)
    assert p.b.stats["auth_failures"] == 1 and p.b.datagrams_to_send(p.now) == []


def test_workers_seal_and_open_with_the_negotiated_cipher():
    p = _pair(AES_FIRST, AES_FIRST)
    _talk(p)
    wa = WorkerCrypto(2, 0)
    wa.install(*p.a.worker_keys([p.ib.node_id]))
    wb = WorkerCrypto(2, 0)
    wb.install(*p.b.worker_keys([p.ia.node_id]))
    big = b"\x01\x20" + bytes(5000)
    out = wa.seal(p.ib.node_id.raw, msg(5), p.now) + wa.seal(p.ib.node_id.raw, big, p.now)
    opened = [r[1] for d in out if (r := wb.open(d, p.now))]
    assert opened == [msg(5), big]
    for d in wa.seal(p.ib.node_id.raw, msg(6), p.now):  # the main process opens a worker's too
        p.b.receive_datagram(d, A, p.now)
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(6)]
    assert p.b.stats["auth_failures"] == 0


def test_names_flags_and_config():
    assert cph.parse_names(["aes-256-gcm", "chacha20-poly1305"]) == (2, 1)
    for bad in (["aes-256-gcm"], ["rot13", "chacha20-poly1305"], [], "chacha20-poly1305",
                ["chacha20-poly1305", "chacha20-poly1305"]):
        with pytest.raises(ValueError):
            cph.parse_names(bad)
    assert cph.cpu_prefers("fpu sse2 aes pclmulqdq avx2") == (2, 1)
    assert cph.cpu_prefers("fpu sse2 avx2") == (1,)
    assert cph.cpu_prefers("fp asimd aes pmull sha2") == (2, 1)
    assert transport_ciphers(["chacha20-poly1305"]) == (1,)
    assert transport_ciphers(None, "/nonexistent/cpuinfo") == (1,)
    assert cph.choose((2, 1), (1,)) == 1 and cph.choose((1,), (2, 1)) == 1 and cph.choose(None, (2, 1)) == 1
    assert cph.choose((2, 1), (2, 1)) == 2 and cph.choose((9, 2), (2, 1)) == 2


def test_config_key(tmp_path):
    f = tmp_path / "weft.toml"
    f.write_text('[dataplane]\nciphers = ["aes-256-gcm", "chacha20-poly1305"]\n')
    assert load_config(f).ciphers == ["aes-256-gcm", "chacha20-poly1305"]
    f.write_text('[dataplane]\nciphers = ["aes-128-gcm"]\n')
    with pytest.raises(ConfigError, match=r"\[dataplane\] ciphers: unknown cipher 'aes-128-gcm'"):
        load_config(f)


def test_cipher_vector():
    """tests/vectors/ciphers.json, byte for byte: the offer and the choice as the transport writes
    and reads them, the handshake that carries them, and AES-256-GCM transport data."""
    import json
    import pathlib

    V = json.loads((pathlib.Path(__file__).parent / "vectors" / "ciphers.json").read_text())
    ia = hs.Identity.from_seed(bytes.fromhex(V["initiator_seed"]))
    ib = hs.Identity.from_seed(bytes.fromhex(V["responder_seed"]))
    t = SecureTransport(ia, random.Random(1), T0, AES_FIRST)
    offer, choice = bytes.fromhex(V["init_payload"]), bytes.fromhex(V["response_payload"])
    assert t._padded(b"early", 0, t._offer) == offer
    assert t._unpadded(offer) == (b"early", (cph.AES_256_GCM, cph.CHACHA20_POLY1305))
    assert t._unpadded(choice) == (b"", (cph.AES_256_GCM,))
    rng = random.Random(7)
    raw, state = hs.create_init(ia, ib.public_key, V["initiator_index"], V["now"], rng, offer)
    assert raw.hex() == V["init_hex"]
    res = hs.consume_init(ib, decode(raw))
    assert res.payload == offer
    resp, send, recv = hs.create_response(res, V["responder_index"], rng, choice)
    assert resp.hex() == V["response_hex"]
    assert send.hex() == V["responder_send_key"] and recv.hex() == V["responder_receive_key"]
    payload, i_send, i_recv = hs.consume_response(ia, state, decode(resp))
    assert payload == choice and (i_send, i_recv) == (recv, send)
    plain = bytes.fromhex(V["data_plain"])
    for hexed, key in ((V["initiator_data_hex"], i_send), (V["responder_data_hex"], send)):
        pkt = bytes.fromhex(hexed)
        assert cph.AESGCM(key).decrypt(bytes(4) + pkt[6:14][::-1], pkt[14:], None) == plain


def test_aes_gcm_usage_limit_rekeys_at_half_and_stops_sealing_at_it():
    """ciphers.BLOCK_LIMIT: a session that sealed half of AES-GCM's block budget rekeys (long
    before rekey_after_time), one that sealed all of it seals nothing more; so does a worker."""
    p = _pair(AES_FIRST, AES_FIRST)
    _talk(p)
    s = _current(p.a, p.ib.node_id)
    assert s.block_limit == 1 << 32 and s.blocks > 0
    w = WorkerCrypto(2, 0)
    w.install(*p.a.worker_keys([p.ib.node_id]))
    node = p.ib.node_id.raw
    assert w.worn(node) is None and not w.wants_rekey(node, p.now)
    w._send[node].blocks = 1 << 31
    assert w.worn(node) == s.local_index and w.wants_rekey(node, p.now)
    w._send[node].blocks = 1 << 32
    assert w.seal(node, msg(4), p.now) is None
    before = p.a.stats["handshakes_initiated"]
    s.blocks = (1 << 32) - 2  # a 6-byte payload counts 2 blocks
    p.a.send_to(p.ib.node_id, msg(5), p.now)  # still within the budget: sent, and a rekey starts
    assert p.a.stats["handshakes_initiated"] == before + 1
    out = p.a.datagrams_to_send(p.now)
    assert len(out) == 2 and s.blocks >= s.block_limit  # the payload and the Init
    p.a.send_to(p.ib.node_id, msg(6), p.now)  # over it: queued for the new session, not sealed
    assert p.a.datagrams_to_send(p.now) == []
    for d, _ in out:
        p.b.receive_datagram(d, A, p.now)
    p.deliver()
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(5), msg(6)]
    assert _current(p.a, p.ib.node_id) is not s and _current(p.a, p.ib.node_id).cipher == cph.AES_256_GCM
    chacha = _pair(CHACHA_ONLY, CHACHA_ONLY)
    _talk(chacha)
    assert _current(chacha.a, chacha.ib.node_id).block_limit == float("inf")
