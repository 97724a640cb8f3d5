"""Regenerate tests/vectors/ciphers.json (run only when the negotiation's layout changes on purpose).

    .venv/bin/python tests/vectors/make_cipher_vectors.py

A Noise IK handshake as handshake.json's (same keys, same seeded ephemeral source), whose Init
carries an AES-256-GCM-first offer in the tail of its EarlyData and whose Response carries the
responder's choice there (docs/handshake.md, "Transport ciphers"), then one TransportData each
way sealed with AES-256-GCM under the keys it made.
"""

from __future__ import annotations

import json
import pathlib
import random

from weftnet.core.identity import Identity
from weftnet.core.session import ciphers as cph
from weftnet.core.session import handshake as hs
from weftnet.core.session.packets import EarlyData
from weftnet.core.wire import decode, encode

HERE = pathlib.Path(__file__).resolve().parent
I_SEED = bytes(range(32))
R_SEED = bytes(range(32, 64))


def data_packet(key: bytes, receiver: int, counter: int, plain: bytes) -> bytes:
    ct = cph.AESGCM(key).encrypt(bytes(4) + counter.to_bytes(8, "little"), plain, None)
    return b"\x01\x04" + receiver.to_bytes(4, "big") + counter.to_bytes(8, "big") + ct


def cipher_vector() -> dict:
    ia, ib = Identity.from_seed(I_SEED), Identity.from_seed(R_SEED)
    rng = random.Random(7)
    offer = encode(EarlyData(b"early", cph.offer_tail((cph.AES_256_GCM, cph.CHACHA20_POLY1305))))
    choice = encode(EarlyData(b"", cph.offer_tail((cph.AES_256_GCM,))))
    init, state = hs.create_init(ia, ib.public_key, 42, 1700000000.5, rng, offer)
    res = hs.consume_init(ib, decode(init))
    resp, r_send, r_recv = hs.create_response(res, 7, rng, choice)
    return {
        "description": "Noise IK handshake as handshake.json's with a transport-cipher offer (AES-256-GCM, "
                       "ChaCha20-Poly1305) in the Init's EarlyData tail and the choice (AES-256-GCM) in the "
                       "Response's, then TransportData counter 0 each way sealed with AES-256-GCM "
                       "(tests/test_ciphers.py; docs/handshake.md, \"Transport ciphers\")",
        "initiator_seed": I_SEED.hex(), "responder_seed": R_SEED.hex(), "rng": "random.Random(7)",
        "now": 1700000000.5, "initiator_index": 42, "responder_index": 7,
        "init_payload": offer.hex(), "response_payload": choice.hex(),
        "init_hex": init.hex(), "response_hex": resp.hex(),
        "responder_send_key": r_send.hex(), "responder_receive_key": r_recv.hex(),
        "data_plain": "01200000002a",
        "initiator_data_hex": data_packet(r_recv, 7, 0, bytes.fromhex("01200000002a")).hex(),
        "responder_data_hex": data_packet(r_send, 42, 0, bytes.fromhex("01200000002a")).hex(),
    }


if __name__ == "__main__":
    (HERE / "ciphers.json").write_text(json.dumps(cipher_vector(), indent=1) + "\n")
    print("wrote ciphers.json")
