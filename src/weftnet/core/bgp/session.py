"""One BGP session with one peer: the FSM (``fsm.py``) driven by bytes, TCP events and timer deadlines.

Theory of operation
-------------------
A :class:`PeerSession` owns at most one TCP connection, named by an opaque
``conn`` id the driver chose. Inputs: :meth:`start` / :meth:`stop`,
:meth:`connection_made`, :meth:`connection_lost`, :meth:`data_received` and
:meth:`handle_timer`, each with ``now``. Each input becomes one or more FSM
events; the table in ``fsm.py`` says which actions follow. Outputs are
pulled by the owner (the :class:`~weftnet.core.bgp.speaker.Speaker`) through
:attr:`actions` (``Connect``, ``Send``, ``Close``) and the timer deadline from
:meth:`get_timer`; route work goes to the owner through the small
:class:`SessionOwner` interface. There are four timers, all absolute
deadlines: ConnectRetry (with exponential backoff and jitter from the
injected ``rng``), Hold, Keepalive and IdleHold (automatic restart).

Every malformed input (bad header, OPEN, UPDATE, an unexpected message) is a
:class:`~weftnet.core.bgp.errors.Notify` from the codec or an FSM error from
the table; either way a NOTIFICATION with the right code and subcode is sent
before the connection is dropped. Nothing raises out of this class.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from weftnet.core.bgp import errors as E
from weftnet.core.bgp.capability import (
    FourOctetAs, GracefulRestart, Multiprotocol, RouteRefreshCapability, EnhancedRouteRefresh,
)
from weftnet.core.bgp.errors import Notify
from weftnet.core.bgp.family import IPV4_UNICAST, Family
from weftnet.core.bgp.fsm import Event, State, transition
from weftnet.core.bgp.message import (
    KEEPALIVE, KEEPALIVE_BYTES, NOTIFICATION, OPEN, ROUTE_REFRESH, UPDATE, MessageFramer, Notification, Open,
    RouteRefresh,
)
from weftnet.core.bgp.update import ParsedUpdate, UpdateContext, parse_update

__all__ = ["PeerConfig", "PeerSession", "Connect", "Send", "Close", "SessionOwner", "Negotiated"]

HOLD_LARGE = 240.0  # 8.2.2: the HoldTimer in OpenSent


@dataclass(frozen=True)
class PeerConfig:
    """One configured neighbour."""

    address: str  # IP address (or host name) to connect to and to recognise inbound connections by
    remote_as: int
    port: int = 179
    families: tuple[Family, ...] = (IPV4_UNICAST,)
    hold_time: int = 90
    passive: bool = False
    route_reflector_client: bool = False
    next_hop_self: bool = False
    max_prefixes: int = 100_000  # per-peer quota on the Adj-RIB-In (RFC 4486 Cease 1 beyond it)
    connect_retry: float = 2.0  # first backoff; doubles per failure up to connect_retry_max
    connect_retry_max: float = 60.0
    name: str = ""

    @property
    def key(self) -> str:
        return self.name or self.address


@dataclass(frozen=True)
class Connect:
    peer: str
    host: str
    port: int


@dataclass(frozen=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True)
class Close:
    conn: int


@dataclass
class Negotiated:
    """What both OPENs agreed on."""

    peer_as: int
    peer_id: ipaddress.IPv4Address
    hold_time: int
    asn4: bool
    families: frozenset[Family]
    route_refresh: bool
    graceful_restart: GracefulRestart | None
    peer_open: Open

    @property
    def keepalive(self) -> float:
        return self.hold_time / 3


class SessionOwner(Protocol):
    def session_established(self, s: "PeerSession", now: float) -> None: ...
    def session_update(self, s: "PeerSession", upd: ParsedUpdate, now: float) -> None: ...
    def session_refresh(self, s: "PeerSession", family: Family, now: float) -> None: ...
    def session_released(self, s: "PeerSession", graceful: bool, now: float) -> None: ...
    def session_open_received(self, s: "PeerSession", now: float) -> None: ...


class PeerSession:
    def __init__(self, cfg: PeerConfig, local_as: int, router_id: ipaddress.IPv4Address, owner: SessionOwner,
                 rng: Any, *, graceful_restart_time: int = 120, local_families: tuple[Family, ...] | None = None):
        self.cfg = cfg
        self.local_as = local_as
        self.router_id = router_id
        self.owner = owner
        self.rng = rng
        self.gr_time = graceful_restart_time
        self.families = tuple(local_families or cfg.families)
        self.state = self._from = State.IDLE
        self.conn: int | None = None
        self.outbound = False  # who opened the current connection
        self.local_address: str | None = None
        self.remote_address: str | None = None
        self.neg: Negotiated | None = None
        self.actions: deque = deque()
        self.retry_counter = 0
        self.retry_at: float | None = None
        self.hold_at: float | None = None
        self.keepalive_at: float | None = None
        self.idle_hold_at: float | None = None
        self.stopped = True  # ManualStop: no automatic restart
        self._framer = MessageFramer()
        self._pending: Notify | None = None  # the NOTIFICATION the current error event carries
        self._got_notification = False
        self.last_error = ""
        self.established_at: float | None = None
        self.stats = {"messages_in": 0, "messages_out": 0, "updates_in": 0, "updates_out": 0,
                      "notifications_in": 0, "notifications_out": 0, "treat_as_withdraw": 0,
                      "attributes_discarded": 0, "transitions": 0, "established": 0}

    # -- inputs -----------------------------------------------------------------
    def start(self, now: float) -> None:
        self.stopped = False
        self._event(Event.MANUAL_START_PASSIVE if self.cfg.passive else Event.MANUAL_START, now)

    def stop(self, now: float, subcode: int = E.ADMIN_SHUTDOWN) -> None:
        self.stopped = True
        self.idle_hold_at = None  # no automatic restart after a stop by hand, whatever the state
        self._pending = Notify(E.CEASE, subcode)
        self._event(Event.MANUAL_STOP, now)

    def handle_idle_accept(self, now: float) -> None:
        """An inbound connection while waiting out the idle-hold backoff: restart now, passively."""
        if self.state == State.IDLE and not self.stopped:
            self.idle_hold_at = None
            self._event(Event.AUTOMATIC_START_PASSIVE, now)

    def connection_made(self, conn: int, outbound: bool, local: str, remote: str, now: float) -> None:
        self.conn, self.outbound, self.local_address, self.remote_address = conn, outbound, local, remote
        self._framer = MessageFramer()
        self._got_notification = False
        self._event(Event.TCP_CR_ACKED if outbound else Event.TCP_CONFIRMED, now)

    def connection_lost(self, now: float) -> None:
        self._event(Event.TCP_FAILS, now)

    def connect_failed(self, now: float) -> None:
        if self.state in (State.CONNECT, State.ACTIVE) and self.conn is None:
            self._event(Event.TCP_FAILS, now)

    def data_received(self, data: bytes, now: float) -> None:
        if self.conn is None:
            return
        try:
            messages = self._framer.feed(data)
        except Notify as n:
            self._error(Event.HEADER_ERR, n, now)
            return
        for mtype, body in messages:
            if self.conn is None:  # an earlier message in this batch closed the connection
                return
            self.stats["messages_in"] += 1
            self._message(mtype, body, now)

    def handle_timer(self, now: float) -> None:
        for attr, ev in (("hold_at", Event.HOLD_EXPIRES), ("keepalive_at", Event.KEEPALIVE_EXPIRES),
                         ("retry_at", Event.CONNECT_RETRY_EXPIRES), ("idle_hold_at", None)):
            t = getattr(self, attr)
            if t is not None and t <= now:
                setattr(self, attr, None)
                if ev is None:
                    if not self.stopped and self.state == State.IDLE:
                        self._event(Event.AUTOMATIC_START_PASSIVE if self.cfg.passive else Event.AUTOMATIC_START, now)
                else:
                    if ev == Event.HOLD_EXPIRES:
                        self._pending = Notify(E.HOLD_EXPIRED, 0)
                    self._event(ev, now)

    def get_timer(self) -> float | None:
        ts = [t for t in (self.retry_at, self.hold_at, self.keepalive_at, self.idle_hold_at) if t is not None]
        return min(ts) if ts else None

    # -- outputs for the owner ---------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.conn is not None:
            self.actions.append(Send(self.conn, data))
            self.stats["messages_out"] += 1

    def send_update_bytes(self, data: bytes, count: int = 1) -> None:
        self.send(data)
        self.stats["updates_out"] += count
        self.stats["messages_out"] += count - 1

    def send_refresh(self, family: Family) -> bool:
        if self.state != State.ESTABLISHED or self.neg is None or not self.neg.route_refresh:
            return False
        self.send(RouteRefresh(family).encode())
        return True

    def reset(self, now: float, code: int, subcode: int, reason: str = "") -> None:
        """End the session with a NOTIFICATION (used by the owner, e.g. for a prefix limit)."""
        self._error(Event.UPDATE_ERR, Notify(code, subcode, reason=reason), now)

    def dump_collision(self, now: float) -> None:
        self._pending = Notify(E.CEASE, E.COLLISION_RESOLUTION)
        self._event(Event.OPEN_COLLISION_DUMP, now)

    @property
    def ctx(self) -> UpdateContext:
        n = self.neg
        assert n is not None
        return UpdateContext(n.asn4, n.peer_as != self.local_as, n.peer_as, n.families)

    @property
    def ibgp(self) -> bool:
        return self.cfg.remote_as == self.local_as

    # -- messages -------------------------------------------------------------------
    def _message(self, mtype: int, body: bytes, now: float) -> None:
        if mtype == OPEN:
            if self.state != State.OPENSENT:
                self._event(Event.BGP_OPEN, now)  # unexpected here: the table answers with an FSM error
                return
            try:
                op = Open.decode(body)
                self.neg = self._negotiate(op)
            except Notify as n:
                self._error(Event.OPEN_ERR, n, now)
                return
            except (ValueError, IndexError):
                self._error(Event.OPEN_ERR, Notify(E.OPEN, 0, reason="malformed OPEN"), now)
                return
            self._event(Event.BGP_OPEN, now)
            if self.state == State.OPENCONFIRM:
                self.owner.session_open_received(self, now)
        elif mtype == KEEPALIVE:
            self._event(Event.KEEPALIVE, now)
        elif mtype == NOTIFICATION:
            n = Notification.decode(body)
            self.stats["notifications_in"] += 1
            self._got_notification = True
            self.last_error = f"received NOTIFICATION {n}"
            self._event(Event.NOTIF_VER_ERR if (n.code, n.subcode) == (E.OPEN, E.UNSUPPORTED_VERSION) else Event.NOTIF, now)
        elif mtype == UPDATE:
            if self.state != State.ESTABLISHED:
                self._event(Event.UPDATE, now)
                return
            self.stats["updates_in"] += 1
            try:
                upd = parse_update(body, self.ctx)
            except Notify as n:
                self._error(Event.UPDATE_ERR, n, now)
                return
            if upd.treat_as_withdraw:
                self.stats["treat_as_withdraw"] += 1
                self.last_error = "treat-as-withdraw: " + "; ".join(upd.errors)
            self.stats["attributes_discarded"] += len(upd.discarded)
            self._event(Event.UPDATE, now)
            if self.state == State.ESTABLISHED:
                self.owner.session_update(self, upd, now)
        elif mtype == ROUTE_REFRESH:
            if self.state != State.ESTABLISHED:
                self._event(Event.UPDATE, now)
                return
            rr = RouteRefresh.decode(body)
            self._event(Event.UPDATE, now)
            if self.state == State.ESTABLISHED and self.neg and rr.family in self.neg.families and rr.subtype == 0:
                self.owner.session_refresh(self, rr.family, now)

    def _negotiate(self, op: Open) -> Negotiated:
        if op.asn != self.cfg.remote_as:
            field = op.my_as_field if op.my_as_field is not None else op.asn
            raise Notify(E.OPEN, E.BAD_PEER_AS, field.to_bytes(2, "big"),
                         reason=f"peer says AS {op.asn}, configured {self.cfg.remote_as}")
        if op.router_id == self.router_id and op.asn == self.local_as:  # RFC 6286 section 2.2
            raise Notify(E.OPEN, E.BAD_BGP_ID, op.router_id.packed, reason="peer uses our BGP identifier")
        hold = min(self.cfg.hold_time, op.hold_time)
        mp = {c.family for c in op.capability(Multiprotocol)}
        peer_fams = mp if mp else {IPV4_UNICAST}  # RFC 4760 section 8: no capability means IPv4 unicast
        gr = op.capability(GracefulRestart)
        return Negotiated(op.asn, op.router_id, hold, bool(op.capability(FourOctetAs)),
                          frozenset(peer_fams & set(self.families)),
                          bool(op.capability(RouteRefreshCapability) or op.capability(EnhancedRouteRefresh)),
                          gr[0] if gr else None, op)

    def open_message(self) -> Open:
        caps = [Multiprotocol(f) for f in self.families]
        caps += [RouteRefreshCapability(), FourOctetAs(self.local_as),
                 GracefulRestart(self.gr_time, notification=False)]  # receiver only: no families (RFC 4724 3)
        return Open(self.local_as, self.cfg.hold_time, self.router_id, tuple(caps))

    # -- the machine ------------------------------------------------------------------
    def _error(self, ev: Event, n: Notify, now: float) -> None:
        self._pending = n
        self.last_error = str(n)
        self._event(ev, now)

    def _event(self, ev: Event, now: float) -> None:
        old = self._from = self.state
        nxt, actions = transition(old, ev)
        self.state = nxt  # actions see the new state (the owner's callbacks do); fsm_error uses _from
        for a in actions:
            getattr(self, "_a_" + a)(now, ev)
        if nxt != old:
            self.stats["transitions"] += 1
        self._pending = None

    def _backoff(self) -> float:
        base = min(self.cfg.connect_retry_max, self.cfg.connect_retry * (2 ** min(self.retry_counter, 16)))
        return base * (0.75 + 0.25 * self.rng.random())

    def _a_connect(self, now: float, ev: Event) -> None:
        self.actions.append(Connect(self.cfg.key, self.cfg.address, self.cfg.port))

    def _a_arm_retry(self, now: float, ev: Event) -> None:
        self.retry_at = now + self._backoff()

    def _a_stop_retry(self, now: float, ev: Event) -> None:
        self.retry_at = None

    def _a_bump(self, now: float, ev: Event) -> None:
        self.retry_counter += 1

    def _a_reset_counter(self, now: float, ev: Event) -> None:
        self.retry_counter = 0

    def _a_send_open(self, now: float, ev: Event) -> None:
        self.send(self.open_message().encode())

    def _a_send_keepalive(self, now: float, ev: Event) -> None:
        self.send(KEEPALIVE_BYTES)

    def _a_hold_large(self, now: float, ev: Event) -> None:
        self.hold_at = now + HOLD_LARGE

    def _a_arm_hold(self, now: float, ev: Event) -> None:
        h = self.neg.hold_time if self.neg else self.cfg.hold_time
        self.hold_at = now + h if h else None

    def _a_arm_keepalive(self, now: float, ev: Event) -> None:
        h = self.neg.hold_time if self.neg else self.cfg.hold_time
        self.keepalive_at = now + h / 3 if h else None

    def _notify(self, n: Notify) -> None:
        self.send(Notification(n.code, n.subcode, n.data).encode())
        self.stats["notifications_out"] += 1

    def _a_notify(self, now: float, ev: Event) -> None:
        if self._pending is not None:
            self._notify(self._pending)

    def _a_fsm_error(self, now: float, ev: Event) -> None:
        sub = {State.OPENSENT: E.FSM_IN_OPENSENT, State.OPENCONFIRM: E.FSM_IN_OPENCONFIRM,
               State.ESTABLISHED: E.FSM_IN_ESTABLISHED}.get(self._from, 0)
        self.last_error = f"unexpected event {ev.name} in {self._from.value}"
        self._notify(Notify(E.FSM, sub))

    def _a_cease(self, now: float, ev: Event) -> None:
        self._notify(self._pending if self._pending is not None and self._pending.code == E.CEASE
                     else Notify(E.CEASE, E.ADMIN_SHUTDOWN))

    def _a_hold_expired(self, now: float, ev: Event) -> None:
        self.last_error = "hold timer expired"
        self._notify(Notify(E.HOLD_EXPIRED, 0))

    def _a_drop(self, now: float, ev: Event) -> None:
        if self.conn is not None:
            self.actions.append(Close(self.conn))
        self.conn = None
        self.hold_at = self.keepalive_at = None

    def _a_release(self, now: float, ev: Event) -> None:
        was_up = self.established_at is not None
        # RFC 4724 4.2: a connection that ends without a NOTIFICATION keeps the peer's routes, stale.
        graceful = (was_up and ev == Event.TCP_FAILS and not self._got_notification and self.neg is not None
                    and self.neg.graceful_restart is not None)
        self.established_at = None
        if was_up:
            self.owner.session_released(self, graceful, now)
        self.neg = None

    def _a_idle_hold(self, now: float, ev: Event) -> None:
        if not self.stopped:
            self.idle_hold_at = now + self._backoff()

    def _a_established(self, now: float, ev: Event) -> None:
        self.established_at = now
        self.stats["established"] += 1
        self.last_error = ""
        self.owner.session_established(self, now)

    def _a_process(self, now: float, ev: Event) -> None:
        pass  # the message handler gives the route work to the owner once the transition is done
