"""Sealing and opening transport data in a data-plane worker (docs/dataplane.md, "Several workers").

A worker is a process that carries some of a node's private-network flows.
It never handshakes: the main process hands it the keys of its current
sessions (:class:`SessionKeys`), and it seals and opens ``TransportData``
exactly as ``SecureTransport`` does (docs/handshake.md, "Transport data"),
with two differences:

* it seals with counters of its own **partition** (its worker slot in the
  counter's top byte, core/session/replay.py), from one counter for all its
  sessions that only grows; the runtime keeps the counter's floor where a
  restarted worker of the same slot starts again (:attr:`WorkerCrypto.reserved`),
  so no counter is ever used twice under one key;
* it opens only counters of its own partition (the kernel steers the others
  elsewhere; anything else that arrives is dropped), each session with its
  own replay window.

A session older than ``rekey_after`` seconds :meth:`wants_rekey`: the runtime
asks the main process to send on it (its sending starts the rekey) and hands
the worker the new keys once they are up; until then the worker goes on
sealing with the old ones, up to :data:`SEND_MARGIN` seconds before
``reject_after`` (after that it hands its packets to the main process). Keys
older than ``reject_after`` open nothing.

:class:`WorkerSlots` (0x31) is what a node with several workers tells the
members of its networks: how many worker slots it runs. A sender seals with a
worker partition only towards a peer that announced the same number (so each
flow stays in one worker at both ends, and a peer of an older version, whose
one replay window would drop partitioned counters, never gets them).

Sans-IO: bytes and ``now`` in, bytes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from weftnet.core.session.ciphers import AEADS, BLOCK_LIMIT, CHACHA20_POLY1305
from weftnet.core.session.packets import MAX_FRAGMENTS
from weftnet.core.session.reassembly import REFUSED, Reassembly
from weftnet.core.session.replay import PARTITION_SHIFT, ReplayWindow
from weftnet.core.session.train import SealBuffer, Train, cut, join
from weftnet.core.wire import U8, Message, register

__all__ = ["WorkerSlots", "WORKER_SLOTS_TYPE", "SessionKeys", "WorkerCrypto", "COUNTER_BLOCK"]

WORKER_SLOTS_TYPE = 0x31
#: The runtime records a new counter floor every this many counters (a restarted worker skips at most this many).
COUNTER_BLOCK = 1 << 20
#: A worker stops sealing with a session this long before the receiver would refuse it.
SEND_MARGIN = 10.0
_LOW = (1 << PARTITION_SHIFT) - 1
_DATA = b"\x01\x04"
_FRAG = b"\x01\x07"
_HEADER = 14
_FRAG_HEADER = 16
_TAG = 16
#: As SecureTransport: at most this many payloads in reassembly, each whole within 2 s.
_REASSEMBLIES, _FRAGMENT_TIMEOUT, _REASSEMBLED = 128, 2.0, 65_016


@register
@dataclass(frozen=True)
class WorkerSlots(Message):
    """"I run this many data-plane worker slots (the main process included)" — sent over a
    session to a member of one of our networks; 2-16 (docs/dataplane.md)."""

    TYPE: ClassVar = WORKER_SLOTS_TYPE
    slots: int
    FIELDS: ClassVar = (("slots", U8),)


@dataclass(frozen=True)
class SessionKeys:
    """One session's keys as the main process hands them to its workers."""

    node: bytes  # the peer's node ID (raw)
    local_index: int
    remote_index: int
    send_key: bytes
    recv_key: bytes
    created: float
    endpoint: tuple  # the peer's UDP endpoint (host, port)
    max_datagram: int
    cipher: int = CHACHA20_POLY1305  # the transport cipher its handshake agreed on (ciphers.py)


class _Keys:
    __slots__ = ("k", "send", "recv", "window", "blocks", "block_limit")

    def __init__(self, k: SessionKeys):
        self.k = k
        aead = AEADS[k.cipher]
        self.send = aead(k.send_key)
        self.recv = aead(k.recv_key)
        self.window = ReplayWindow()
        self.blocks = 0  # sealed here under this key (AES-GCM's usage limit, ciphers.BLOCK_LIMIT)
        self.block_limit = BLOCK_LIMIT[k.cipher]


def relaid(local: int, counter: int, sealed: bytes, seg: int) -> bytes:
    """The run a joined read came as (``join`` accepts only a run ``cut`` lays out: the same bytes)."""
    return bytes(cut(_FRAG + local.to_bytes(4, "big") + counter.to_bytes(8, "big"), sealed, seg - _FRAG_HEADER)[0])


class WorkerCrypto:
    """The sessions one worker seals and opens with."""

    def __init__(self, slot: int, start: int, rekey_after: float = 120.0, reject_after: float = 180.0):
        if not 1 <= slot < 16:
            raise ValueError("a worker slot is 1-15 (0 is the main process)")
        self.partition = slot << PARTITION_SHIFT
        self.counter = start & _LOW
        #: Counters below this may have been used; the runtime stores it before going past it.
        self.reserved = self.counter
        self.rekey_after = rekey_after
        self.reject_after = reject_after
        self._by_index: dict[int, _Keys] = {}
        self._send: dict[bytes, _Keys] = {}  # peer -> the session to seal with
        self.stats = {"sealed": 0, "opened": 0, "auth_failures": 0, "replays_dropped": 0,
                      "foreign_dropped": 0, "unknown_index_dropped": 0, "expired_dropped": 0,
                      "malformed_dropped": 0, "fragments_expired": 0}
        self._reassembly = Reassembly(_REASSEMBLIES, _FRAGMENT_TIMEOUT, _REASSEMBLED, self._expired)
        #: Set by a runtime that sends a :class:`Train` in one UDP GSO send: a payload cut in
        #: fragments is then sealed into one Train (core/session/train.py) instead of a list of pieces.
        self.trains = False
        self._seal: SealBuffer | None = None

    def _expired(self, key) -> None:
        self.stats["fragments_expired"] += 1

    def install(self, sessions: list[SessionKeys], current: dict[bytes, int],
                windows: dict[int, ReplayWindow] | None = None) -> None:
        """Replace the key table: every session that may still receive, and per peer the one
        to send with (by local index). Windows of sessions kept are kept; ``windows`` are those
        a predecessor of this worker handed over (:meth:`windows`) for sessions new here."""
        old = self._by_index
        self._by_index = {}
        for k in sessions:
            entry = old.get(k.local_index)
            if entry is None or entry.k.recv_key != k.recv_key:
                entry = _Keys(k)
                if windows and k.local_index in windows:
                    entry.window = windows[k.local_index]
            else:
                entry.k = k  # the endpoint or the datagram size may have changed
            self._by_index[k.local_index] = entry
        self._send = {node: self._by_index[i] for node, i in current.items() if i in self._by_index}

    def windows(self) -> dict[int, ReplayWindow]:
        """Every session's replay window, for the worker that takes over from this one: a worker
        stopped on purpose hands them on, so nothing it opened can be opened again."""
        return {i: e.window for i, e in self._by_index.items()}

    def wants_rekey(self, node: bytes, now: float) -> bool:
        """Whether the session we seal with towards ``node`` is old enough to be replaced."""
        e = self._send.get(node)
        return e is not None and (now - e.k.created >= self.rekey_after or e.blocks >= e.block_limit / 2)

    def worn(self, node: bytes) -> int | None:
        """The local index of the session we seal with towards ``node`` if it carried half of its
        cipher's usage limit here (AES-GCM, ciphers.BLOCK_LIMIT): the main process rekeys it."""
        e = self._send.get(node)
        return e.k.local_index if e is not None and e.blocks >= e.block_limit / 2 else None

    def seal(self, node: bytes, payload: bytes, now: float) -> list | None:
        """The datagrams carrying ``payload`` to ``node`` — one TransportData, or the
        TransportFragment pieces of a payload sealed once as SecureTransport cuts it (with
        :attr:`trains`, those as one :class:`Train`) — or None (no session young enough, or too
        large: the main process sends those)."""
        e = self._send.get(node)
        if e is None or now - e.k.created >= self.reject_after - SEND_MARGIN or e.blocks >= e.block_limit:
            return None
        limit = e.k.max_datagram
        step = limit - _FRAG_HEADER
        size = len(payload) + _TAG
        if size + _HEADER > limit and (size > _REASSEMBLED or size > step * MAX_FRAGMENTS):
            return None
        c = self.partition | self.counter
        self.counter += 1
        e.blocks += (len(payload) >> 4) + 2
        nonce = b"\x00\x00\x00\x00" + c.to_bytes(8, "little")
        self.stats["sealed"] += 1
        head = e.k.remote_index.to_bytes(4, "big") + c.to_bytes(8, "big")
        if size + _HEADER <= limit:
            return [_DATA + head + e.send.encrypt(nonce, payload, None)]
        head = _FRAG + head
        if self.trains:  # sealed into the buffer and cut from it at once (core/session/train.py)
            if self._seal is None:
                self._seal = SealBuffer(_REASSEMBLED)
            run, count = self._seal.seal_cut(e.send, nonce, payload, head, step)
            return [Train(run, limit, count)]
        ct = e.send.encrypt(nonce, payload, None)
        count = -(-len(ct) // step)
        mv = memoryview(ct)
        return [head + bytes((i, count)) + mv[i * step:(i + 1) * step] for i in range(count)]

    def reserve(self) -> int | None:
        """The new counter floor to store when the counter reached the stored one, else None."""
        if self.counter < self.reserved:
            return None
        self.reserved = self.counter + COUNTER_BLOCK
        return self.reserved

    def open(self, data: bytes, now: float) -> tuple[bytes, bytes] | None:
        """(peer node ID, plaintext) of a TransportData datagram of our partition, or of the
        last missing TransportFragment of one; None otherwise (and for a piece that completes
        nothing yet)."""
        kind = data[1] if len(data) >= 2 and data[0] == 1 else None
        if kind == 4 and len(data) >= _HEADER + _TAG:
            ct = data[14:]
        elif kind == 7 and len(data) > _FRAG_HEADER:
            ct = None
        else:
            self.stats["foreign_dropped"] += 1
            return None
        counter = int.from_bytes(data[6:14], "big")
        if counter >> PARTITION_SHIFT != self.partition >> PARTITION_SHIFT:
            self.stats["foreign_dropped"] += 1  # another process holds that partition's window
            return None
        local = int.from_bytes(data[2:6], "big")
        e = self._session(local, counter)
        if e is None:
            return None
        if ct is None:  # a piece: buffered (bounded) until the payload is whole, then opened once
            index, count = data[14], data[15]
            if not 2 <= count <= MAX_FRAGMENTS or index >= count:
                self.stats["malformed_dropped"] += 1
                return None
            ct = self._reassembly.add((local, counter), index, count, memoryview(data)[16:], now)
            if ct is None:
                return None
            if ct is REFUSED:
                self.stats["malformed_dropped"] += 1
                return None
        return self._open(e, counter, ct, now)

    def open_train(self, data, seg: int, now: float) -> tuple[bytes, bytes] | None | bool:
        """A UDP GRO read (``seg``-byte datagrams end to end) that is exactly one payload's pieces
        of our partition, joined and opened at once (core/session/train.py): (peer node ID,
        plaintext), or None (refused, counted as :meth:`open` would); False if it is not such a
        run (the caller cuts it in datagrams and takes them one by one)."""
        sealed = join(data, seg, MAX_FRAGMENTS, _REASSEMBLED)
        if sealed is None:
            return False
        return self.open_joined(int.from_bytes(data[2:6], "big"), int.from_bytes(data[6:14], "big"), sealed, now)

    def open_joined(self, local: int, counter: int, sealed: bytes, now: float) -> tuple[bytes, bytes] | None | bool:
        """:meth:`open_train` of a run already joined as it was read (``RunBuffer.read``: its
        first header's receiver index and counter, and the payload): False if the counter is of
        another process's partition (the caller hands the run there: :func:`relaid`)."""
        if counter >> PARTITION_SHIFT != self.partition >> PARTITION_SHIFT:
            return False  # another process's: it is handed there whole
        e = self._session(local, counter)
        if e is None:
            return None
        return self._open(e, counter, sealed, now)

    def _session(self, local: int, counter: int) -> _Keys | None:
        """The keys of our session ``local`` if ``counter`` may still be opened under it; None,
        counted, for an unknown index or a replayed or too old counter."""
        e = self._by_index.get(local)
        if e is None:
            self.stats["unknown_index_dropped"] += 1
            return None
        if not e.window.check(counter):
            self.stats["replays_dropped"] += 1
            return None
        return e

    def _open(self, e: _Keys, counter: int, ct, now: float) -> tuple[bytes, bytes] | None:
        """Authenticate and decrypt one payload (the window moves only after the tag)."""
        try:
            plain = e.recv.decrypt(b"\x00\x00\x00\x00" + counter.to_bytes(8, "little"), ct, None)
        except InvalidTag:
            self.stats["auth_failures"] += 1
            return None
        if now - e.k.created >= self.reject_after:
            self.stats["expired_dropped"] += 1
            return None
        if not e.window.accept(counter):
            self.stats["replays_dropped"] += 1
            return None
        self.stats["opened"] += 1
        return e.k.node, plain
