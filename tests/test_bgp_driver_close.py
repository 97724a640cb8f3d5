"""The asyncio BGP driver when the peer's NOTIFICATION and the end of its connection arrive before we read them.

A peer that shuts a session down (FRR's ``neighbor shutdown``) sends a NOTIFICATION (Cease,
Administrative Shutdown) and closes the connection. If our side writes before it has read them
(a KEEPALIVE or UPDATE due at that moment on a busy machine), the write fails: the peer reset the
connection (it closed with our earlier bytes unread), or it closed and reset the segment we sent
(the second write then fails). asyncio then drops the transport without reading the socket again,
though the kernel still holds the NOTIFICATION (uvloop's transports do the same). The operator must
still see the session end by a NOTIFICATION (counted, in last_error) and the peer's routes withdrawn,
not kept as stale as after a crash (RFC 4724 4.2). Loopback TCP, no root needed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

import pytest

from weftnet.core.bgp import IPV4_UNICAST
from weftnet.core.bgp import errors as E
from weftnet.core.bgp.attributes import AsPath, Attributes, NextHop, Origin
from weftnet.core.bgp.capability import GracefulRestart
from weftnet.core.bgp.message import KEEPALIVE_BYTES, MessageFramer, Notification, Open
from weftnet.core.bgp.nlri import Prefix
from weftnet.core.bgp.session import PeerConfig
from weftnet.core.bgp.update import Update
from weftnet.runtime.bgp import BgpService
from weftnet.runtime.bgpconfig import BgpSettings
from weftnet.runtime.evloop import loop_factory, run

ip = ipaddress.ip_address


async def _until(pred, what: str, steps: int = 400) -> None:
    for _ in range(steps):  # a generous deadline, not a timing assertion
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def _established_peer(svc: BgpService) -> socket.socket:
    """A hand-written peer (AS 65001, iBGP, graceful restart) connected to ``svc`` with one route sent."""
    loop = asyncio.get_running_loop()
    peer = socket.socket()
    peer.setblocking(False)
    await loop.sock_connect(peer, ("127.0.0.1", svc.port))
    gr = GracefulRestart(120, families=((IPV4_UNICAST, True),))  # so a silent end would keep its routes
    upd = Update(attributes=Attributes([Origin(0), AsPath.sequence(), NextHop(ip("127.0.0.1"))]),
                 nlri=(Prefix.parse("192.0.2.0/24"),))
    await loop.sock_sendall(peer, Open(65001, 9, ip("10.0.0.2"), (gr,)).encode() + KEEPALIVE_BYTES + upd.encode())
    framer, types = MessageFramer(), []
    while 4 not in types:  # its OPEN, then its KEEPALIVE
        data = await asyncio.wait_for(loop.sock_recv(peer, 4096), 10)
        assert data, "the daemon closed the connection"
        types += [t for t, _ in framer.feed(data)]
    await _until(lambda: svc.speaker.rib.count(IPV4_UNICAST) == 1, "the peer's route")
    return peer


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the daemon runs on uvloop where it is installed
@pytest.mark.parametrize("how", ["reset", "close"])
def test_a_notification_followed_by_the_end_of_the_connection_is_read_even_if_a_write_fails_first(how, loop):
    if loop_factory("auto")[0] != loop and loop != "asyncio":
        pytest.skip("uvloop is not installed")

    async def main():
        settings = BgpSettings(65001, ip("10.0.0.1"), listen="127.0.0.1", port=0, families=(IPV4_UNICAST,),
                               hold_time=9)
        settings.peers.append(PeerConfig("127.0.0.1", 65001, 179, (IPV4_UNICAST,), 9, passive=True))
        svc = BgpService(settings, asyncio.get_running_loop())
        await svc.start()
        try:
            peer = await _established_peer(svc)
            assert svc.summary()["peers"][0]["state"] == "Established"
            # From here to the end of this block nothing yields to the event loop: the daemon cannot read.
            peer.setblocking(True)
            peer.sendall(Notification(E.CEASE, E.ADMIN_SHUTDOWN).encode())
            if how == "reset":  # as a peer closes that has bytes of ours unread
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
            for i in range(2):  # two UPDATEs due before the daemon gets to read: after a FIN the second write fails
                svc.speaker.originate(Prefix.parse(f"203.0.113.{i * 128}/25"), next_hop=ip("127.0.0.1"),
                                      now=svc.now())
                svc.transmit()
            await _until(lambda: svc.summary()["peers"][0]["state"] != "Established", "the session to end")
            await asyncio.sleep(0.1)
            p = svc.summary()["peers"][0]
            assert p["notifications_in"] == 1, p
            assert p["last_error"] == "received NOTIFICATION Cease / Administrative Shutdown", p
            assert p["stale"] == 0 and svc.speaker.rib.count(IPV4_UNICAST) == 2  # its route is gone, our two stay
        finally:
            await svc.close()

    run(main(), loop)
