"""Session-layer speed: handshakes per second and 1,400-byte datagrams per second.

    .venv/bin/python bench/bench_crypto.py [--seconds 3]

Measured on one core, in one process, through the real SecureTransport:

* handshakes/s: a full Noise IK exchange (Init built, consumed, Response
  built, consumed; both sessions installed) between two transports;
* send path: ``send()`` of a 1,400-byte payload on an established session to
  the finished datagram (``datagrams_to_send``);
* receive path: ``receive_datagram()`` of such a datagram to the decrypted
  ``Received`` event, replay window included;
* large payloads: ``send()`` of a 60,000-byte payload (an offloaded VPN
  chunk), sealed once and cut into TransportFragment datagrams, and the
  receive path of those fragments to the reassembled, decrypted payload;
* the same large-payload paths on sessions that negotiated AES-256-GCM
  (docs/handshake.md, "Transport ciphers");
* for reference in the same run, the floor: one ChaCha20-Poly1305 and one
  AES-256-GCM seal/open of 1,400 and of 64,600 bytes (a full VPN chunk) with a
  fresh nonce (cryptography/OpenSSL), no framing at all, and the same with
  ``encrypt_into``/``decrypt_into`` into a buffer kept from call to call.

The transports are configured for a 1,500-byte IPv4 underlay
(``max_datagram=1472``), so a 1,400-byte payload is one datagram; with the
default (1,344, for any 1,392-byte path) it would be sent in two fragments.

Results go to bench/results/crypto.md with the machine described.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import random
import sys
import time

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.session import ciphers as cph
from weftnet.core.session.transport import SecureTransport, TransportConfig

A, B = ("10.0.0.1", 1), ("10.0.0.2", 2)
PAYLOAD = b"\x01\x40" + bytes(1398)
LARGE = b"\x01\x40" + bytes(59_998)
CONFIG = TransportConfig(max_datagram=1472)
AES_CONFIG = TransportConfig(max_datagram=1472, ciphers=(cph.AES_256_GCM, cph.CHACHA20_POLY1305))
CHUNK = 64_600  # the largest VpnChunk: one TCP superpacket (docs/dataplane.md)


def machine() -> str:
    from hostinfo import cpu_model  # bench/hostinfo.py, beside this script

    model = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}, cryptography {cryptography.__version__}")


def rate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 64 == 0 and time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    ia, ib = Identity.generate(random.Random(1)), Identity.generate(random.Random(2))
    load = os.getloadavg()[0]
    now = [1e6]

    def handshake():
        ta = SecureTransport(ia, random.Random(3), now[0], CONFIG)
        tb = SecureTransport(ib, random.Random(4), now[0], CONFIG)
        ta.send(Contact(ib.public_key, B), b"", now[0])
        for d, _ in ta.datagrams_to_send(now[0]):
            tb.receive_datagram(d, A, now[0])
        for d, _ in tb.datagrams_to_send(now[0]):
            ta.receive_datagram(d, B, now[0])
        assert ta.has_session(ib.node_id)

    cb = Contact(ib.public_key, B)

    def pair(config: TransportConfig):
        ta = SecureTransport(ia, random.Random(3), now[0], config)
        tb = SecureTransport(ib, random.Random(4), now[0], config)
        ta.send(cb, b"", now[0])
        for d, _ in ta.datagrams_to_send(now[0]):
            tb.receive_datagram(d, A, now[0])
        for d, _ in tb.datagrams_to_send(now[0]):
            ta.receive_datagram(d, B, now[0])
        while ta.next_event() or tb.next_event():
            pass
        return ta, tb

    ta, tb = pair(AES_CONFIG)
    assert ta.stats["sessions_aes_256_gcm"] == 1
    aes_ta, aes_tb = ta, tb
    ta, tb = pair(CONFIG)

    def sender(payload: bytes):
        def send():
            ta.send(cb, payload, now[0])
            ta.datagrams_to_send(now[0])
        return send

    def prebuilt(payload: bytes, n: int) -> list[list[bytes]]:
        """The datagrams of n payloads, each counter once, for the receive path."""
        out = []
        for _ in range(n):
            ta.send(cb, payload, now[0])
            out.append([d for d, _ in ta.datagrams_to_send(now[0])])
        return out

    def receive_rate(batches: list[list[bytes]], tb=tb) -> float:
        """Payloads per second through receive_datagram to their Received event."""
        got = 0
        t0 = time.perf_counter()
        for datagrams in batches:
            for d in datagrams:
                tb.receive_datagram(d, A, now[0])
            got += tb.next_event() is not None
        elapsed = time.perf_counter() - t0
        assert got == len(batches), f"only {got} of {len(batches)} payloads were accepted"
        return len(batches) / elapsed

    pool = prebuilt(PAYLOAD, 200_000)
    big_pool = prebuilt(LARGE, 2_000)
    fragments = len(big_pool[0])

    def floor(cls, size: int, into: bool):
        """Seal and open of ``size`` bytes under ``cls``: (seals/s, opens/s)."""
        box = cls(bytes(32))
        plain = bytes(size)
        sealed = box.encrypt(bytes(12), plain, None)
        out, back, n = bytearray(size + 16), bytearray(size), [0]

        def seal_():
            n[0] += 1
            if into:
                box.encrypt_into(n[0].to_bytes(12, "little"), plain, None, out)
            else:
                box.encrypt(n[0].to_bytes(12, "little"), plain, None)

        def open_one():
            if into:
                box.decrypt_into(bytes(12), sealed, None, back)
            else:
                box.decrypt(bytes(12), sealed, None)
        return rate(seal_, a.seconds / 2), rate(open_one, a.seconds / 2)

    rows = [
        ("handshakes/s (full IK exchange, both sides)", rate(handshake, a.seconds)),
        ("send path: 1,400-byte datagrams/s", rate(sender(PAYLOAD), a.seconds)),
        ("receive path: 1,400-byte datagrams/s", receive_rate(pool)),
        (f"send path: 60,000-byte payloads/s ({fragments} fragments each)", rate(sender(LARGE), a.seconds)),
        (f"receive path: 60,000-byte payloads/s ({fragments} fragments each)", receive_rate(big_pool)),
    ]
    ta, tb = aes_ta, aes_tb
    aes_pool = prebuilt(LARGE, 2_000)
    rows += [
        (f"AES-256-GCM session: send path, 60,000-byte payloads/s ({fragments} fragments each)",
         rate(sender(LARGE), a.seconds)),
        (f"AES-256-GCM session: receive path, 60,000-byte payloads/s ({fragments} fragments each)",
         receive_rate(aes_pool, aes_tb)),
    ]
    for cls, name in ((ChaCha20Poly1305, "ChaCha20-Poly1305"), (AESGCM, "AES-256-GCM")):
        for size in (1400, CHUNK):
            for into in (False, True):
                how = "encrypt_into/decrypt_into" if into else "encrypt/decrypt"
                seal_r, open_r = floor(cls, size, into)
                rows.append((f"floor: {name} seal of {size:,} bytes/s ({how})", seal_r))
                rows.append((f"floor: {name} open of {size:,} bytes/s ({how})", open_r))
    lines = ["| measurement | per second | Gbit/s of payload |", "|---|---|---|"]
    for name, r in rows:
        size = 60_000 if "60,000" in name else CHUNK if f"{CHUNK:,}" in name else 1400
        gbps = "" if name.startswith("handshakes") else f"{r * size * 8 / 1e9:.2f}"
        lines.append(f"| {name} | {r:,.0f} | {gbps} |")
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        out = pathlib.Path(__file__).resolve().parent / "results" / "crypto.md"
        out.write_text(
            "# Session layer: handshakes and datagrams per second (one core)\n\n"
            f"Run: `.venv/bin/python bench/bench_crypto.py --seconds {a.seconds}` on {time.strftime('%Y-%m-%d')}.\n\n"
            f"Machine: {machine()}.\n\n"
            f"Load average (1 min) at the start: {load:.2f}; other jobs shared the machine when it is "
            "above ~0.5, which lowers every row about alike.\n\n"
            "One process, one core, no sockets: the cost of the protocol code itself "
            "(see the script's docstring for exactly what each row covers).\n\n" + table + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
