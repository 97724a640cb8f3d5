"""The BGP finite state machine of RFC 4271 section 8, as a table.

Theory of operation
-------------------
:data:`TRANSITIONS` maps every ``(State, Event)`` pair to the next state and
the actions to take, in order. The session (``session.py``) turns inputs into
events (a message arrives, a timer expires, TCP comes or goes), looks the pair
up and performs the actions; it never decides a transition itself. The table
is written out from section 8.2.2 for the events that section names per
state, and filled in for the rest with the section's own default for that
state ("in response to any other event"), so every pair has exactly one
entry; ``docs/bgp.md`` shows the table and a test walks every pair.

Events are numbered as in section 8.1. Optional attributes this speaker does
not implement (DelayOpen, damping of peer oscillations beyond the idle-hold
backoff, BGP-level collision on events 13/14) have no events here. Three
deliberate simplifications, all listed in docs/bgp.md: a NOTIFICATION received
in OpenSent is not answered with another one; an UPDATE/KEEPALIVE received in
Connect/Active (impossible without a TCP connection) goes to Idle; automatic
restart after an error is the IdleHoldTimer (8.1.1) firing AutomaticStart.
"""

from __future__ import annotations

import enum

__all__ = ["State", "Event", "TRANSITIONS", "transition"]


class State(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPENSENT = "OpenSent"
    OPENCONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class Event(enum.IntEnum):
    MANUAL_START = 1
    MANUAL_STOP = 2
    AUTOMATIC_START = 3
    MANUAL_START_PASSIVE = 4
    AUTOMATIC_START_PASSIVE = 5
    CONNECT_RETRY_EXPIRES = 9
    HOLD_EXPIRES = 10
    KEEPALIVE_EXPIRES = 11
    TCP_CR_ACKED = 16  # our outbound connection succeeded
    TCP_CONFIRMED = 17  # an inbound connection for this peer was accepted
    TCP_FAILS = 18
    BGP_OPEN = 19
    HEADER_ERR = 21
    OPEN_ERR = 22
    OPEN_COLLISION_DUMP = 23
    NOTIF_VER_ERR = 24
    NOTIF = 25
    KEEPALIVE = 26
    UPDATE = 27  # also ROUTE-REFRESH: any route message once Established
    UPDATE_ERR = 28


S, E = State, Event

# Actions (performed by PeerSession in this order):
#   connect              ask the driver for an outbound TCP connection
#   arm_retry / stop_retry   ConnectRetryTimer (with backoff)
#   bump                 ConnectRetryCounter += 1 (grows the backoff)
#   reset_counter        ConnectRetryCounter = 0
#   send_open / send_keepalive
#   hold_large           HoldTimer = 4 minutes (8.2.2, OpenSent)
#   arm_hold / arm_keepalive   negotiated HoldTimer / KeepaliveTimer
#   notify               send the NOTIFICATION the failed input carries
#   fsm_error            send NOTIFICATION FSM Error (RFC 6608 subcode by state)
#   cease                send NOTIFICATION Cease (admin shutdown, or collision resolution for event 23)
#   hold_expired         send NOTIFICATION Hold Timer Expired
#   drop                 close the TCP connection
#   release              release BGP resources (routes of the peer: stale under graceful restart)
#   idle_hold            arm the IdleHoldTimer that fires AutomaticStart (unless stopped by hand)
#   established          the session is up: send the table
#   process              hand the UPDATE / ROUTE-REFRESH to the speaker
_FAIL = ("drop", "release", "bump", "idle_hold")

_EXPLICIT: dict[tuple[State, Event], tuple[State, tuple[str, ...]]] = {
    # Idle (8.2.2): only a start does anything; an inbound connection is refused.
    (S.IDLE, E.MANUAL_START): (S.CONNECT, ("reset_counter", "arm_retry", "connect")),
    (S.IDLE, E.AUTOMATIC_START): (S.CONNECT, ("arm_retry", "connect")),
    (S.IDLE, E.MANUAL_START_PASSIVE): (S.ACTIVE, ("reset_counter", "arm_retry")),
    (S.IDLE, E.AUTOMATIC_START_PASSIVE): (S.ACTIVE, ("arm_retry",)),
    (S.IDLE, E.TCP_CONFIRMED): (S.IDLE, ("drop",)),
    (S.IDLE, E.TCP_CR_ACKED): (S.IDLE, ("drop",)),
    # Connect
    (S.CONNECT, E.MANUAL_STOP): (S.IDLE, ("drop", "release", "stop_retry", "reset_counter")),
    (S.CONNECT, E.CONNECT_RETRY_EXPIRES): (S.CONNECT, ("drop", "arm_retry", "connect")),
    (S.CONNECT, E.TCP_CR_ACKED): (S.OPENSENT, ("stop_retry", "send_open", "hold_large")),
    (S.CONNECT, E.TCP_CONFIRMED): (S.OPENSENT, ("stop_retry", "send_open", "hold_large")),
    (S.CONNECT, E.TCP_FAILS): (S.ACTIVE, ("drop", "bump", "arm_retry")),
    (S.CONNECT, E.NOTIF_VER_ERR): (S.IDLE, ("stop_retry", "drop", "release", "idle_hold")),
    # Active
    (S.ACTIVE, E.MANUAL_STOP): (S.IDLE, ("drop", "release", "stop_retry", "reset_counter")),
    (S.ACTIVE, E.CONNECT_RETRY_EXPIRES): (S.CONNECT, ("arm_retry", "connect")),
    (S.ACTIVE, E.TCP_CR_ACKED): (S.OPENSENT, ("stop_retry", "send_open", "hold_large")),
    (S.ACTIVE, E.TCP_CONFIRMED): (S.OPENSENT, ("stop_retry", "send_open", "hold_large")),
    (S.ACTIVE, E.TCP_FAILS): (S.IDLE, ("stop_retry",) + _FAIL),
    (S.ACTIVE, E.NOTIF_VER_ERR): (S.IDLE, ("stop_retry", "drop", "release", "idle_hold")),
    # OpenSent
    (S.OPENSENT, E.MANUAL_STOP): (S.IDLE, ("cease", "drop", "release", "stop_retry", "reset_counter")),
    (S.OPENSENT, E.HOLD_EXPIRES): (S.IDLE, ("hold_expired",) + _FAIL),
    (S.OPENSENT, E.TCP_FAILS): (S.ACTIVE, ("drop", "arm_retry")),
    (S.OPENSENT, E.BGP_OPEN): (S.OPENCONFIRM, ("stop_retry", "send_keepalive", "arm_keepalive", "arm_hold")),
    (S.OPENSENT, E.HEADER_ERR): (S.IDLE, ("notify",) + _FAIL),
    (S.OPENSENT, E.OPEN_ERR): (S.IDLE, ("notify",) + _FAIL),
    (S.OPENSENT, E.OPEN_COLLISION_DUMP): (S.IDLE, ("cease",) + _FAIL),
    (S.OPENSENT, E.NOTIF_VER_ERR): (S.IDLE, ("drop", "release", "idle_hold")),
    (S.OPENSENT, E.NOTIF): (S.IDLE, _FAIL),
    # OpenConfirm
    (S.OPENCONFIRM, E.MANUAL_STOP): (S.IDLE, ("cease", "drop", "release", "stop_retry", "reset_counter")),
    (S.OPENCONFIRM, E.HOLD_EXPIRES): (S.IDLE, ("hold_expired",) + _FAIL),
    (S.OPENCONFIRM, E.KEEPALIVE_EXPIRES): (S.OPENCONFIRM, ("send_keepalive", "arm_keepalive")),
    (S.OPENCONFIRM, E.TCP_FAILS): (S.IDLE, _FAIL),
    (S.OPENCONFIRM, E.NOTIF_VER_ERR): (S.IDLE, ("drop", "release", "idle_hold")),
    (S.OPENCONFIRM, E.NOTIF): (S.IDLE, _FAIL),
    (S.OPENCONFIRM, E.HEADER_ERR): (S.IDLE, ("notify",) + _FAIL),
    (S.OPENCONFIRM, E.OPEN_ERR): (S.IDLE, ("notify",) + _FAIL),
    (S.OPENCONFIRM, E.OPEN_COLLISION_DUMP): (S.IDLE, ("cease",) + _FAIL),
    (S.OPENCONFIRM, E.KEEPALIVE): (S.ESTABLISHED, ("arm_hold", "reset_counter", "established")),
    # Established
    (S.ESTABLISHED, E.MANUAL_STOP): (S.IDLE, ("cease", "drop", "release", "stop_retry", "reset_counter")),
    (S.ESTABLISHED, E.HOLD_EXPIRES): (S.IDLE, ("hold_expired",) + _FAIL),
    (S.ESTABLISHED, E.KEEPALIVE_EXPIRES): (S.ESTABLISHED, ("send_keepalive", "arm_keepalive")),
    (S.ESTABLISHED, E.TCP_FAILS): (S.IDLE, _FAIL),
    (S.ESTABLISHED, E.NOTIF_VER_ERR): (S.IDLE, _FAIL),
    (S.ESTABLISHED, E.NOTIF): (S.IDLE, _FAIL),
    (S.ESTABLISHED, E.KEEPALIVE): (S.ESTABLISHED, ("arm_hold",)),
    (S.ESTABLISHED, E.UPDATE): (S.ESTABLISHED, ("arm_hold", "process")),
    (S.ESTABLISHED, E.UPDATE_ERR): (S.IDLE, ("notify",) + _FAIL),
    (S.ESTABLISHED, E.HEADER_ERR): (S.IDLE, ("notify",) + _FAIL),
    (S.ESTABLISHED, E.OPEN_COLLISION_DUMP): (S.IDLE, ("cease",) + _FAIL),
}

# "In response to any other event" (8.2.2), per state.
_DEFAULT: dict[State, tuple[State | None, tuple[str, ...]]] = {
    S.IDLE: (None, ()),  # ignored: stay
    S.CONNECT: (S.IDLE, ("stop_retry",) + _FAIL),
    S.ACTIVE: (S.IDLE, ("stop_retry",) + _FAIL),
    S.OPENSENT: (S.IDLE, ("fsm_error",) + _FAIL),
    S.OPENCONFIRM: (S.IDLE, ("fsm_error",) + _FAIL),
    S.ESTABLISHED: (S.IDLE, ("fsm_error",) + _FAIL),
}
# Start events (1, 3-5) are ignored in every state but Idle (8.2.2, each state's first paragraph).
for _st in State:
    if _st != S.IDLE:
        for _ev in (E.MANUAL_START, E.AUTOMATIC_START, E.MANUAL_START_PASSIVE, E.AUTOMATIC_START_PASSIVE):
            _EXPLICIT[(_st, _ev)] = (_st, ())
# A header or OPEN error in Connect/Active cannot happen without a connection; treat it like the default,
# but say why on the wire when there is one.
for _st in (S.CONNECT, S.ACTIVE):
    for _ev in (E.HEADER_ERR, E.OPEN_ERR, E.UPDATE_ERR):
        _EXPLICIT[(_st, _ev)] = (S.IDLE, ("notify", "stop_retry") + _FAIL)


def _build() -> dict[tuple[State, Event], tuple[State, tuple[str, ...]]]:
    table = {}
    for st in State:
        for ev in Event:
            if (st, ev) in _EXPLICIT:
                table[(st, ev)] = _EXPLICIT[(st, ev)]
            else:
                nxt, actions = _DEFAULT[st]
                table[(st, ev)] = (nxt or st, actions)
    return table


TRANSITIONS = _build()


def transition(state: State, event: Event) -> tuple[State, tuple[str, ...]]:
    return TRANSITIONS[(state, event)]


def markdown_table() -> str:
    """The table as docs/bgp.md shows it (a test keeps the page and this function in step)."""
    lines = ["| state | event | next state | actions |", "|---|---|---|---|"]
    for st in State:
        for ev in Event:
            nxt, actions = TRANSITIONS[(st, ev)]
            if nxt == st and not actions:
                continue  # ignored
            lines.append(f"| {st.value} | {ev.value} {ev.name} | {nxt.value} | {', '.join(actions) or '-'} |")
    return "\n".join(lines)
