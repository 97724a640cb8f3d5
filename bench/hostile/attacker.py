"""The flooding host of bench/hostile/flood.py: HandshakeInits from one address, every cookie echoed.

    python attacker.py HOST PORT PUBKEY_HEX --rate 5000 --seconds 6 --bind 127.0.3.1

Inits are built before the flood (``--identities`` identities, as many fresh
Inits each as ``--prepare`` seconds allow; then the pool is cycled, so later
ones are replays). Each is sent with a mac2 for the latest cookie the
responder gave this address, as a real initiator would. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from weftnet.core.identity import Identity
from weftnet.core.session import handshake as hs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pubkey")
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--bind", default="127.0.3.1")
    ap.add_argument("--identities", type=int, default=300)
    ap.add_argument("--prepare", type=float, default=12.0)
    a = ap.parse_args()
    responder = bytes.fromhex(a.pubkey)
    rng = random.Random(7)
    idents = [Identity.generate(rng) for _ in range(a.identities)]
    pool, t0, k = [], time.perf_counter(), 0
    target = int(a.rate * a.seconds)
    while len(pool) < target and (time.perf_counter() - t0 < a.prepare or len(pool) < a.identities):
        ident = idents[len(pool) % len(idents)]
        raw, _ = hs.create_init(ident, responder, rng.getrandbits(32) or 1, time.time() + k * 1e-6, rng)
        pool.append(raw)
        k += 1
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.bind, 0))
    sock.setblocking(False)
    print(json.dumps({"ready": True, "fresh_inits": len(pool)}), flush=True)
    sys.stdin.readline()  # go
    cookie_key = hs.cookie_key(responder)
    cookie, learned = None, 0.0
    sent, cookies, start = 0, 0, time.perf_counter()
    while sent < target:
        due = int((time.perf_counter() - start) * a.rate) + 1
        while sent < min(due, target):
            raw = pool[sent % len(pool)]
            if cookie is not None:
                raw = raw[:-16] + hs.MAC(cookie, raw[:-16])
            try:
                sock.sendto(raw, (a.host, a.port))
            except BlockingIOError:
                break
            sent += 1
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            if len(data) == 50 and data[1] == 3 and (cookie is None or time.perf_counter() - learned > 60):
                # A CookieReply: its associated data is the mac1 of the Init it answers (one of
                # the last few thousand sent). One cookie serves this address for 120 s.
                nonce, enc = data[6:18], data[18:50]
                aead = ChaCha20Poly1305(cookie_key)
                for i in range(sent - 1, max(-1, sent - 20_001), -1):
                    try:
                        cookie = aead.decrypt(nonce, enc, pool[i % len(pool)][-32:-16])
                        cookies += 1
                        learned = time.perf_counter()
                        break
                    except Exception:  # noqa: BLE001 - not this Init's
                        continue
        time.sleep(0.001)
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - start, "cookies_learned": cookies}), flush=True)


if __name__ == "__main__":
    main()
