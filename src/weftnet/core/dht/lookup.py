"""Iterative lookups as state machines (Kademlia section 2.3, S/Kademlia section 4.4).

A lookup keeps a shortlist of contacts ordered by XOR distance to the target.
It is *not* run in lock-step rounds: whenever a request answers or times out,
the next closest unasked contact is asked at once, so at most ``alpha``
requests are in flight and a slow peer never holds the lookup up.

A lookup ends when the ``k`` closest contacts it knows of (that have not
failed) have all answered — or, for FIND_VALUE, as soon as ``quorum`` valid
records have come back.

With ``disjoint > 1`` the shortlist is split into that many paths that never
share a contact (S/Kademlia), so one adversarial region cannot steer every
path; their results are merged.

**Cost-aware reads.** A request to a contact without a session ("cold")
costs a Noise handshake — ten X25519 operations across both ends — while a
request over an open session costs two AEAD calls. A FIND_VALUE lookup needs
*one* holder to answer, and near the key every candidate is likely a holder,
so racing ``alpha`` handshakes buys little. When the engine says which
contacts have a session (``has_session``), a value lookup still goes through its
``k``-window nearest first, but keeps at most ``cold_limit`` cold requests
outstanding and fills the rest of ``alpha`` with warm candidates. A cold
request that has not answered after ``hedge`` seconds stops counting against
that limit, so the next one goes out (a hedged request, as in Dean and
Barroso's "The Tail at Scale"). Node lookups (and the FIND_NODE half of a
put) must hear from all ``k`` closest anyway and keep plain ``alpha``
parallelism.

**Ending early.** A lookup of a node ID that belongs to a live node (how a
node is located before it is talked to) is over when that node itself
answers: no contact can be closer than distance 0, so waiting for the rest
of the k closest only adds round trips (Jimenez et al., "Sub-second lookups
on a large-scale Kademlia-based overlay", P2P 2011, stop a lookup as soon as
its answer is certain). The target is asked the moment any reply names it,
even past ``alpha``. Lookups for a key (puts, refreshes, bootstrap) still
need all k closest and keep the paper's rule.

**Hints cost their source** (docs/security.md, item 6). Every candidate
remembers which node told us about it (``source``; -1 for contacts from our
own table). The engine may pass a ``gate`` to :meth:`next_requests`; a
candidate the gate refuses is dropped from the lookup (``refused``, not a
failure of anyone's), and one it defers (``None``) stays a candidate for a
later round.

The class only decides; the engine (``Dht``) sends the requests and feeds the
answers back, so this logic is testable with scripted replies.
"""

from __future__ import annotations

from bisect import bisect
from dataclasses import dataclass, field
from typing import Callable

from weftnet.core.contact import Contact
from weftnet.core.dht.routing import nearest

__all__ = ["Lookup", "Candidate"]

CANDIDATE, IN_FLIGHT, ANSWERED, FAILED, DEFERRED = 0, 1, 2, 3, 4


@dataclass(slots=True)
class Candidate:
    contact: Contact
    key: int
    distance: int
    depth: int
    path: int
    source: int = -1  # the node whose answer named it (-1: from our own table)
    state: int = CANDIDATE
    cold_until: float = 0.0  # a cold request counts against the cold limit until then
    via_rtt: float = 0.0  # RTT expected from the NearNodes that named it (0: no hint)
    slow_at: float = 0.0  # hedging: in flight and not answered by then, it stops counting against alpha
    hint_slot: tuple | None = None  # set by the engine's gate when asking it costs its source


@dataclass
class Lookup:
    op_id: int
    kind: str  # "find_node", "find_value", "store", "get", "bootstrap", "refresh"
    target: int
    started: float
    k: int = 20
    alpha: int = 3
    disjoint: int = 1
    quorum: int = 1
    own_key: int = -1
    #: Value lookups only: which contacts have an open session, how many cold
    #: requests may be outstanding, and after how long one is hedged.
    has_session: Callable[[Contact], bool] | None = None
    cold_limit: int = 1
    hedge: float = 0.05
    #: Node lookups ("find_node"): end as soon as the node with exactly the
    #: target ID has answered (nothing can be closer), and ask it the moment it
    #: is heard of, even past alpha. See "Ending early" in the module docstring.
    stop_at_target: bool = False
    #: Requests in the first round (0: alpha), before any answer is in.
    first_round: int = 0
    #: Requests this lookup may send in all (0: no limit). A table fill after the
    #: join needs a few nodes of a bucket to talk to us, not the k closest to a point.
    budget: int = 0
    #: Contacts (by key) this lookup never asks and does not take as candidates: a table
    #: fill's are the routing table's own (already first-hand: asking them again adds nothing).
    skip: dict | None = None
    #: Proximity route selection (see "Choosing by RTT"): the RTT we measured to a
    #: node (by key; None: never measured) and what to assume for one never measured.
    rtt_of: Callable[[int], float | None] | None = None
    unknown_rtt: float = 0.0
    #: How many bits of progress toward the target a faster contact may give up
    #: (-1: off, strictly nearest first).
    prs_bits: int = -1
    #: Hedging (see "Hedged requests"): a request not answered after this many times
    #: its contact's expected RTT stops counting against alpha (0: off).
    hedge_rtts: float = 0.0
    candidates: dict = field(default_factory=dict)  # key -> Candidate
    order: list = field(default_factory=list)  # the same candidates, nearest first
    in_flight: list = field(default_factory=list)  # requests out, per path

    values: list = field(default_factory=list)
    messages: int = 0
    done: bool = False
    result_hops: int = 0
    reseeds: int = 0  # times the engine added more of its table after every candidate failed
    refused: int = 0  # candidates the engine's gate would not pay for

    def __post_init__(self) -> None:
        self.in_flight = [0] * self.disjoint
        # The distances of ``order``, in the same order: a new candidate is put in its place
        # by a bisection over these integers (no key function, no re-sort of the list; all
        # distances differ, so the order is the one a sort by distance gives).
        self._dists: list[int] = [c.distance for c in self.order]

    def seed(self, contacts: list[Contact], sources: dict[int, int] | None = None) -> None:
        """Start from ``contacts``; ``sources``: for those only heard of, the key of the node
        whose answer named each (its hint credit pays for asking them, docs/security.md item 6)."""
        for i, c in enumerate(nearest(contacts, self.target)):
            self._add(c, depth=1, path=i % self.disjoint)
            if sources is not None and c.key in sources:
                self.candidates[c.key].source = sources[c.key]

    def _add(self, contact: Contact, depth: int, path: int) -> None:
        key = contact.key
        if key == self.own_key or key in self.candidates:
            return
        d = key ^ self.target
        cand = Candidate(contact, key, d, depth, path)
        self.candidates[key] = cand
        i = bisect(self._dists, d)
        self._dists.insert(i, d)
        self.order.insert(i, cand)

    def answered(self, key: int, contacts, via: dict | None = None, first_hand: dict | None = None,
                 admit: Callable[[Contact], bool] | None = None) -> None:
        """``key`` answered, naming ``contacts``; ``via``: expected RTTs of some of them
        (node key -> seconds) from the answer's hints (proximity route selection).

        ``first_hand``: the routing table's contacts by key; a named contact the table
        holds becomes a candidate at the table's endpoint (learnt first-hand), not
        the one the answer gave. ``admit``: a test a new candidate must pass (the ID
        puzzle). Both are applied only to contacts this lookup has not seen yet: most
        contacts of a reply were named before, and they cost one dict probe here."""
        cand = self.candidates.get(key)
        if cand is None or cand.state not in (IN_FLIGHT, FAILED):
            return
        if cand.state == IN_FLIGHT:
            self.in_flight[cand.path] -= 1
        cand.state = ANSWERED
        # _add, inlined: this loop sees every contact of every reply.
        known, own, target, order, dists = self.candidates, self.own_key, self.target, self.order, self._dists
        depth, path = cand.depth + 1, cand.path
        skip = self.skip
        held = first_hand.get if first_hand is not None else None
        for c in contacts:
            ckey = c.key
            if ckey in known or ckey == own or (skip is not None and ckey in skip):
                continue
            if held is not None:
                c = held(ckey, c)
            if admit is not None and not admit(c):
                continue
            d = ckey ^ target
            known[ckey] = new = Candidate(c, ckey, d, depth, path, key)
            i = bisect(dists, d)
            dists.insert(i, d)
            order.insert(i, new)
        if via:
            for ckey, rtt in via.items():
                c = known.get(ckey)
                if c is not None and c.state == CANDIDATE and (not c.via_rtt or rtt < c.via_rtt):
                    c.via_rtt = rtt

    def failed(self, key: int) -> None:
        cand = self.candidates.get(key)
        if cand is not None and cand.state == IN_FLIGHT:
            cand.state = FAILED
            self.in_flight[cand.path] -= 1

    def next_requests(self, now: float = 0.0, gate: Callable[[Candidate], bool | None] | None = None
                      ) -> list[Candidate]:
        """Contacts to ask now (marked in flight). Empty when nothing more is useful.

        ``gate(candidate)``, for candidates heard of (``source`` >= 0): True = ask
        it, False = drop it (refused), None = not now (it stays a candidate)."""
        if self.done:
            return []
        costed = self.has_session is not None and self.kind in ("find_value", "get")
        hedge = self.hedge_rtts
        prs = self.prs_bits >= 0 and self.rtt_of is not None
        if gate is None and not (costed or hedge or prs or self.budget or self.stop_at_target) and self.disjoint == 1:
            # Plain nearest first on one path with no gate (a join's or a refresh's lookup; every
            # candidate is asked as it comes): what the loop below does then, without its set-up.
            first = self.first_round if self.first_round and not self.messages else 0
            in_flight = self.in_flight
            room = max(self.alpha, first) - in_flight[0]
            if room <= 0:
                return []
            picks = self._unasked(0, room)
            for c in picks:
                c.state = IN_FLIGHT
            in_flight[0] += len(picks)
            self.messages += len(picks)
            return picks
        out: list[Candidate] = []
        deferred: list[Candidate] = []

        def admit(c: Candidate) -> bool | None:
            verdict = True if gate is None or c.source < 0 else gate(c)
            if verdict is None:
                c.state = DEFERRED
                deferred.append(c)
            elif not verdict:
                c.state = FAILED
                self.refused += 1
            else:
                c.state = IN_FLIGHT
                self.in_flight[c.path] += 1
                if hedge:
                    expect = self._expected_rtt(c.key)
                    if expect > 0:
                        c.slow_at = now + hedge * expect
                out.append(c)
            return verdict

        if self.stop_at_target:
            exact = self.candidates.get(self.target)
            if exact is not None and exact.state == CANDIDATE:
                admit(exact)
        first = self.first_round if self.first_round and not self.messages else 0
        for path in range(self.disjoint):
            while True:
                width = max(self.alpha, first)
                room = width - self.in_flight[path]
                if hedge:
                    # Requests slower than expected stop holding the next ones back,
                    # up to twice alpha in flight.
                    room = min(room + self._stale(path, now), 2 * width - self.in_flight[path])
                if self.budget:
                    room = min(room, self.budget - self.messages - len(out))
                if room <= 0:
                    break
                if costed:
                    picks = self._pick_costed(path, self._unasked(path), room, now)
                elif prs:
                    picks = self._pick_near(self._unasked(path), room)
                else:
                    picks = self._unasked(path, room)
                if not picks:
                    break
                refused = False
                for c in picks:
                    refused |= admit(c) is False
                if not refused:
                    break  # a refusal frees room: look again; a deferral does not
        for c in deferred:
            c.state = CANDIDATE
        self.messages += len(out)
        return out

    def _unasked(self, path: int, limit: int = 0) -> list[Candidate]:
        """The not yet asked among the k nearest live candidates of a path, nearest first
        (only the first ``limit`` of them, if given: nearest first needs no more)."""
        todo, seen, k = [], 0, self.k
        if self.disjoint == 1:  # (every candidate is on path 0: the loop below, without its test)
            for c in self.order:
                state = c.state
                if state == FAILED:
                    continue
                seen += 1
                if state == CANDIDATE:
                    todo.append(c)
                    if len(todo) == limit:
                        break
                if seen >= k:
                    break
            return todo
        for c in self.order:  # only the k nearest live ones matter
            state = c.state
            if state == FAILED or c.path != path:
                continue
            seen += 1
            if state == CANDIDATE:
                todo.append(c)
                if len(todo) == limit:
                    break
            if seen >= k:
                break
        return todo

    def _expected_rtt(self, key: int) -> float:
        rtt = self.rtt_of(key) if self.rtt_of is not None else None
        if rtt is None:
            via = self.candidates[key].via_rtt
            return via if via else self.unknown_rtt
        return rtt

    def _stale(self, path: int, now: float) -> int:
        """Requests of a path in flight past their hedge time."""
        if not self.in_flight[path]:
            return 0
        return sum(1 for c in self.order if c.state == IN_FLIGHT and c.path == path and 0.0 < c.slow_at <= now)

    def _pick_near(self, todo: list[Candidate], room: int) -> list[Candidate]:
        """Proximity route selection: among the unasked candidates that are within
        ``prs_bits`` bits of progress of the nearest one, the lowest expected RTT first
        (ties: nearest first); the rest of ``room`` nearest first."""
        if len(todo) <= 1 or room <= 0:
            return todo[:room]
        limit = todo[0].distance.bit_length() + self.prs_bits
        pool = [c for c in todo if c.distance.bit_length() <= limit]
        if len(pool) > 1:
            pool.sort(key=lambda c: self._expected_rtt(c.key))  # stable: equal RTTs stay nearest first
        picks = pool[:room]
        if len(picks) < room:
            chosen = {id(c) for c in picks}
            picks += [c for c in todo if id(c) not in chosen][:room - len(picks)]
        return picks

    def _pick_costed(self, path: int, todo: list[Candidate], room: int, now: float) -> list[Candidate]:
        """Nearest first, but at most ``cold_limit`` unhedged cold requests outstanding."""
        cold_out = sum(1 for c in self.order if c.path == path and c.state == IN_FLIGHT and c.cold_until > now)
        picks = []
        for c in todo:
            if len(picks) >= room:
                break
            if self.has_session(c.contact):
                picks.append(c)
            elif cold_out < self.cold_limit:
                cold_out += 1
                c.cold_until = now + self.hedge
                picks.append(c)
        return picks

    def next_hedge(self, now: float) -> float | None:
        """When an outstanding cold request stops holding the next one back (None: none does)."""
        times = [c.cold_until for c in self.order if c.state == IN_FLIGHT and c.cold_until > now]
        if self.hedge_rtts:
            times += [c.slow_at for c in self.order if c.state == IN_FLIGHT and c.slow_at > now]
        return min(times) if times else None

    def finished(self) -> bool:
        """The k closest live contacts have all answered (per path), or a quorum of values is in."""
        if self.done:
            return True
        if self.kind in ("find_value", "get") and len(self.values) >= self.quorum:
            return True
        if self.stop_at_target:
            exact = self.candidates.get(self.target)
            if exact is not None and exact.state == ANSWERED:
                return True
        order, k = self.order, self.k
        if self.disjoint == 1:  # (every candidate is on path 0: the loop below, without its test)
            seen = 0
            for c in order:
                state = c.state
                if state == ANSWERED:
                    seen += 1
                    if seen >= k:
                        return True
                elif state != FAILED:
                    return False
            return True
        for path in range(self.disjoint):
            seen = 0
            for c in order:
                state = c.state
                if state == FAILED or c.path != path:
                    continue
                if state != ANSWERED:
                    return False
                seen += 1
                if seen >= k:
                    break
        return True

    def closest(self, n: int | None = None) -> list[Contact]:
        n = self.k if n is None else n
        if n < 0:
            return [c.contact for c in self.order if c.state == ANSWERED][:n]
        # The n nearest that answered: the scan stops there (a join's order holds ~130
        # candidates, the ~25 nearest of which are all it reads).
        out: list[Contact] = []
        if n:
            for c in self.order:
                if c.state == ANSWERED:
                    out.append(c.contact)
                    if len(out) == n:
                        break
        return out

    def hops(self) -> int:
        for c in self.order:  # the nearest that answered
            if c.state == ANSWERED:
                return c.depth
        return 0
