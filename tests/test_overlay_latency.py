"""A lone packet goes straight through the overlay interface's and the VRFs' TUN readers
(docs/overlay.md, "Data plane"; docs/dataplane.md, "Latency").

The overlay test runs the daemon's own callbacks (``OverlayInterface._on_readable``,
``UdpDriver._on_readable`` with the TUN drain) for two nodes whose overlay interfaces are up, over
real UDP sockets on loopback; the TUNs are stand-ins (one end of a SOCK_SEQPACKET pair, which
keeps packet boundaries as a TUN does). The order of the system calls is what is asserted: a
wake-up after a lone packet seals and sends its first packet before the read that finds the queue
empty; a burst still leaves as one batch, whole and in order. The VRF reader
(``L3vpnService._on_tun_readable``) is checked the same way against a recording core, and the
daemon's drain of the TUNs it wrote (``Daemon._drain_tuns``) with two PEs whose VRFs reach each
other: a VRF's reply leaves in the callback that wrote its request. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from test_dataplane_latency import _Calls, _daemon, _now_readable, _sim_cores, _Tun
from vpn_packets import icmp_echo

from weftnet.core.identity import Identity
from weftnet.core.l3vpn.ids import parse_rd
from weftnet.core.l3vpn.policy import VrfPolicy
from weftnet.core.l3vpn.vrf import LocalRoute, VrfConfig, vrf_key
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.network import VNET_NONE
from weftnet.runtime import evloop
from weftnet.runtime.config import DEFAULT_OVERLAY_FIREWALL, Config, OverlayConfig
from weftnet.runtime.l3vpn import L3vpnService
from weftnet.runtime.overlay import OverlayInterface


class _TunDev(_Tun):
    """The stand-in as OverlayInterface uses a TUN (``fd``, ``name``)."""

    @property
    def fd(self) -> int:
        return self.fileno()


def _echo(src: Identity, dst: Identity, seq: int, reply: bool = False) -> bytes:
    """An ICMPv6 echo as ping(8) sends it (56 bytes of data): it takes the overlay's path for a ping."""
    return icmp_echo(str(src.address), str(dst.address), ident=7, seq=seq, reply=reply, data=bytes(56))


def _overlay_nodes(tmp_path, socks):
    """Two nodes (the simulator's bootstrap node is the third) that know each other's overlay
    address, as daemons with their overlay interfaces on TUN stand-ins."""
    net, _rng, cores = _sim_cores(socks, 7, net_seed=3)
    for core in cores[1:]:
        core.connect(cores[0].endpoint, net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    a, b = cores[1], cores[2]
    for core in (a, b):  # the overlay's default firewall: ICMPv6 in, anything out
        core.overlay.enable(net.now, firewall=Firewall.from_config(DEFAULT_OVERLAY_FIREWALL), vnet=True)
    # The first ping is held while A looks B's address up; B learns A from it.
    a.overlay_outbound([VNET_NONE + _echo(a.identity, b.identity, 1)], net.now)
    net.flush(a.endpoint)
    net.run_for(3.0)
    b.overlay_outbound([VNET_NONE + _echo(b.identity, a.identity, 1, reply=True)], net.now)
    net.flush(b.endpoint)
    net.run_for(2.0)
    assert a.identity.address.packed[4:] in b.overlay.cache and b.identity.address.packed[4:] in a.overlay.cache
    assert a.overlay.data.totals.packets_in == 1 and b.overlay.data.totals.packets_in == 1
    for core in cores:
        core.tun_out.clear()
        while core.next_event() is not None:
            pass
    offset = net.now - time.time()  # the drivers' clock carries on from the simulator's
    daemons = []
    for i, core in enumerate((a, b), start=1):
        state = tmp_path / f"n{i}"
        d = _daemon(state, core, socks[i], offset)
        ov = d.overlay = OverlayInterface(core, d.driver, OverlayConfig(), state)
        ov.tun = _TunDev(f"weft-test{i}")
        daemons.append(d)
    return daemons


def test_a_lone_overlay_packet_is_sent_before_the_read_that_finds_the_queue_empty(tmp_path, monkeypatch):
    import socket

    import weftnet.runtime.overlay as omod
    import weftnet.runtime.tun as tunmod

    async def main():
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        daemons = []
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            daemons = _overlay_nodes(tmp_path, socks)
            a, b = daemons
            ia, ib = a.driver.core.identity, b.driver.core.identity
            calls = _Calls(monkeypatch, daemons, (omod, tunmod))
            tun_a, tun_b = a.overlay.tun, b.overlay.tun
            for seq in range(2, 5):
                calls.log.clear()
                tun_a.kernel.send(VNET_NONE + _echo(ia, ib, seq))
                a.overlay._on_readable()
                assert calls.log == ["read", "sendto", "poll:empty"]
                calls.log.clear()
                tun_b.kernel.send(VNET_NONE + _echo(ib, ia, seq, reply=True))  # what B's host will answer
                b.driver._on_readable()
                # B: open and write the ping, read and send the reply its host queued, then look for more.
                assert calls.log == ["recv", "writev", "read", "sendto", "poll:empty", "poll:empty"]
                assert tun_b.kernel.recv(65_535) == VNET_NONE + _echo(ia, ib, seq)
                calls.log.clear()
                a.driver._on_readable()
                assert calls.log[:2] == ["recv", "writev"] and calls.log[-1] == "poll:empty"
                assert tun_a.kernel.recv(65_535) == VNET_NONE + _echo(ib, ia, seq, reply=True)
                assert not _now_readable(tun_a.kernel) and not _now_readable(tun_b.kernel)
            # A burst after lone packets: the first leaves alone, the rest in one batch, all in order;
            # after a wake-up that found several, the next reads its whole batch before sending.
            for rounds in range(2):
                calls.log.clear()
                for seq in range(10, 13):
                    tun_a.kernel.send(VNET_NONE + _echo(ia, ib, seq))
                a.overlay._on_readable()
                if rounds == 0:
                    assert calls.log == ["read", "sendto", "poll", "read", "read", "read:empty", "sendmsg"]
                else:
                    assert calls.log == ["read", "read", "read", "read:empty", "sendmsg"]
                b.driver._on_readable()
                assert [tun_b.kernel.recv(65_535) for _ in range(3)] == \
                    [VNET_NONE + _echo(ia, ib, seq) for seq in range(10, 13)]
                assert not _now_readable(tun_b.kernel)
            assert a.overlay.write_errors == b.overlay.write_errors == 0
            assert a.driver.core.overlay.data.drops == {} and b.driver.core.overlay.data.drops == {}
        finally:
            for d in daemons:
                d.overlay.tun.close()
                d.driver.close()
            for s in socks:
                s.close()

    evloop.run(main(), "auto")


class _RecordingCore:
    """Stands in for NodeCore at the VRF reader: notes each batch of packets handed to the plane."""

    def __init__(self, log):
        self.l3vpn = None
        self.log = log
        self.batches: list = []

    def l3vpn_outbound(self, key, packets, now):
        self.log.append(f"outbound:{len(packets)}")
        self.batches.append((key, list(packets)))


class _RecordingDriver:
    def __init__(self, log):
        self.log = log

    def transmit(self):
        self.log.append("transmit")


def test_a_lone_vrf_packet_is_handed_on_before_the_read_that_finds_the_queue_empty(monkeypatch):
    import weftnet.runtime.tun as tunmod

    async def main():
        log: list[str] = []
        core, driver = _RecordingCore(log), _RecordingDriver(log)
        svc = L3vpnService(core, driver, Config(), {}, asyncio.get_running_loop())
        calls = _Calls(monkeypatch, (), (tunmod,))
        calls.log = log
        tuns = {b"vrf-red": _Tun("wv-red"), b"vrf-blue": _Tun("wv-blue")}
        try:
            red, blue = tuns[b"vrf-red"], tuns[b"vrf-blue"]
            pkts = [icmp_echo("10.2.0.1", "10.3.0.1", ident=3, seq=s) for s in range(6)]
            for p in pkts[:2]:  # lone packets: each handed on and sent, then a poll finds nothing more
                log.clear()
                red.kernel.send(p)
                svc._on_tun_readable(b"vrf-red", red)
                assert log == ["read", "outbound:1", "transmit", "poll:empty"]
            log.clear()
            for p in pkts[2:5]:  # a burst: the first alone, the rest as one batch, in order
                red.kernel.send(p)
            svc._on_tun_readable(b"vrf-red", red)
            assert log == ["read", "outbound:1", "transmit", "poll", "read", "read", "read:empty", "outbound:2",
                           "transmit"]
            log.clear()
            for p in pkts[:3]:  # after a burst: the whole batch is read before anything is handed on
                red.kernel.send(p)
            svc._on_tun_readable(b"vrf-red", red)
            assert log == ["read", "read", "read", "read:empty", "outbound:3", "transmit"]
            log.clear()
            blue.kernel.send(pkts[5])  # each VRF's TUN keeps its own state: blue had no burst
            svc._on_tun_readable(b"vrf-blue", blue)
            assert log == ["read", "outbound:1", "transmit", "poll:empty"]
            log.clear()
            svc._on_tun_readable(b"vrf-red", red)  # a wake-up with nothing to read hands nothing on
            assert log == ["read:empty"]
            sent = [p for key, batch in core.batches if key == b"vrf-red" for p in batch]
            assert sent == pkts[:2] + pkts[2:5] + pkts[:3]
        finally:
            for t in tuns.values():
                t.close()

    evloop.run(main(), "auto")


def _pe_daemons(tmp_path, socks, loop):
    """Two PEs (the simulator's sessions, then daemons on ``socks``) with a VRF "red" each: site 1
    (10.0.0.0/25) behind A, site 2 (10.0.0.192/26) behind B, the VPN routes exchanged; each VRF's
    TUN a stand-in in the daemon's TUN table, read by an L3vpnService as the daemon runs one."""
    net, _rng, pes = _sim_cores(socks, 11)
    pes[1].connect(pes[0].endpoint, net.now)
    net.flush(pes[1].endpoint)
    net.run_for(5.0)
    nh = ["192.0.2.1", "192.0.2.2"]
    policy = VrfPolicy.from_config(["65000:100"], ["65000:100"])
    for i, (core, site) in enumerate(zip(pes, ("10.0.0.0/25", "10.0.0.192/26"))):
        core.l3vpn.nexthop = nh[i]
        core.l3vpn.set_pes({nh[1 - i]: pes[1 - i].node_id})
        core.l3vpn.add_vrf(VrfConfig("red", parse_rd(f"65000:{i + 1}"), policy))
        core.l3vpn.set_local_route("red", LocalRoute(ipaddress.ip_network(site), "static", f"192.168.{i + 1}.2"))
    for i, core in enumerate(pes):  # what the PEs' BGP speakers do
        changes = core.l3vpn.export_changes()
        pes[1 - i].l3vpn.update_vpn([r for r in changes.values() if r is not None],
                                    [k for k, r in changes.items() if r is None])
    for core in pes:
        while core.next_event() is not None:
            pass
    offset = net.now - time.time()
    daemons = []
    for i, core in enumerate(pes):
        d = _daemon(tmp_path / f"pe{i}", core, socks[i], offset)
        d._tuns[vrf_key("red")] = _Tun(f"wv-pe{i}")
        d.l3vpn = L3vpnService(core, d.driver, Config(), d._tuns, loop)
        daemons.append(d)
    return daemons


def test_a_vrf_reply_leaves_in_the_callback_that_wrote_its_request(tmp_path, monkeypatch):
    """B's daemon opens a datagram for its VRF, writes the packet to the VRF's TUN, and reads and
    sends the answer the namespace queued there by then before going back to the loop (as for a
    private network's TUN): the reply does not wait for a wake-up of the VRF's reader."""
    import weftnet.runtime.tun as tunmod

    key = vrf_key("red")

    async def main():
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        daemons = []
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            daemons = _pe_daemons(tmp_path, socks, asyncio.get_running_loop())
            a, b = daemons
            calls = _Calls(monkeypatch, daemons)
            tun_a, tun_b = a._tuns[key], b._tuns[key]
            for seq in range(1, 4):
                ping = icmp_echo("10.0.0.10", "10.0.0.200", ident=5, seq=seq)
                reply = icmp_echo("10.0.0.200", "10.0.0.10", ident=5, seq=seq, reply=True)
                calls.log.clear()
                tun_a.kernel.send(VNET_NONE + ping)
                a.l3vpn._on_tun_readable(key, tun_a)
                assert calls.log == ["read", "sendto", "poll:empty"]
                calls.log.clear()
                tun_b.kernel.send(VNET_NONE + reply)  # what site 2 will answer
                b.driver._on_readable()
                # B: open and write the ping, read and send the reply the VRF queued, then look for more.
                assert calls.log == ["recv", "writev", "read", "sendto", "poll:empty", "poll:empty"]
                assert tun_b.kernel.recv(65_535) == VNET_NONE + ping
                calls.log.clear()
                a.driver._on_readable()
                assert calls.log[:2] == ["recv", "writev"] and calls.log[-1] == "poll:empty"
                assert tun_a.kernel.recv(65_535) == VNET_NONE + reply
                assert not _now_readable(tun_a.kernel) and not _now_readable(tun_b.kernel)
            for d in daemons:
                assert d.driver.core.l3vpn.vrfs["red"].counters.drops == {}
                assert d.tun_write_errors == 0
            # A TUN the daemon wrote that is neither a network's nor a VRF's is not read.
            other = _Tun("wv-other")
            b._tuns[b"vrf:gone"] = other
            other.kernel.send(VNET_NONE + reply)
            calls.log.clear()
            b.driver.core.tun_out.append((b"vrf:gone", b"", ping))
            b.driver.transmit()
            # Written, and the reply queued on it left unread.
            assert calls.log == ["writev"] and _now_readable(other.kernel) and _now_readable(other._end)
        finally:
            for d in daemons:
                for t in d._tuns.values():
                    t.close()
                d.driver.close()
            for s in socks:
                s.close()

    evloop.run(main(), "auto")
