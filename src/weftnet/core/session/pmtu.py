"""Path MTU discovery over a session: how large a datagram reaches each peer, sans-IO.

Theory of operation (docs/dataplane.md, "Path MTU"; in the spirit of
datagram PLPMTUD, RFC 8899 section 5, without relying on ICMP)
--------------------------------------------------------------------------
The transport starts every peer at ``TransportConfig.max_datagram`` (1,344
bytes of UDP payload: it crosses any path whose MTU is at least 1,372 bytes
on IPv4, 1,392 on IPv6). For a peer whose path matters (the node starts it:
a network member with a session, or a peer first sent a payload that needs
fragments), :class:`PathMtu` searches for the largest datagram that actually
arrives:

* A **round** sends up to :data:`PROBES_PER_ROUND` :class:`MtuProbe`
  messages of different sizes inside the session, padded so that each sealed
  datagram is exactly the size probed. The driver sends them with the IP
  don't-fragment bit (``IP_PMTUDISC_PROBE``): a probe larger than some link
  on the way is dropped there, never fragmented.
* The peer answers every probe with a small ack (no padding: answering costs
  the peer less than the probe cost us). An ack proves its size arrived.
* When every probe of the round is answered, or after ``timeout`` seconds,
  the largest acked size becomes the floor and the smallest unanswered size
  above it the ceiling. The first round probes the sizes of common links
  (1,500-byte Ethernet, PPPoE, 9,000-byte jumbo frames; each with a probe 16
  bytes larger) up to the ceiling, so an ordinary path is settled in one
  round; later rounds split the remaining interval evenly. The search ends
  when floor and ceiling are :data:`GRANULARITY` bytes apart or after
  :data:`MAX_ROUNDS` rounds, with a :class:`PathMtuFound` event carrying the
  floor. ``interval`` seconds later the peer is searched again (a path can
  grow); a lost probe can only make the result too small, never too large.

Probes and acks are transport payloads, so only a peer with a session (an
authenticated key) can send or answer them. Nothing is kept for a peer we did
not start a search for; at most ``max_peers`` searches are tracked at once
(the oldest finished one is forgotten first).

Inputs: payloads, ``now``; outputs: probe payloads to seal (``probes_to_send``),
ack payloads to send, events, one timer deadline.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

from weftnet.core.identity import NodeId
from weftnet.core.wire import U8, U32, MAX_MESSAGE_SIZE, Message, Rest, decode, encode, register
from weftnet.errors import DecodeError

__all__ = ["MtuProbe", "PathMtu", "PathMtuFound", "PROBE_TYPE", "SEAL_OVERHEAD", "UDP_IP_OVERHEAD"]

#: Bytes the transport adds around a payload in one data datagram: version, type, receiver
#: index u32, counter u64 (14), then the AEAD tag (16).
SEAL_OVERHEAD = 14 + 16
#: IP + UDP header bytes below a datagram, by IP version (what turns a link MTU into a datagram size).
UDP_IP_OVERHEAD = {4: 28, 6: 48}
#: Link MTUs worth a probe in the first round: Ethernet, PPPoE, common tunnels, jumbo frames.
COMMON_MTUS = (1400, 1420, 1492, 1500, 4000, 9000)
PROBES_PER_ROUND = 12
GRANULARITY = 16
MAX_ROUNDS = 4
_PROBE, _ACK = 0, 1


@register
@dataclass(frozen=True)
class MtuProbe(Message):
    """A path MTU probe (``kind`` 0, padded to the size probed) or its ack (``kind`` 1, no padding)."""

    TYPE: ClassVar = 0x5B
    probe_id: int
    kind: int
    padding: bytes = b""
    FIELDS: ClassVar = (("probe_id", U32), ("kind", U8), ("padding", Rest(MAX_MESSAGE_SIZE - 7)))

    def __post_init__(self) -> None:
        if self.kind not in (_PROBE, _ACK):
            raise ValueError(f"probe kind {self.kind}: 0 (probe) or 1 (ack)")
        if self.kind == _ACK and self.padding:
            raise ValueError("an ack carries no padding")


PROBE_TYPE = MtuProbe.TYPE
_HEADER = 2 + 4 + 1  # version, type, probe_id, kind


@dataclass(frozen=True)
class PathMtuFound:
    """A search ended: ``datagram`` bytes of UDP payload reach ``node_id`` (``link_mtu`` with IP/UDP)."""

    kind: ClassVar[str] = "path_mtu"
    node_id: NodeId
    datagram: int
    link_mtu: int
    probes: int


@dataclass
class _Search:
    node_id: NodeId
    overhead: int
    floor: int
    ceiling: int  # the smallest size known not to arrive (exclusive bound)
    round: int = 0
    outstanding: dict = field(default_factory=dict)  # probe id -> size
    acked: set = field(default_factory=set)
    sent: list = field(default_factory=list)
    deadline: float | None = None
    done_at: float | None = None
    result: int | None = None
    probes: int = 0


class PathMtu:
    """Per-peer datagram-size searches (module docstring)."""

    def __init__(self, base: int, ceiling: int, *, timeout: float = 1.0, interval: float = 600.0,
                 max_peers: int = 1024):
        if not SEAL_OVERHEAD + _HEADER < base <= ceiling:
            raise ValueError(f"path MTU search needs {SEAL_OVERHEAD + _HEADER} < base <= ceiling")
        self.base = base
        self.ceiling = ceiling
        self.timeout = timeout
        self.interval = interval
        self.max_peers = max_peers
        self._searches: OrderedDict[bytes, _Search] = OrderedDict()
        self._by_probe: dict[int, bytes] = {}
        self._next_id = 1
        self._out: list[tuple[NodeId, bytes]] = []
        self._events: list[PathMtuFound] = []  # rare: an empty deque is 624 bytes a node
        #: get_timer's answer, recomputed only after a search started, moved or ended (the
        #: drivers ask after every batch of packets; docs/dataplane.md, "Latency").
        self._timer: float | None = None
        self._timer_stale = False
        self.stats = dict.fromkeys(("searches", "probes_sent", "acks_received", "acks_sent", "found",
                                    "unexpected_acks", "malformed"), 0)

    # -- driving ---------------------------------------------------------------------------
    def start(self, node_id: NodeId, ip_version: int, now: float) -> None:
        """Search the path to ``node_id`` (its session is up; ``ip_version`` of its endpoint)."""
        key = node_id.raw
        old = self._searches.pop(key, None)
        if old is not None:
            self._drop_probes(old)
        while len(self._searches) >= self.max_peers:
            _k, victim = self._searches.popitem(last=False)
            self._drop_probes(victim)
        s = _Search(node_id, UDP_IP_OVERHEAD.get(ip_version, 48), self.base, self.ceiling + 1)
        self._searches[key] = s
        self._timer_stale = True
        self.stats["searches"] += 1
        self._round(s, now)

    def forget(self, node_id: NodeId) -> None:
        s = self._searches.pop(node_id.raw, None)
        if s is not None:
            self._drop_probes(s)
            self._timer_stale = True

    def tracking(self, node_id: NodeId) -> bool:
        """A search for ``node_id`` is running or has a result (and will be repeated)."""
        return node_id.raw in self._searches

    def size_for(self, node_id: NodeId) -> int | None:
        """The datagram size found for ``node_id``, or None (no search finished)."""
        s = self._searches.get(node_id.raw)
        return None if s is None else s.result

    def on_payload(self, sender: NodeId, payload: bytes, now: float) -> bytes | None:
        """A MtuProbe from an authenticated ``sender``: the ack to send back for a probe, else None."""
        try:
            msg = decode(payload)
        except DecodeError:
            self.stats["malformed"] += 1
            return None
        if not isinstance(msg, MtuProbe):
            self.stats["malformed"] += 1
            return None
        if msg.kind == _PROBE:
            self.stats["acks_sent"] += 1
            return encode(MtuProbe(msg.probe_id, _ACK))
        key = self._by_probe.get(msg.probe_id)
        s = self._searches.get(key) if key is not None else None
        if s is None or key != sender.raw or msg.probe_id not in s.outstanding:
            self.stats["unexpected_acks"] += 1
            return None
        self.stats["acks_received"] += 1
        s.acked.add(s.outstanding.pop(msg.probe_id))
        del self._by_probe[msg.probe_id]
        if not s.outstanding:
            self._conclude(s, now)
        return None

    def probes_to_send(self) -> list[tuple[NodeId, bytes]]:
        """(peer, probe payload) to seal as one datagram each and send with don't-fragment set."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> PathMtuFound | None:
        return self._events.pop(0) if self._events else None

    def get_timer(self) -> float | None:
        if self._timer_stale:
            self._timer_stale = False
            times = [t for s in self._searches.values() for t in (s.deadline, s.done_at) if t is not None]
            self._timer = min(times) if times else None
        return self._timer

    def handle_timer(self, now: float) -> None:
        self._timer_stale = True
        for s in list(self._searches.values()):
            if s.deadline is not None and now >= s.deadline:
                self._conclude(s, now)
            elif s.done_at is not None and now >= s.done_at:
                # Search again from what we know: the path may have grown (or shrunk: start low).
                s.done_at = None
                s.floor, s.ceiling, s.round = self.base, self.ceiling + 1, 0
                self._round(s, now)

    def status(self) -> dict:
        return {"stats": dict(self.stats),
                "peers": {s.node_id.text(): s.result for s in self._searches.values() if s.result is not None}}

    # -- the search ----------------------------------------------------------------------------
    def _sizes(self, s: _Search) -> list[int]:
        lo, hi = s.floor, s.ceiling
        if s.round == 0:
            want = {hi - 1}
            for mtu in COMMON_MTUS:
                size = mtu - s.overhead
                want.update((size, size + GRANULARITY))
        else:
            step = (hi - lo) / (PROBES_PER_ROUND + 1)
            want = {lo + round(step * (i + 1)) for i in range(PROBES_PER_ROUND)}
        return sorted(x for x in want if lo < x < hi)[-PROBES_PER_ROUND:]

    def _round(self, s: _Search, now: float) -> None:
        sizes = self._sizes(s)
        if not sizes or s.round >= MAX_ROUNDS:
            self._finish(s, now)
            return
        s.round += 1
        s.acked = set()
        s.sent = sizes
        for size in sizes:
            pid = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
            s.outstanding[pid] = size
            self._by_probe[pid] = s.node_id.raw
            pad = size - SEAL_OVERHEAD - _HEADER
            self._out.append((s.node_id, encode(MtuProbe(pid, _PROBE, bytes(pad)))))
        s.probes += len(sizes)
        self.stats["probes_sent"] += len(sizes)
        s.deadline = now + self.timeout
        self._timer_stale = True

    def _conclude(self, s: _Search, now: float) -> None:
        """A round is over: move the bounds, then probe again or finish."""
        self._drop_probes(s)
        s.deadline = None
        self._timer_stale = True
        if s.acked:
            s.floor = max(s.floor, max(s.acked))
        lost = [x for x in s.sent if x not in s.acked and x > s.floor]
        if lost:
            s.ceiling = min(s.ceiling, min(lost))
        if s.ceiling - s.floor <= GRANULARITY:
            self._finish(s, now)
        else:
            self._round(s, now)

    def _finish(self, s: _Search, now: float) -> None:
        s.deadline = None
        s.done_at = now + self.interval
        self._timer_stale = True
        changed = s.result != s.floor
        s.result = s.floor
        if changed:
            self.stats["found"] += 1
            self._events.append(PathMtuFound(s.node_id, s.floor, s.floor + s.overhead, s.probes))
        self._searches.move_to_end(s.node_id.raw)
        s.probes = 0

    def _drop_probes(self, s: _Search) -> None:
        for pid in s.outstanding:
            self._by_probe.pop(pid, None)
        s.outstanding.clear()
