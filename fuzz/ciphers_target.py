"""The ``ciphers`` fuzz target (fuzz/weftfuzz.py): the transport-cipher offer and choice
(core/session/ciphers.py) that ride in a handshake's encrypted payload, under hostile input.

Only a peer holding its keys can put bytes there, so each input is made authentic: half the
inputs are the early-data field of an Init from node A (sealed by the real Noise chain) to our
responder B, half the payload field of a Response to a real initiator A. Nothing may raise; a
session comes up only on a cipher both ends accept (ChaCha20-Poly1305 whenever the input states
no list), a Response's choice is one B accepts and one A offered, and a malformed list brings
no session up.
"""

from __future__ import annotations

import random

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.session import ciphers as cph
from weftnet.core.session import handshake as hs
from weftnet.core.session.packets import MAX_EARLY_DATA, EarlyData
from weftnet.core.session.transport import SecureTransport, TransportConfig
from weftnet.core.wire import decode, encode
from weftnet.errors import HandshakeError

T0 = 1_700_000_000.0
A_ADDR, B_ADDR = ("10.0.0.1", 4500), ("10.0.0.2", 4500)
#: Never under load here (a thousand Inits a second would draw CookieReplies instead of Responses).
AES_FIRST = TransportConfig(ciphers=(cph.AES_256_GCM, cph.CHACHA20_POLY1305), handshakes_per_second_under_load=10**9)


def corpus() -> list[bytes]:
    """Offers and choices as nodes write them, with and without early data, and near misses."""
    out = []
    for early in (b"", b"\x01\x20\x00\x00\x00\x01", b"\x01\x21" + bytes(40)):
        for lst in ((2, 1), (1,), (2,), (1, 2), (9, 2, 1), (7,)):
            out.append(encode(EarlyData(early, cph.offer_tail(lst) + bytes(5))))
    out += [b"", b"\x01\x20\x00\x00\x00\x01", encode(EarlyData(b"x", bytes(8))),
            encode(EarlyData(b"", bytes((1, 0)))), encode(EarlyData(b"", bytes((1, 9, 2)))),
            encode(EarlyData(b"", bytes((2, 1, 2))))]
    return out


def _stated(data: bytes):
    """What the input states, as the transport reads it: ("none"), ("bad") or the list."""
    if data[:2] != b"\x01\x08":
        return "none"
    try:
        tail = decode(data).padding
    except Exception:
        return "none"  # a payload that does not decode: no list (dropped as malformed data)
    try:
        lst = cph.parse_tail(tail)
    except HandshakeError:
        return "bad"
    return "none" if lst is None else lst


class CiphersTarget:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.ia, self.ib = Identity.from_seed(bytes([1]) * 32), Identity.from_seed(bytes([2]) * 32)
        self.now = T0
        self.index = 1
        self.reset()

    def reset(self) -> None:
        self.b = SecureTransport(self.ib, random.Random(self.rng.random()), self.now, AES_FIRST)
        self.inputs = 0

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        if self.inputs > 2000:
            self.reset()
        self.now += 0.001
        data = data[:MAX_EARLY_DATA]
        if self.inputs % 2:
            self._init(data)
        else:
            self._response(data)

    def _init(self, data: bytes) -> None:
        self.index += 1
        raw, _ = hs.create_init(self.ia, self.ib.public_key, self.index, self.now, self.rng, data)
        b = self.b
        b.receive_datagram(raw, A_ADDR, self.now)
        out = b.datagrams_to_send(self.now)
        while b.next_event() is not None:
            pass
        peer = b._by_node.get(self.ia.node_id)
        s = None if peer is None else peer.current
        stated = _stated(data)
        if stated == "bad":
            if out and out[0][0][1] == 2:
                raise AssertionError("a malformed cipher list was answered")
            return
        if s is None or s.local_index != int.from_bytes(out[0][0][2:6], "big"):
            raise AssertionError("an authentic Init with a well-formed payload brought no session up")
        want = cph.choose(None if stated == "none" else stated, AES_FIRST.ciphers)
        if s.cipher != want:
            raise AssertionError(f"session cipher {s.cipher}, the rule says {want}")
        b._drop_sessions(peer)  # the next Init starts afresh

    def _response(self, data: bytes) -> None:
        a = SecureTransport(self.ia, random.Random(self.inputs), self.now, AES_FIRST)
        a.send(Contact(self.ib.public_key, B_ADDR), b"", self.now)
        (init, _), = a.datagrams_to_send(self.now)
        res = hs.consume_init(self.ib, decode(init))
        resp, _, _ = hs.create_response(res, 7, self.rng, data)
        a.receive_datagram(resp, B_ADDR, self.now)
        peer = a._by_node[self.ib.node_id]
        s = peer.current
        stated = _stated(data) if data else "none"
        if stated == "bad" or (stated != "none" and (len(stated) != 1 or stated[0] not in AES_FIRST.ciphers)):
            if s is not None:
                raise AssertionError(f"a Response stating {stated} brought a session up")
            return
        want = cph.CHACHA20_POLY1305 if stated == "none" else stated[0]
        if s is None or s.cipher != want:
            raise AssertionError(f"a Response stating {stated} gave {None if s is None else s.cipher}")
