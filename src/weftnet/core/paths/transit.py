"""Transit: whether this node passes a Forward on between two of its peers, and how much.

The transport asks one object, ``transport.relay``, before it passes a
``Forward`` on (core/session/transport.py; one forwarding mechanism for
relays, detours and explicit routes). Reach's :class:`RelayService` admits
packets to or from a node registered with this relay. :class:`Transit`
stands in front of it and also admits, when ``[paths] transit`` is on,
packets between any two peers that have sessions with this node: that is
what makes it a RON intermediate (a detour) or a hop of someone's explicit
route. Both ends are authenticated peers of ours; the transport passes one
packet out per packet in, of the same size; a token bucket per sending peer
and one in total bound what it costs (the same buckets as a relay's).
"""

from __future__ import annotations

from weftnet.core.counters import Counters
from weftnet.core.identity import NodeId
from weftnet.core.reach.relay import ForwardBooks, _Bucket

__all__ = ["Transit"]


class Transit(ForwardBooks):
    #: Sessions opened to next hops for one sending peer, a minute at most.
    OPENS_PER_MINUTE = 10

    def __init__(self, relay, enabled: bool, peer_rate: int, total_rate: int, now: float):
        self.relay = relay  # reach's RelayService, or None
        self.enabled = enabled
        self.peer_rate = peer_rate
        self._buckets: dict[NodeId, _Bucket] = {}
        self._total = _Bucket(total_rate, now)
        self.by_pair: dict[tuple[NodeId, NodeId], list[int]] = {}
        self._opens: dict[NodeId, list[float]] = {}
        self.stats = Counters(("forwarded", "forwarded_bytes", "refused_not_transit", "refused_peer_rate",
                               "refused_total_rate", "refused_no_session", "opened_for_peers",
                               "refused_open_rate"))

    def admit(self, src: NodeId, dst: NodeId, size: int, now: float) -> str | None:
        relay = self.relay
        if relay is not None and (relay.is_registered(src, now) or relay.is_registered(dst, now)):
            return relay.admit(src, dst, size, now)
        if not self.enabled:
            return relay.admit(src, dst, size, now) if relay is not None else self.refused("not_transit")
        return self._charge(src, dst, size, self.peer_rate, now)

    def may_open(self, src: NodeId, dst: NodeId, now: float) -> bool:
        """Open a session to ``dst`` (found in our routing table) to pass on a Forward from ``src``?
        The relay's rule for its registered nodes; with transit on, also for any peer, at most
        :data:`OPENS_PER_MINUTE` per sending peer — so an explicit route's hops need no session
        set up beforehand, and a peer cannot make us handshake with more than that."""
        relay = self.relay
        if relay is not None and relay.is_registered(src, now):
            return relay.may_open(src, dst, now)
        if not self.enabled:
            return False
        times = self._opens.get(src)
        if times is None:
            if len(self._opens) >= self.MAX_TRACKED:
                self._opens.pop(next(iter(self._opens)))
            times = self._opens[src] = []
        times[:] = [t for t in times if now - t < 60.0]
        if len(times) >= self.OPENS_PER_MINUTE:
            self.stats["refused_open_rate"] += 1
            return False
        times.append(now)
        self.stats["opened_for_peers"] += 1
        return True

    def refused(self, reason: str) -> str:
        key = "refused_" + reason.replace("-", "_")
        self.stats[key] = self.stats.get(key, 0) + 1
        if self.relay is not None and reason == "no-session":
            self.relay.refused(reason)
        return reason

    def status(self) -> dict:
        return {
            "enabled": self.enabled,
            "peer_rate": self.peer_rate,
            "stats": dict(self.stats),
            "pairs": [{"from": s.text(), "to": d.text(), "packets": c[0], "bytes": c[1]}
                      for (s, d), c in sorted(self.by_pair.items(), key=lambda kv: (kv[0][0].raw, kv[0][1].raw))],
        }
