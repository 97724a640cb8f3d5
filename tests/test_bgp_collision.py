"""A connection collision (RFC 4271 6.8) whose losing connection the peer closes without a NOTIFICATION. Sans-IO.

Both ends connect at once (FRR retries every second, so do we): one connection reaches its session
first, the other arrives while that session is in OpenSent and gets a second session. The peer
may then close one of them without a NOTIFICATION (FRR 8.4 resets it). That second session,
back in Active with no connection (RFC 4271 8.2.2), must not live on next to the established one:
it would open a connection to the peer every retry interval for the life of the session, and when
the established session ended it would be kept as the peer's session instead of it, so the
summary and the metrics would show its zero counters, not the NOTIFICATION the peer sent.
"""

from __future__ import annotations

import ipaddress
import random

from weftnet.core.bgp import Speaker, SpeakerConfig
from weftnet.core.bgp import errors as E
from weftnet.core.bgp.message import KEEPALIVE_BYTES, Notification, Open
from weftnet.core.bgp.session import Connect, PeerConfig

ip = ipaddress.ip_address
PEER = "10.0.0.1"


def test_a_collision_connection_the_peer_drops_leaves_no_session_behind():
    sp = Speaker(SpeakerConfig(65000, ip("10.0.0.2")), random.Random(1), 0.0)
    sp.add_peer(PeerConfig(PEER, 65000, hold_time=9, connect_retry=1), 0.0)
    sp.start(0.0)
    assert [type(a) for a in sp.actions()] == [Connect]
    # As captured with FRR 8.4 at a daemon's start: FRR's connection is accepted first (our session
    # sends its OPEN on it), then our own connect completes and gets a second session, which sends its
    # OPEN too; FRR resets that connection without a NOTIFICATION and goes on with its own.
    assert sp.connection_accepted(1, "10.0.0.2", PEER, 0.1)
    sp.connection_made(PEER, 2, "10.0.0.2", PEER, 0.1)
    sp.actions()
    assert len(sp.peers[PEER].sessions) == 2
    sp.connection_lost(2, 0.11)
    sp.data_received(1, Open(65000, 9, ip(PEER)).encode() + KEEPALIVE_BYTES, 0.12)
    sp.actions()
    assert sp.summary(0.3)["peers"][0]["state"] == "Established"

    opened, now = 0, 0.3
    while now < 30:  # half a minute of a healthy session (the peer's KEEPALIVEs keep it up)
        now = min(sp.get_timer() or now + 1, now + 1)
        sp.handle_timer(now)
        sp.data_received(1, KEEPALIVE_BYTES, now)
        opened += sum(isinstance(a, Connect) for a in sp.actions())
    assert opened == 0  # no connection attempts to a peer we are established with
    assert len(sp.peers[PEER].sessions) == 1

    sp.data_received(1, Notification(E.CEASE, E.ADMIN_SHUTDOWN).encode(), now)
    sp.actions()
    p = sp.summary(now)["peers"][0]
    assert p["state"] != "Established"
    assert p["notifications_in"] == 1 and p["established"] == 1, p
    assert p["last_error"] == "received NOTIFICATION Cease / Administrative Shutdown"
