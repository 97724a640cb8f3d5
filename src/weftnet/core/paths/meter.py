"""What one path measures: round-trip time, jitter, loss, and BFD-like liveness. Sans-IO.

A :class:`PathMeter` is fed probe results by the engine (core/paths/engine.py)
and answers three questions: how good is this path (``srtt``, ``jitter``,
``loss``), is it up, and when should it be probed next.

* **RTT** is smoothed as TCP does (RFC 6298: ``srtt`` with gain 1/8).
* **Jitter** is the mean deviation of successive RTT samples with gain 1/16,
  as RTP's interarrival jitter (RFC 3550 section 6.4.1), taken on round trips.
* **Loss** is the share of the last ``window`` probes that were not answered
  within their timeout (``max(1 s, 3 x srtt)``; a reply after that still
  counts for liveness and RTT, not as an answer for loss).
* **Liveness** follows BFD's asynchronous mode with echo (RFC 5880/5881): a path
  is *up* after two answered probes in a row, and *down* once nothing has been
  answered for the detection time while probes went out at least twice in it.
  Up again takes two answers in a row, and starts its loss and RTT afresh;
  ``up_since`` lets a policy ask for a path to have been up for a while before
  it trusts it again (hysteresis).
"""

from __future__ import annotations

__all__ = ["PathMeter", "UNKNOWN", "UP", "DOWN"]

UNKNOWN, UP, DOWN = "unknown", "up", "down"


class PathMeter:
    __slots__ = ("target", "srtt", "rttvar", "jitter", "last_rtt", "min_rtt", "outcomes", "window",
                 "sent", "answered", "lost", "late", "last_tx", "last_answer", "state", "up_since",
                 "down_since", "streak", "next_due", "seq", "pending", "changes", "origin", "first_tx", "unanswered", "watch_from", "n")

    def __init__(self, target, window: int = 50, origin: str = ""):
        self.target = target
        self.origin = origin
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.jitter = 0.0
        self.last_rtt: float | None = None
        self.min_rtt: float | None = None
        self.outcomes = 0  # bit i = probe (newest - i) was answered in time
        self.n = 0  # outcomes in the window (at most ``window``)
        self.window = window
        self.sent = 0
        self.answered = 0
        self.lost = 0
        self.late = 0
        self.last_tx: float | None = None
        self.last_answer: float | None = None
        self.state = UNKNOWN
        self.up_since: float | None = None
        self.down_since: float | None = None
        self.streak = 0  # answered in a row
        self.next_due = 0.0
        self.seq = 0
        self.pending = 0  # probes out and not yet answered or timed out
        self.changes = 0
        self.first_tx: float | None = None
        self.unanswered = 0  # probes sent since the last answer
        self.watch_from = 0.0  # detection counts from here at the earliest (probing got faster then)

    # -- inputs ---------------------------------------------------------------
    def probe_sent(self, now: float) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        self.sent += 1
        self.pending += 1
        self.last_tx = now
        self.unanswered += 1
        if self.first_tx is None:
            self.first_tx = now
        return self.seq

    def answer(self, rtt: float, now: float, in_time: bool = True) -> bool:
        """A reply came back after ``rtt``. True if the state changed."""
        rtt = max(0.0, rtt)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        if self.last_rtt is not None:
            self.jitter += (abs(rtt - self.last_rtt) - self.jitter) / 16.0
        self.last_rtt = rtt
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        self.last_answer = now
        self.unanswered = 0
        self.streak += 1
        if in_time:
            self.pending = max(0, self.pending - 1)
            self.answered += 1
            self._outcome(True)
        else:
            self.late += 1
        if self.state != UP and self.streak >= 2:
            return self._set(UP, now)
        return False

    def timed_out(self, now: float) -> None:
        """A probe got no answer within its timeout."""
        self.pending = max(0, self.pending - 1)
        self.lost += 1
        self.streak = 0
        self._outcome(False)

    def _outcome(self, ok: bool) -> None:
        self.outcomes = ((self.outcomes << 1) | (1 if ok else 0)) & ((1 << self.window) - 1)
        if self.n < self.window:
            self.n += 1

    def check(self, now: float, detect: float) -> bool:
        """Declare the path down if nothing was answered for ``detect`` while at least two probes
        went out in that time. True if the state changed."""
        if self.state == DOWN or self.first_tx is None:
            return False
        since = self.last_answer if self.last_answer is not None else self.first_tx
        since = max(since, self.watch_from)
        if now - since >= detect and self.unanswered >= 2:
            return self._set(DOWN, now)
        return False

    def _set(self, state: str, now: float) -> bool:
        if state == self.state:
            return False
        self.state = state
        self.changes += 1
        if state == UP:
            if self.down_since is not None:
                # Back from down: the outage's losses are history, and so is the RTT of the first answer
                # after it (queued probes, a neighbour resolved again): start from the latest sample.
                self.outcomes = self.n = 0
                self.srtt, self.rttvar, self.jitter = self.last_rtt, (self.last_rtt or 0.0) / 2, 0.0
            self.up_since = now
            self.down_since = None
        else:
            self.up_since = None
            self.down_since = now
            self.streak = 0
        return True

    # -- answers --------------------------------------------------------------
    @property
    def samples(self) -> int:
        return self.n

    @property
    def loss(self) -> float:
        n = self.samples
        if n == 0:
            return 0.0
        return 1.0 - bin(self.outcomes & ((1 << n) - 1)).count("1") / n

    def timeout(self) -> float:
        return max(1.0, 3.0 * (self.srtt or 0.0))

    def score(self, loss_penalty: float = 1.0) -> float:
        """Lower is better: RTT plus twice the jitter, plus ``loss_penalty`` seconds per unit of loss."""
        if self.srtt is None:
            return 10.0
        return self.srtt + 2.0 * self.jitter + loss_penalty * self.loss

    def info(self, now: float) -> dict:
        def ms(v):
            return None if v is None else round(v * 1000.0, 3)

        return {
            "state": self.state,
            "rtt_ms": ms(self.srtt),
            "min_rtt_ms": ms(self.min_rtt),
            "jitter_ms": ms(self.jitter) if self.srtt is not None else None,
            "loss": round(self.loss, 4),
            "probes": self.sent,
            "answered": self.answered,
            "lost": self.lost,
            "up_for": None if self.up_since is None else round(now - self.up_since, 3),
            "down_for": None if self.down_since is None else round(now - self.down_since, 3),
            "last_answer_age": None if self.last_answer is None else round(now - self.last_answer, 3),
        }
