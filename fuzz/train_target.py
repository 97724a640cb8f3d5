"""The ``train`` fuzz target (fuzz/weftfuzz.py): a UDP GRO read handed to the transport whole
(core/session/train.py) under hostile input.

Our transport B has a live session with A. Each input is one read, as a Train: mostly real runs
of A's fragmented payloads (and mutations of them: headers, indexes, counts, lengths, ciphertext)
with the segment size they were sent with or another. Nothing may raise; a payload is delivered
only if it authenticates, at most once per counter; nothing is buffered for a receiver index
without a session; reassembly stays within its bound; ``join`` returns either None or exactly
the pieces' payload bytes.
"""

from __future__ import annotations

import random

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.session.train import RunBuffer, Train, cut, join
from weftnet.core.session.transport import MAX_REASSEMBLED, MAX_REASSEMBLIES, Received, SecureTransport

T0 = 1_700_000_000.0
A_ADDR, B_ADDR = ("10.0.0.1", 4500), ("10.0.0.2", 4500)
SEGS = (1344, 1472, 9000, 17, 16, 5000)


def _pair(seed: int):
    ia, ib = Identity.from_seed(bytes([1]) * 32), Identity.from_seed(bytes([2]) * 32)
    a = SecureTransport(ia, random.Random(seed), T0)
    b = SecureTransport(ib, random.Random(seed + 1), T0)
    a.send(Contact(ib.public_key, B_ADDR), b"\x01\x20\x00\x00\x00\x01", T0)
    for _ in range(4):  # handshake and first payload both ways
        for src, dst, addr in ((a, b, A_ADDR), (b, a, B_ADDR)):
            for d, _ in src.datagrams_to_send(T0):
                dst.receive_datagram(d, addr, T0)
    while b.next_event() is not None:
        pass
    a.trains = True
    return a, b, ib


def corpus() -> list[bytes]:
    a, _b, ib = _pair(7)
    out = []
    for i, n in enumerate((3000, 20_000, 50_000, 64_000)):
        a.send(Contact(ib.public_key, B_ADDR), b"\x01\x20" + random.Random(i).randbytes(n), T0)
        for d, _ in a.datagrams_to_send(T0):
            out.append(bytes(d.data) if type(d) is Train else d)
    return out


class TrainTarget:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.rx = RunBuffer(65_535)
        self.reset()

    def reset(self) -> None:
        self.a, self.b, self.ib = _pair(7)  # the corpus's session: its runs name a live index
        self.now = T0
        self.inputs = 0
        self.delivered: set[bytes] = set()

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        if self.inputs > 3000:
            self.reset()
        self.now += 0.001
        seg = 1344 if self.rng.random() < 0.6 else self.rng.choice(SEGS + (max(1, len(data) // 3),))
        sealed = join(data, seg, 64, MAX_REASSEMBLED)
        if sealed is not None:
            count = data[15]
            if len(sealed) != len(data) - 16 * count or sealed != b"".join(
                    data[i * seg + 16:(i + 1) * seg] for i in range(count)):
                raise AssertionError("join returned something other than the pieces' payload bytes")
            if cut(data[:14], sealed, seg - 16)[0] != data:
                raise AssertionError("a run join accepts is not what cut lays out for its payload")
        # Half the reads as the driver hands them over (Train.read: joined while still in its receive
        # buffer, which the next read overwrites): the same decision as join on the bytes.
        if self.inputs % 3 == 1:
            buf = bytearray(len(data) + 64)
            buf[:len(data)] = data
            train = Train.read(memoryview(buf)[:len(data)], seg, 64, MAX_REASSEMBLED)
            buf[:] = bytes(len(buf))
            if train.sealed != sealed or (sealed is None and train.data != data):
                raise AssertionError("a run read from the receive buffer is decided otherwise than its bytes")
        elif self.inputs % 3 == 2 and len(data) <= len(self.rx.view):
            # As the driver reads: into its RunBuffer, whose views of each segment size are kept.
            self.rx.view[:len(data)] = data
            train = self.rx.read(len(data), seg, 64, MAX_REASSEMBLED)
            self.rx.view[:len(data)] = bytes(len(data))
            if train.sealed != sealed or (sealed is None and train.data != data):
                raise AssertionError("a run read into the RunBuffer is decided otherwise than its bytes")
        else:
            train = Train(data, seg)
        b = self.b
        b.receive_datagrams([(train, A_ADDR)], self.now)
        while (ev := b.next_event()) is not None:
            if isinstance(ev, Received):
                if ev.payload in self.delivered and len(ev.payload) > 2000:
                    raise AssertionError("a payload was delivered twice")
                self.delivered.add(ev.payload)
        if b._reassembly is not None and len(b._reassembly._table) > MAX_REASSEMBLIES:  # (made by the first fragment)
            raise AssertionError("reassembly outgrew its bound")
        b.datagrams_to_send(self.now)
        if self.inputs % 97 == 0:
            # A fresh payload from A, as a train, so valid runs keep coming (and replays of old ones).
            self.a.send(Contact(self.ib.public_key, B_ADDR), b"\x01\x20" + self.rng.randbytes(self.rng.randrange(1400, 60_000)), self.now)
            for d, _ in self.a.datagrams_to_send(self.now):
                if type(d) is Train:
                    b.receive_datagrams([(d, A_ADDR)], self.now)
