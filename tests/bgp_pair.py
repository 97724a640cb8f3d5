"""Two or more sans-IO BGP speakers wired together in memory (no sockets, a virtual clock)."""

from __future__ import annotations

import ipaddress
import random

from weftnet.core.bgp import Close, Connect, PeerConfig, Send, Speaker, SpeakerConfig


class Net:
    """Speakers by address; Connect actions become in-memory connections; time is ``now``."""

    def __init__(self, seed: int = 1):
        self.rng = random.Random(seed)
        self.now = 1000.0
        self.speakers: dict[str, Speaker] = {}
        self.conns: dict[int, tuple[str, int]] = {}  # conn id -> (speaker address, peer conn id)
        self.next_conn = 1
        self.wire: list[tuple[str, int, bytes]] = []  # everything sent: (from, conn, bytes)
        self.refuse: set[str] = set()

    def add(self, addr: str, asn: int, families, **kw) -> Speaker:
        sp = Speaker(SpeakerConfig(asn, ipaddress.IPv4Address(addr), tuple(families), **kw), self.rng, self.now)
        self.speakers[addr] = sp
        return sp

    def peer(self, a: str, b: str, **kw) -> None:
        sa, sb = self.speakers[a], self.speakers[b]
        sa.add_peer(PeerConfig(b, sb.cfg.asn, families=sa.cfg.families, **kw), self.now)

    def start(self) -> None:
        for sp in self.speakers.values():
            sp.start(self.now)
        self.pump()

    def pump(self, rounds: int = 200) -> None:
        for _ in range(rounds):
            busy = False
            for addr, sp in list(self.speakers.items()):
                for act in sp.actions():
                    busy = True
                    self._do(addr, act)
            if not busy:
                return
        raise AssertionError("speakers never went quiet")

    def _do(self, addr: str, act) -> None:
        sp = self.speakers[addr]
        if isinstance(act, Connect):
            other = self.speakers.get(act.host)
            if other is None or act.host in self.refuse:
                sp.connect_failed(act.peer, self.now)
                return
            c1, c2 = self.next_conn, self.next_conn + 1
            self.next_conn += 2
            if not other.connection_accepted(c2, act.host, addr, self.now):
                sp.connect_failed(act.peer, self.now)
                return
            self.conns[c1] = (act.host, c2)
            self.conns[c2] = (addr, c1)
            sp.connection_made(act.peer, c1, addr, act.host, self.now)
        elif isinstance(act, Send):
            dst = self.conns.get(act.conn)
            self.wire.append((addr, act.conn, act.data))
            if dst is not None:
                self.speakers[dst[0]].data_received(dst[1], act.data, self.now)
        elif isinstance(act, Close):
            dst = self.conns.pop(act.conn, None)
            if dst is not None:
                self.conns.pop(dst[1], None)
                self.speakers[dst[0]].connection_lost(dst[1], self.now)

    def cut(self, a: str, b: str) -> None:
        """The TCP connection between a and b dies without a NOTIFICATION (both ends see it)."""
        for c, (far, other) in list(self.conns.items()):  # c is a's connection, other is b's end of it
            if far == b and self.conns.get(other, (None,))[0] == a:
                self.conns.pop(c, None)
                self.conns.pop(other, None)
                self.speakers[a].connection_lost(c, self.now)
                self.speakers[b].connection_lost(other, self.now)
        self.pump()

    def advance(self, seconds: float, step: float = 1.0) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for sp in self.speakers.values():
                t = sp.get_timer()
                if t is not None and t <= self.now:
                    sp.handle_timer(self.now)
            self.pump()
