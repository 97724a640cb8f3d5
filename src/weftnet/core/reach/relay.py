"""The relay service: who may be forwarded to whom, and how much.

A relay passes opaque session packets between two peers it has sessions
with (the transport does the passing, core/session/transport.py; this class
only decides). It sees who talks to whom and how much, never what.

Rules (docs/reach.md, "Relays"):

* **Registration.** A node asks to be reachable through the relay
  (``RelayRequest(REGISTER)``) for a lease; the relay grants it while it has
  fewer than ``max_sessions`` registrations, and fewer than a quarter of them
  from the requester's address block (IPv4 /24, IPv6 /48; ``exempt_prefixes``
  aside), so one host with many identities cannot fill the relay and lock
  everyone else out. A registration ends with its lease or its session.
* **Who.** A Forward is passed on only if one of its two ends *at this
  relay* — the peer it came from or the peer it goes to — is registered.
  Replies to a registered node therefore pass, but the relay is no open
  proxy between two strangers. The relay forwards over sessions it has;
  for a registered sender only (which may have no other way out: UDP
  blocked) it opens one to a next hop it finds in its own routing table, at
  most ``OPENS_PER_MINUTE`` a minute.
* **How much.** A token bucket per sending peer (``peer_rate`` bytes/s, with a
  burst of one second's worth) and one for everything (``total_rate``).
* **Never more.** One packet out per packet in, of exactly the same size
  (the Forward header trades a hop for a trail entry); nothing is answered
  to a refused packet. This is enforced in the transport and tested.

Sans-IO: the clock comes in as ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from weftnet.core.identity import NodeId
from weftnet.core.limits import prefix_key

__all__ = ["ForwardBooks", "RelayConfig", "RelayService"]


@dataclass
class RelayConfig:
    enabled: bool = False
    #: Nodes registered to be reachable through this relay at once.
    max_sessions: int = 64
    #: Bytes per second one peer may have forwarded (burst: one second's worth): 40 Mbit/s.
    peer_rate: int = 5_000_000
    #: Bytes per second forwarded in total: 400 Mbit/s.
    total_rate: int = 50_000_000
    #: Longest lease granted (seconds); the node renews at half of it.
    max_lease: int = 600


class _Bucket:
    """Bytes per second with a burst of one second's worth."""

    __slots__ = ("rate", "tokens", "at")

    def __init__(self, rate: float, now: float):
        self.rate = float(rate)
        self.tokens = float(rate)
        self.at = now

    def take(self, n: int, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


class ForwardBooks:
    """What a node that passes Forward packets on keeps (a relay, a transit hop): a token bucket
    per sending peer and one for everything, counters, and packets and bytes per (sender,
    receiver) pair — each table bounded at ``MAX_TRACKED``. The owner sets ``_buckets``,
    ``_total``, ``by_pair`` and ``stats`` and defines ``refused``."""

    MAX_TRACKED = 4096

    def _charge(self, src: NodeId, dst: NodeId, size: int, peer_rate: float, now: float) -> str | None:
        """Take ``size`` bytes from ``src``'s bucket and the total; None and counted, or the refusal."""
        bucket = self._buckets.get(src)
        if bucket is None:
            if len(self._buckets) >= self.MAX_TRACKED:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[src] = _Bucket(peer_rate, now)
        if not bucket.take(size, now):
            return self.refused("peer_rate")
        if not self._total.take(size, now):
            return self.refused("total_rate")
        self.stats["forwarded"] += 1
        self.stats["forwarded_bytes"] += size
        c = self.by_pair.get((src, dst))
        if c is None:
            if len(self.by_pair) >= self.MAX_TRACKED:
                self.by_pair.pop(next(iter(self.by_pair)))
            c = self.by_pair[(src, dst)] = [0, 0]
        c[0] += 1
        c[1] += size
        return None


class RelayService(ForwardBooks):
    """Registrations, admission and counters of one relay (``transport.relay``)."""


    def __init__(self, config: RelayConfig, now: float):
        self.config = config
        self._registered: dict[NodeId, float] = {}  # node -> lease end
        self._block: dict[NodeId, str] = {}  # node -> the address block it registered from
        self._buckets: dict[NodeId, _Bucket] = {}
        self._opens: dict[NodeId, list[float]] = {}
        self._total = _Bucket(config.total_rate, now)
        #: Per (sender, receiver): packets and bytes forwarded — all a relay learns about its users.
        self.by_pair: dict[tuple[NodeId, NodeId], list[int]] = {}
        self.stats = dict.fromkeys(
            ("forwarded", "forwarded_bytes", "registered", "registrations_refused", "expired",
             "registrations_refused_block", "refused_not_registered", "refused_peer_rate", "refused_total_rate", "refused_no_session",
             "opened_for_peers", "refused_open_rate"), 0)

    # -- registrations -----------------------------------------------------
    def per_block(self) -> int:
        """Registrations one address block (IPv4 /24, IPv6 /48) may hold at once."""
        return max(1, self.config.max_sessions // 4)

    def register(self, node: NodeId, lease: int, now: float, source: str | None = None,
                 exempt: bool = False) -> tuple[int, str]:
        """Grant (lease seconds, "") or refuse (0, reason). ``source``: the requester's address (its
        block's quota applies unless ``exempt``)."""
        if not self.config.enabled:
            return 0, "not a relay"
        self.expire(now)
        if node not in self._registered:
            if len(self._registered) >= self.config.max_sessions:
                self.stats["registrations_refused"] += 1
                return 0, "relay full"
            if source is not None and not exempt:
                block = prefix_key(source)
                if sum(1 for b in self._block.values() if b == block) >= self.per_block():
                    self.stats["registrations_refused"] += 1
                    self.stats["registrations_refused_block"] += 1
                    return 0, "relay full for your address block"
                self._block[node] = block
        lease = max(30, min(int(lease), self.config.max_lease))
        if node not in self._registered:
            self.stats["registered"] += 1
        self._registered[node] = now + lease
        return lease, ""

    def set_rates(self, now: float) -> None:
        """The config's rates changed (a reload): the buckets follow."""
        self._total = _Bucket(self.config.total_rate, now)
        for b in self._buckets.values():
            b.rate = float(self.config.peer_rate)
            b.tokens = min(b.tokens, b.rate)

    def unregister(self, node: NodeId) -> None:
        self._registered.pop(node, None)
        self._block.pop(node, None)

    def is_registered(self, node: NodeId, now: float) -> bool:
        end = self._registered.get(node)
        return end is not None and end > now

    def registered(self, now: float) -> list[NodeId]:
        return sorted(n for n, end in self._registered.items() if end > now)

    def expire(self, now: float) -> None:
        for node in [n for n, end in self._registered.items() if end <= now]:
            del self._registered[node]
            self._block.pop(node, None)
            self.stats["expired"] += 1

    def session_down(self, node: NodeId) -> None:
        self._registered.pop(node, None)
        self._block.pop(node, None)
        self._buckets.pop(node, None)
        self._opens.pop(node, None)

    #: Sessions a registered node may have its relay open on its behalf, per minute.
    OPENS_PER_MINUTE = 30

    def may_open(self, src: NodeId, dst: NodeId, now: float) -> bool:
        """Open a session to ``dst`` for a Forward from ``src``? Only for a registered ``src``
        (a node that may have no other way out, e.g. UDP blocked), at most OPENS_PER_MINUTE."""
        if not self.config.enabled or not self.is_registered(src, now):
            return False
        times = self._opens.setdefault(src, [])
        times[:] = [t for t in times if now - t < 60.0]
        if len(times) >= self.OPENS_PER_MINUTE:
            self.stats["refused_open_rate"] = self.stats.get("refused_open_rate", 0) + 1
            return False
        times.append(now)
        self.stats["opened_for_peers"] = self.stats.get("opened_for_peers", 0) + 1
        return True

    # -- admission (called by the transport for every Forward to pass on) ---
    def admit(self, src: NodeId, dst: NodeId, size: int, now: float) -> str | None:
        """None to pass the packet on, else the reason it is dropped (also counted)."""
        if not self.config.enabled:
            return self.refused("not_registered")
        if not (self.is_registered(src, now) or self.is_registered(dst, now)):
            return self.refused("not_registered")
        return self._charge(src, dst, size, self.config.peer_rate, now)

    def refused(self, reason: str) -> str:
        key = "refused_" + reason.replace("-", "_")
        self.stats[key] = self.stats.get(key, 0) + 1
        return reason

    def status(self, now: float) -> dict:
        return {
            "enabled": self.config.enabled,
            "registered": [n.text() for n in self.registered(now)],
            "limits": {"max_sessions": self.config.max_sessions, "peer_rate": self.config.peer_rate,
                       "total_rate": self.config.total_rate},
            "stats": dict(self.stats),
            "pairs": [{"from": s.text(), "to": d.text(), "packets": c[0], "bytes": c[1]}
                      for (s, d), c in sorted(self.by_pair.items())],
        }
