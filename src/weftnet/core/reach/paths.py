"""Paths to a peer, and the small policy that picks the one in use.

A peer is reached over a *path*. Its target is one of:

* an underlay UDP endpoint ``(host, port)`` — a direct path;
* a :class:`StreamLink` — a TCP connection the runtime keeps (to a relay when
  UDP is blocked); to the core it is just another address datagrams come from
  and go to;
* a :class:`LinkAddr` — a UDP endpoint reached from one of the node's extra
  underlay links (``[[link]]``, docs/paths.md): the runtime sends it from, and
  receives it on, that link's own socket;
* a :class:`Via` — through a sequence of overlay nodes: the end-to-end session
  packets travel inside each hop's own session under a ``Forward`` header
  (docs/wire/reach.md). A relay is a one-hop ``Via`` chosen for reachability;
  an explicit route or a detour is a longer or better-chosen one.

The transport keeps a :class:`PathSet` per peer (made only when a peer has
more than its one direct endpoint, so the many quiet DHT peers pay nothing)
and asks a :class:`PathPolicy` which path to use. The policy here is the
reachability one — direct beats TCP beats relayed, confirmed beats merely
heard, roaming between direct addresses at once — and is meant to be
replaced by a measuring one (issue 11) without touching the transport.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "Via",
    "StreamLink",
    "AltSource",
    "LinkAddr",
    "Path",
    "PathSet",
    "PathPolicy",
    "DIRECT",
    "RELAY",
    "STREAM",
    "path_kind",
    "is_udp",
    "MAX_PATHS",
]

DIRECT, RELAY, STREAM = "direct", "relay", "tcp"
#: Paths remembered per peer (direct candidates, relays, link pairs, detours); the oldest unused one makes room.
MAX_PATHS = 24


class Via(NamedTuple):
    """A path through overlay nodes: ``hops`` (raw node IDs, nearest first), then ``peer``."""

    hops: tuple
    peer: bytes


class StreamLink(NamedTuple):
    """A stream (TCP) connection kept by the runtime: the far end's address and a connection number."""

    host: str
    port: int
    conn: int


class AltSource(NamedTuple):
    """Output only: send this datagram to ``(host, port)`` from the runtime's second UDP port
    (the dial-back test, RFC 5780's CHANGE-PORT)."""

    host: str
    port: int
    alt: int = 1


class LinkAddr(NamedTuple):
    """A UDP endpoint ``(host, port)`` as seen from the node's underlay link named ``link``
    (not the main socket): datagrams to it leave from that link's socket; datagrams that
    arrive on that socket carry it as their source."""

    host: str
    port: int
    link: str


def path_kind(target) -> str:
    t = type(target)
    if t is Via:
        return RELAY
    if t is StreamLink:
        return STREAM
    return DIRECT


def is_udp(target) -> bool:
    """A plain underlay UDP endpoint of the main socket (the only kind a reflexive address can be learned on)."""
    t = type(target)
    return t is not Via and t is not StreamLink and t is not LinkAddr and target is not None


class Path:
    """What is known about one path to a peer. Times are the caller's ``now``; None = never."""

    __slots__ = ("target", "origin", "added", "last_rx", "last_tx", "confirmed", "rtt", "dead")

    def __init__(self, target, origin: str, now: float):
        self.target = target
        self.origin = origin  # how we learned it: contact, record, callme, peer, link, handshake
        self.added = now
        self.last_rx: float | None = None
        self.last_tx: float | None = None
        self.confirmed: float | None = None  # an answer came back on it (probe reply, handshake response)
        self.rtt: float | None = None
        self.dead = False

    @property
    def kind(self) -> str:
        return path_kind(self.target)

    @property
    def heard(self) -> bool:
        """The peer has been heard on this path, or it answered there."""
        return self.last_rx is not None or self.confirmed is not None

    def info(self, now: float | None) -> dict:
        def age(t):
            return None if t is None or now is None else round(now - t, 3)

        return {"kind": self.kind, "origin": self.origin, "rx_age": age(self.last_rx),
                "confirmed_age": age(self.confirmed), "rtt": None if self.rtt is None else round(self.rtt, 6),
                "dead": self.dead}


class PathSet:
    """All known paths to one peer, in insertion order, at most :data:`MAX_PATHS`."""

    __slots__ = ("paths", "node_id")

    def __init__(self, node_id=None) -> None:
        self.paths: dict = {}
        self.node_id = node_id  # the peer (a measuring policy keeps its measurements by peer)

    def get(self, target) -> Path | None:
        return self.paths.get(target)

    def add(self, target, origin: str, now: float, keep=None) -> Path:
        p = self.paths.get(target)
        if p is not None:
            if p.dead and origin != "handshake":
                p.dead = False  # heard of again: worth another try
            return p
        if len(self.paths) >= MAX_PATHS:
            # Make room: the oldest path that is not the one in use and not confirmed, else the oldest.
            victims = [t for t, q in self.paths.items() if t != keep and q.confirmed is None] or \
                      [t for t in self.paths if t != keep]
            if victims:
                del self.paths[victims[0]]
        p = self.paths[target] = Path(target, origin, now)
        return p

    def remove(self, target) -> None:
        self.paths.pop(target, None)

    def __iter__(self):
        return iter(self.paths.values())

    def __len__(self) -> int:
        return len(self.paths)


_RANK = {DIRECT: 0, STREAM: 1, RELAY: 2}


class PathPolicy:
    """Which path to use. Replaceable: the transport calls only these three methods.

    ``trust``: a direct path heard from within this long is kept even when the
    peer's packets start arriving through a relay; one quieter than that is
    left for the relay at once (the peer has most likely lost it: a NAT
    rebinding), and punching wins it back.
    """

    def __init__(self, trust: float = 2.0):
        self.trust = trust
        #: ``heard(node_id, target, now)``: an authenticated packet came from a direct path that has
        #: never answered. Reach sets it: it probes that path and moves the session there once the
        #: probe is answered (path validation; Reach._on_heard).
        self.heard = None
        #: ``pay(node_id, target, size, now) -> bool``: may one datagram of ``size`` bytes go to a path
        #: of that peer that has never answered? Reach sets it (Reach._pay: the peer pays for it with
        #: what it sent us); the paths engine asks it before probing a link pair or answering there.
        self.pay = None

    def on_rx(self, paths: PathSet, current, target, now: float) -> bool:
        """An authenticated packet arrived on ``target`` (not the path in use): switch to it?

        Only to a path that has answered (or a TCP link). A source address is not proof that the
        peer receives there: whoever holds the session's keys can send under it from any source,
        and the session's answers (a DHT reply many times its request) would follow it to an
        address of its choosing (security.md, item 18). An unproven direct source is handed to
        ``heard`` instead, which validates it with a probe (QUIC's path validation, RFC 9000 8.2)."""
        if current is None:
            return True
        new, cur = path_kind(target), path_kind(current)
        if new != RELAY:
            p = paths.get(target)
            confirmed = p is not None and p.confirmed is not None
            if cur != RELAY and (confirmed or new == STREAM):
                return True  # roaming (WireGuard) to a path that answered: follow at once
            if not confirmed and new == DIRECT and self.heard is not None and paths.node_id is not None:
                self.heard(paths.node_id, target, now)
            return confirmed  # a relay is left for a confirmed path only
        if cur == RELAY:
            return True  # the peer moved to another relay
        p = paths.get(current)
        heard = None if p is None else max(p.last_rx or 0.0, p.confirmed or 0.0)
        return p is None or p.dead or not heard or now - heard > self.trust

    def choose(self, paths: PathSet, current, now: float):
        """The best path after something changed (a path confirmed or declared dead); None = keep ``current``."""
        best, best_key = None, None
        for p in paths:
            if p.dead:
                continue
            kind = path_kind(p.target)
            if kind != RELAY and p.confirmed is None and p.target != current:
                continue  # a direct path must have answered before we move traffic to it
            key = (_RANK[kind], p.confirmed is None, p.rtt if p.rtt is not None else 10.0)
            if best_key is None or key < best_key:
                best, best_key = p.target, key
        return best

    def handshake_targets(self, paths: PathSet | None, current) -> list:
        """Where a first Init goes: the path in use and every live candidate (all at once, as ICE)."""
        out = [] if current is None else [current]
        if paths is not None:
            for p in paths:
                if not p.dead and p.target != current:
                    out.append(p.target)
        return out
