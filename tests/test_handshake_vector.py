"""A full handshake with fixed keys and a seeded ephemeral source, pinned byte for byte.

Any change to the Noise chain (hash, KDF, labels, field order, MACs) changes
these bytes; docs/handshake.md describes exactly what produces them.
"""

import json
import pathlib
import random

from weftnet.core.session import handshake as hs
from weftnet.core.identity import Identity
from weftnet.core.wire import decode

V = json.loads((pathlib.Path(__file__).parent / "vectors" / "handshake.json").read_text())


def test_handshake_vector():
    ia = Identity.from_seed(bytes.fromhex(V["initiator_seed"]))
    ib = Identity.from_seed(bytes.fromhex(V["responder_seed"]))
    rng = random.Random(7)
    raw, state = hs.create_init(ia, ib.public_key, V["initiator_index"], V["now"], rng,
                                bytes.fromhex(V["early_data"]))
    assert raw.hex() == V["init_hex"]
    res = hs.consume_init(ib, decode(raw))
    assert res.payload == bytes.fromhex(V["early_data"]) and res.peer_public == ia.public_key
    resp, send, recv = hs.create_response(res, V["responder_index"], rng, b"")
    assert resp.hex() == V["response_hex"]
    assert send.hex() == V["responder_send_key"] and recv.hex() == V["responder_receive_key"]
    payload, i_send, i_recv = hs.consume_response(ia, state, decode(resp))
    assert (i_send, i_recv) == (recv, send)
