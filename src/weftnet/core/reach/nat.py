"""What a node knows of its own endpoints: local addresses, reflexive addresses, NAT mapping, reachability.

Peers report, inside the session (``ProbeReply.observed``), the UDP source
they saw our probe come from. From those reports (RFC 4787's vocabulary;
the method is RFC 5780's, with peers in place of a STUN server):

* a report equal to one of our local endpoints: there is no NAT (**public**);
* two peers at different IP addresses that see the same address and port:
  the mapping is **endpoint-independent** (EIM; "cone"); hole punching works
  towards it;
* two that see different ports (or addresses): **endpoint-dependent**
  (EDM; "symmetric"): a punch towards it works only from a peer with no NAT
  or a full cone, so it is reached through a relay;
* no UDP report at all while sessions run over a TCP link: **udp-blocked**.

Whether the node is **reachable unsolicited** (a packet from a host it never
sent to gets in) is learned by dial-back (docs/reach.md): a peer asks a third
node to send a ``ReachTest`` to our reflexive address; if it arrives, yes.

Reports are kept per peer IP address (at most :data:`MAX_REPORTS`, oldest
out), and each expires after ``report_ttl`` so a changed mapping (rebinding,
a new network) is noticed.
"""

from __future__ import annotations

from weftnet.core.reach.messages import (
    CAND_LOCAL,
    CAND_REFLEXIVE,
    MAX_CANDIDATES,
    NAT_EDM,
    NAT_EIM,
    NAT_NAMES,
    NAT_PUBLIC,
    NAT_UDP_BLOCKED,
    NAT_UNKNOWN,
)

__all__ = ["NatObserver", "MAX_REPORTS"]

MAX_REPORTS = 16


class NatObserver:
    def __init__(self, report_ttl: float = 600.0):
        self.report_ttl = report_ttl
        self.local: list[tuple[str, int]] = []
        self._reports: dict[str, tuple[tuple[str, int], float]] = {}  # peer IP -> (observed, when)
        #: True / False once a dial-back answered (or timed out); None = not known.
        self.reachable: bool | None = None
        self.reachable_at: float | None = None
        self.stream_only = False  # sessions exist, but only over TCP links

    # -- input -------------------------------------------------------------
    def set_local(self, endpoints: list[tuple[str, int]]) -> bool:
        """Our own bound endpoints (the runtime lists interface addresses). True if they changed."""
        new = list(dict.fromkeys(tuple(e) for e in endpoints))[:MAX_CANDIDATES]
        if new == self.local:
            return False
        self.local = new
        self._reports.clear()  # another network: what peers saw before says nothing now
        self.reachable = None
        return True

    def report(self, peer_ip: str, observed: tuple[str, int], now: float) -> bool:
        """A peer at ``peer_ip`` saw us as ``observed``. True if the classification or reflexive set changed."""
        before = (self.classify(now), self.reflexive(now))
        old = self._reports.pop(peer_ip, None)
        if old is None and len(self._reports) >= MAX_REPORTS:
            self._reports.pop(next(iter(self._reports)))
        if old is not None and old[0] != tuple(observed):
            # The mapping moved (a rebinding, a new network): every other report is older than
            # that, so none of them says anything about the mapping now.
            self._reports.clear()
            self.reachable = None
        self._reports[peer_ip] = (tuple(observed), now)
        return (self.classify(now), self.reflexive(now)) != before

    def set_reachable(self, value: bool, now: float) -> bool:
        changed = value != self.reachable
        self.reachable, self.reachable_at = value, now
        return changed

    # -- derived -----------------------------------------------------------
    def _fresh(self, now: float) -> dict[str, tuple[str, int]]:
        return {ip: obs for ip, (obs, at) in self._reports.items() if now - at <= self.report_ttl}

    def has_report(self, peer_ip: str, now: float) -> bool:
        r = self._reports.get(peer_ip)
        return r is not None and now - r[1] <= self.report_ttl

    def reports(self, now: float) -> int:
        return len(self._fresh(now))

    def reflexive(self, now: float) -> list[tuple[str, int]]:
        seen = list(dict.fromkeys(self._fresh(now).values()))
        return [e for e in seen if e not in self.local]

    def classify(self, now: float) -> int:
        fresh = self._fresh(now)
        if not fresh:
            return NAT_UDP_BLOCKED if self.stream_only else NAT_UNKNOWN
        # A peer on our own LAN sees our local address; peers across the NAT see the mapping.
        outside = {ip: obs for ip, obs in fresh.items() if obs not in self.local}
        if not outside:
            return NAT_PUBLIC
        if len(outside) < 2:
            return NAT_UNKNOWN
        return NAT_EIM if len(set(outside.values())) == 1 else NAT_EDM

    def candidates(self, now: float) -> list[tuple[int, tuple[str, int]]]:
        """(kind, endpoint) to publish: reflexive first (what a remote peer can use), then local."""
        cls = self.classify(now)
        if cls == NAT_UDP_BLOCKED:
            return []
        # Behind an endpoint-dependent NAT each peer sees another port: none of them works for a third.
        out = [] if cls == NAT_EDM else [(CAND_REFLEXIVE, e) for e in self.reflexive(now)]
        out += [(CAND_LOCAL, e) for e in self.local if e[0] not in ("0.0.0.0", "::")]
        return out[:MAX_CANDIDATES]

    def status(self, now: float) -> dict:
        r = self.reachable
        return {
            "nat": NAT_NAMES[self.classify(now)],
            "reachable": None if r is None else r,
            "local": [f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in self.local],
            "reflexive": [f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in self.reflexive(now)],
            "reports": self.reports(now),
        }
