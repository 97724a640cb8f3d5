"""A lone packet goes straight through the daemon (docs/dataplane.md, "Latency").

The daemon's own callbacks (``Daemon._on_tun_readable``, ``UdpDriver._on_readable`` with the
TUN drain) carry a ping between two members of a private network over real UDP sockets on
loopback. The TUNs are stand-ins (one end of a SOCK_SEQPACKET pair, which keeps packet
boundaries as a TUN does). Each step is one callback called once, and what it must have sent is
already waiting in the receiving socket when it returns: no batching timer, no queue between
reader and writer, no later loop turn holds a lone packet. The same holds on asyncio's loop and
on uvloop (runtime/evloop.py). No timing is asserted, only where each packet is when the callback
returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import socket
import struct
import threading
import time

import pytest
from vpn_packets import icmp_echo as _icmp_echo

from weftnet.core.identity import Identity
from weftnet.core.node import NodeCore
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.netcert import NetworkAuthority
from weftnet.core.vpn.network import VNET_NONE, VpnNetwork
from weftnet.errors import ConfigError
from weftnet.runtime import evloop
from weftnet.runtime.config import Config, config_from_dict
from weftnet.runtime.daemon import Daemon
from weftnet.runtime.driver import UdpDriver
from weftnet.runtime.keystore import write_identity
from weftnet.runtime.paths import StatePaths
from weftnet.sim.harness import SimNetwork

ALLOW_ALL = {"outbound": [{"proto": "any", "port": "any", "host": "any"}],
             "inbound": [{"proto": "any", "port": "any", "host": "any"}]}


def icmp_echo(src, dst, ident, seq=1, reply=False):
    """An echo as ping(8) sends it (56 bytes of data), so it takes the daemon's path for a ping."""
    return _icmp_echo(src, dst, ident, seq, reply, data=bytes(56))


LOOPS = ["asyncio"] + (["uvloop"] if evloop.loop_factory("auto")[0] == "uvloop" else [])


class _Tun:
    """The daemon's end of a SOCK_SEQPACKET pair stands in for a TUN; ``kernel`` is the host's end."""

    def __init__(self, name: str):
        self.name = name
        self._end, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._end.setblocking(False)
        self.kernel.setblocking(False)

    def fileno(self) -> int:
        return self._end.fileno()

    def close(self) -> None:
        self._end.close()
        self.kernel.close()


def _now_readable(sock: socket.socket) -> bool:
    """Something is already queued on ``sock`` (a zero timeout: nothing is waited for)."""
    return bool(select.select([sock], [], [], 0)[0])


def _sim_cores(socks, seed, net_seed=None):
    """``(net, rng, cores)``: a node at the loopback address of each of ``socks`` in a simulator
    (seeded ``net_seed``, by default ``seed``); the identities drawn from ``rng`` (seeded ``seed``),
    core i's randomness from ``seed * 100 + i``."""
    net = SimNetwork(seed if net_seed is None else net_seed, start=time.time())
    rng = random.Random(seed)
    cores = []
    for i, s in enumerate(socks):
        core = NodeCore(Identity.generate(rng), random.Random(seed * 100 + i), net.now)
        core.set_local_endpoint(s.getsockname())
        net.add(s.getsockname(), core)
        cores.append(core)
    return net, rng, cores


def _daemon(state, core, sock, offset):
    """A daemon (state directory ``state``) around ``core``, its driver on ``sock`` with the TUN
    drain and writer the daemon sets, its clock carrying on from the simulator's (``offset``)."""
    state.mkdir()
    write_identity(StatePaths(state).key, core.identity)
    d = Daemon(state, Config())
    d.driver = UdpDriver(core, sock, clock=lambda: time.time() + offset)
    d.driver.after_tun_writes = d._drain_tuns
    d.driver.tun_writer = d._write_tun
    return d


def _members(tmp_path, socks):
    """Two members of one network whose sessions and routes were set up in the simulator, at the
    loopback addresses of ``socks`` (node 0 is the simulator's bootstrap node only). Their network
    is marked as the daemon marks its TUN's (``vnet=True``): what is read from the TUN starts with a
    virtio_net_hdr, a ping's all zeros (``VNET_NONE``)."""
    net, rng, cores = _sim_cores(socks, 3)
    for core in cores[1:]:
        core.connect(cores[0].endpoint, net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    auth = NetworkAuthority.create("lab", ["10.1.0.0/24"], rng, net.now)
    nets = []
    for serial, (core, ip) in enumerate(((cores[1], "10.1.0.1"), (cores[2], "10.1.0.2")), start=1):
        cert = auth.sign_member(core.node_id, [ip], not_before=int(net.now) - 10, not_after=int(net.now) + 86400,
                                serial=serial)
        vnet = VpnNetwork(auth.descriptor, cert, net.now, firewall=Firewall.from_config(ALLOW_ALL))
        core.vpn.add_network(vnet, auth.directory_records(cert), vnet=True)
        core.vpn_publish(net.now)
        net.flush(core.endpoint)
        nets.append(vnet)
    net.run_for(5.0)
    # The first packet starts the lookup of 10.1.0.2's holder and is dropped; then the route is known both ways.
    for core, vnet, ping in ((cores[1], nets[0], icmp_echo("10.1.0.1", "10.1.0.2", ident=1)),
                             (cores[1], nets[0], icmp_echo("10.1.0.1", "10.1.0.2", ident=1)),
                             (cores[2], nets[1], icmp_echo("10.1.0.2", "10.1.0.1", ident=1, reply=True))):
        core.vpn_outbound(vnet.network_id, [VNET_NONE + ping], net.now)
        net.flush(core.endpoint)
        net.run_for(2.0)
    assert nets[0].route("10.1.0.2") == cores[2].node_id and nets[1].route("10.1.0.1") == cores[1].node_id
    for core in cores:
        core.vpn.tun_out.clear()
        while core.next_event() is not None:
            pass
    offset = net.now - time.time()  # the drivers' clock carries on from the simulator's
    daemons = []
    for i, core in enumerate(cores[1:], start=1):
        d = _daemon(tmp_path / f"n{i}", core, socks[i], offset)
        tun = _Tun(f"wn-test{i}")
        d._tuns[nets[0].network_id] = tun
        daemons.append(d)
    return daemons, nets[0].network_id


@contextlib.contextmanager
def _two_members(tmp_path):
    """Two member daemons on loopback sockets (a third socket for the authority); closed after."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    daemons = []
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        daemons, nid = _members(tmp_path, socks)
        yield daemons[0], daemons[1], nid
    finally:
        for d in daemons:
            for tun in d._tuns.values():
                tun.close()
            d.driver.close()
        for s in socks:
            s.close()


def _round_trip(tmp_path) -> None:
    with _two_members(tmp_path) as (a, b, nid):
        tun_a, tun_b = a._tuns[nid], b._tuns[nid]
        ping = icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=1)
        reply = icmp_echo("10.1.0.2", "10.1.0.1", ident=7, seq=1, reply=True)
        for seq in range(1, 4):
            # A: the ping is read from the TUN, sealed and sent in the one callback.
            tun_a.kernel.send(VNET_NONE + ping)
            a._on_tun_readable(nid, tun_a)
            assert _now_readable(b.driver.sock), "A's callback returned before sending the lone packet"
            # B: the datagram is opened and written to the TUN, and the answer the host queued on
            # the TUN by then (here put there in advance) is read and sent back in the same callback.
            tun_b.kernel.send(VNET_NONE + reply)
            b.driver._on_readable()
            assert tun_b.kernel.recv(65_535) == VNET_NONE + ping
            assert _now_readable(a.driver.sock), "B's callback returned before sending the reply"
            # A: the reply reaches A's TUN in the callback of its datagram.
            a.driver._on_readable()
            assert tun_a.kernel.recv(65_535) == VNET_NONE + reply
            assert not _now_readable(tun_a.kernel) and not _now_readable(tun_b.kernel)
            assert not _now_readable(a.driver.sock) and not _now_readable(b.driver.sock)
        assert a.driver.sent >= 3 and b.driver.sent >= 3 and a.tun_write_errors == b.tun_write_errors == 0


def _burst(tmp_path) -> None:
    with _two_members(tmp_path) as (a, b, nid):
        tun_a, tun_b = a._tuns[nid], b._tuns[nid]
        pings = [icmp_echo("10.1.0.1", "10.1.0.2", ident=9, seq=seq) for seq in range(1, 6)]
        replies = [icmp_echo("10.1.0.2", "10.1.0.1", ident=9, seq=seq, reply=True) for seq in range(1, 6)]
        # A burst read in one wake-up leaves in that callback, whole and in order, and is written
        # at B in order; B's drain sends the burst of replies back the same way.
        for p in pings:
            tun_a.kernel.send(VNET_NONE + p)
        a._on_tun_readable(nid, tun_a)
        assert not _now_readable(tun_a.kernel) and _now_readable(b.driver.sock)
        for r in replies:
            tun_b.kernel.send(VNET_NONE + r)
        b.driver._on_readable()
        assert [tun_b.kernel.recv(65_535) for _ in pings] == [VNET_NONE + p for p in pings]
        assert not _now_readable(tun_b.kernel) and not _now_readable(b.driver.sock)
        a.driver._on_readable()  # B's drain sent the five replies: all arrive, in order
        assert [tun_a.kernel.recv(65_535) for _ in replies] == [VNET_NONE + r for r in replies]
        assert not _now_readable(tun_a.kernel) and not _now_readable(a.driver.sock)


class _Calls:
    """Notes the TUN reads and writes of ``modules`` (their ``os``; by default the daemon's, which
    writes, and runtime/tun.py's, whose ``read_wakeup`` reads) and the drivers' sends and
    receives, in order."""

    def __init__(self, monkeypatch, daemons, modules=None):
        import types

        import weftnet.runtime.daemon as dmod
        import weftnet.runtime.tun as tunmod

        self.log: list[str] = []
        real_os = dmod.os
        proxy = types.ModuleType("os")
        proxy.__getattr__ = lambda name: getattr(real_os, name)

        def read(fd, n):
            try:
                data = real_os.read(fd, n)
            except BlockingIOError:
                self.log.append("read:empty")
                raise
            self.log.append("read")
            return data

        def writev(fd, bufs):
            self.log.append("writev")
            return real_os.writev(fd, bufs)

        proxy.read, proxy.writev = read, writev
        for mod in modules if modules is not None else (dmod, tunmod):
            monkeypatch.setattr(mod, "os", proxy)

        def poller(fd):  # (not kept in _POLLS: every poll is logged)
            p = select.poll()
            p.register(fd, select.POLLIN)
            return self._logged_poll(p.poll)

        monkeypatch.setattr(tunmod, "_POLLS", {})
        monkeypatch.setattr(tunmod, "poller", poller)
        for d in daemons:
            d.driver.sock = _LoggedSocket(d.driver.sock, self.log)
            d.driver._queued = self._logged_poll(d.driver._queued)

    def _logged_poll(self, poll):
        def logged(timeout):
            r = poll(timeout)
            self.log.append("poll" if r else "poll:empty")
            return r
        return logged


class _LoggedSocket:
    def __init__(self, sock, log):
        self._s, self._log = sock, log

    def sendto(self, *args):
        self._log.append("sendto")
        return self._s.sendto(*args)

    def sendmsg(self, *args):
        self._log.append("sendmsg")  # a run of datagrams in one UDP_SEGMENT send
        return self._s.sendmsg(*args)

    def recvmsg_into(self, *args):
        try:
            r = self._s.recvmsg_into(*args)
        except BlockingIOError:
            self._log.append("recv:empty")
            raise
        self._log.append("recv")
        return r

    def __getattr__(self, name):
        return getattr(self._s, name)


def test_a_lone_packet_is_sent_before_the_read_that_finds_the_queue_empty(tmp_path, monkeypatch):
    """A lone packet (TUN or UDP) is sent or written before anything else is read, and then a
    zero-timeout poll, not a read that raises, finds that nothing is queued behind it; a burst
    after lone packets still goes as a batch."""
    async def main():
        with _two_members(tmp_path) as (a, b, nid):
            calls = _Calls(monkeypatch, (a, b))
            tun_a, tun_b = a._tuns[nid], b._tuns[nid]
            for seq in range(1, 4):
                calls.log.clear()
                tun_a.kernel.send(VNET_NONE + icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq))
                a._on_tun_readable(nid, tun_a)
                assert calls.log == ["read", "sendto", "poll:empty"]
                calls.log.clear()
                tun_b.kernel.send(VNET_NONE + icmp_echo("10.1.0.2", "10.1.0.1", ident=7, seq=seq, reply=True))
                b.driver._on_readable()
                # B: open and write the ping, read and send the reply the host queued, then look for more.
                assert calls.log == ["recv", "writev", "read", "sendto", "poll:empty", "poll:empty"]
                calls.log.clear()
                a.driver._on_readable()
                # A, the pinging end: the host took the reply, so the drain after the write finds the TUN
                # empty; once it has, the next drains ask with a poll instead of a read that fails.
                drain = "read:empty" if seq == 1 else "poll:empty"
                assert calls.log == ["recv", "writev", drain, "poll:empty"]
                assert tun_b.kernel.recv(65_535)[10:] and tun_a.kernel.recv(65_535)[10:]
            # Two datagrams after lone ones: the first opened alone, the poll sees the second, which
            # is read on as before (and the read after it finds the socket empty).
            calls.log.clear()
            for seq in (20, 21):
                tun_a.kernel.send(VNET_NONE + icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq))
                a._on_tun_readable(nid, tun_a)
            calls.log.clear()
            b.driver._on_readable()
            # (B's drains found replies so far: its first read after a write is a read; after one that
            # finds nothing, a poll.)
            assert calls.log == ["recv", "writev", "read:empty", "poll", "recv", "recv:empty", "writev", "poll:empty"]
            assert [tun_b.kernel.recv(65_535)[10:] for _ in range(2)] == \
                [icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq) for seq in (20, 21)]
            # B's TUN answers again: the poll finds the reply, it is read and sent, and the next drain
            # reads at once.
            for seq, drain in ((30, ["poll", "read"]), (31, ["read"])):
                tun_a.kernel.send(VNET_NONE + icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq))
                a._on_tun_readable(nid, tun_a)
                calls.log.clear()
                tun_b.kernel.send(VNET_NONE + icmp_echo("10.1.0.2", "10.1.0.1", ident=7, seq=seq, reply=True))
                b.driver._on_readable()
                after = calls.log[calls.log.index("writev") + 1:]
                assert after[:len(drain) + 1] == [*drain, "sendto"]
                a.driver._on_readable()
                assert tun_b.kernel.recv(65_535)[10:] and tun_a.kernel.recv(65_535)[10:]
            # A burst after lone packets: the first leaves alone, the rest in one batch, all in order;
            # after a wake-up that found several, the next reads its whole batch before sending.
            for rounds in range(2):
                calls.log.clear()
                for seq in range(10, 13):
                    tun_a.kernel.send(VNET_NONE + icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq))
                a._on_tun_readable(nid, tun_a)
                if rounds == 0:
                    assert calls.log == ["read", "sendto", "poll", "read", "read", "read:empty", "sendmsg"]
                else:
                    assert calls.log == ["read", "read", "read", "read:empty", "sendmsg"]
                b.driver._on_readable()
                assert [tun_b.kernel.recv(65_535)[10:] for _ in range(3)] == \
                    [icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq) for seq in range(10, 13)]

    evloop.run(main(), "auto")


class _ScriptedSocket:
    """A driver's socket whose reads return the given (data, GRO segment size or 0) in turn, then EAGAIN."""

    def __init__(self, sock, reads):
        self._s, self._reads = sock, list(reads)

    def recvmsg_into(self, buffers, _ancsize):
        if not self._reads:
            raise BlockingIOError
        data, seg = self._reads.pop(0)
        buffers[0][:len(data)] = data
        anc = [(17, 104, struct.pack("=i", seg))] if seg else []  # SOL_UDP, UDP_GRO
        return len(data), anc, 0, ("127.0.0.1", 9)

    def __getattr__(self, name):
        return getattr(self._s, name)


def test_a_datagram_after_a_gro_run_is_not_handled_before_it(tmp_path):
    async def main():
        with _two_members(tmp_path) as (a, _b, _nid):
            drv = a.driver
            drv.gro, drv.divert = True, None
            seen: list[list] = []
            drv.core.receive_datagrams = lambda batch, now: seen.append([type(d).__name__ for d, _ in batch])
            assert drv._sparse  # the last wake-up (none yet) read one datagram
            drv.sock = _ScriptedSocket(drv.sock, [(bytes(2000), 1000), (bytes(100), 0)])
            drv._queued = lambda _timeout: drv.sock._reads  # the poll sees the scripted queue
            drv._on_readable()
            assert seen == [["Train", "bytes"]]  # one batch, in arrival order: the lone path is for a first datagram
            assert not drv._sparse
            seen.clear()
            drv.sock._reads = [(bytes(100), 0)]
            drv._on_readable()
            drv.sock._reads = [(bytes(100), 0), (bytes(100), 0)]
            drv._on_readable()
            assert seen == [["bytes"], ["bytes"], ["bytes"]]  # a lone one, then the next first alone, then the rest

    evloop.run(main(), "auto")


class _RefusingSocket:
    """A driver's socket whose next ``sendto`` calls raise the given errors, then send as the real one."""

    def __init__(self, sock, errors):
        self._s, self.errors = sock, list(errors)

    def sendto(self, data, addr):
        if self.errors:
            raise self.errors.pop(0)
        return self._s.sendto(data, addr)

    def __getattr__(self, name):
        return getattr(self._s, name)


def test_a_lone_datagram_the_socket_refuses_waits_for_it_or_is_counted_as_lost(tmp_path):
    async def main():
        with _two_members(tmp_path) as (a, b, nid):
            tun_a, tun_b = a._tuns[nid], b._tuns[nid]
            drv = a.driver
            drv.sock = _RefusingSocket(drv.sock, [BlockingIOError()])
            pings = [icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq) for seq in range(1, 4)]
            # A full socket buffer: the lone datagram waits in the backlog, nothing lost, nothing sent yet.
            tun_a.kernel.send(VNET_NONE + pings[0])
            a._on_tun_readable(nid, tun_a)
            assert len(drv._backlog) == 1 and drv._backlog_weight == 1 and drv.sent == 0
            assert not _now_readable(b.driver.sock)
            drv._on_writable()  # (the loop calls it once the socket is writable)
            assert not drv._backlog and drv.sent == 1
            b.driver._on_readable()
            assert tun_b.kernel.recv(65_535) == VNET_NONE + pings[0]
            # Another error (no route): that datagram is counted as lost and the next one goes.
            drv.sock.errors = [OSError(101, "Network is unreachable")]
            tun_a.kernel.send(VNET_NONE + pings[1])
            a._on_tun_readable(nid, tun_a)
            assert drv.send_errors == 1 and not drv._backlog and drv.sent == 1
            tun_a.kernel.send(VNET_NONE + pings[2])
            a._on_tun_readable(nid, tun_a)
            assert drv.sent == 2 and drv.send_errors == 1
            b.driver._on_readable()
            assert tun_b.kernel.recv(65_535) == VNET_NONE + pings[2]
            assert not _now_readable(tun_b.kernel)

    evloop.run(main(), "auto")


def test_a_burst_crosses_whole_and_in_order_in_one_callback_per_daemon(tmp_path):
    async def main():
        _burst(tmp_path)

    evloop.run(main(), "auto")


@pytest.mark.parametrize("loop", LOOPS)
def test_a_lone_ping_crosses_each_daemon_in_the_callback_that_reads_it(tmp_path, loop):
    async def main():
        assert evloop.loop_name(asyncio.get_running_loop()) == loop
        _round_trip(tmp_path)

    evloop.run(main(), loop)


def test_the_event_loop_setting_is_checked_and_falls_back_without_uvloop(monkeypatch):
    assert config_from_dict({"dataplane": {"event_loop": "asyncio"}}).event_loop == "asyncio"
    assert Config().event_loop == "auto"
    with pytest.raises(ConfigError, match="event_loop must be auto, uvloop or asyncio"):
        config_from_dict({"dataplane": {"event_loop": "trio"}})
    assert evloop.loop_factory("asyncio") == ("asyncio", None)
    monkeypatch.setitem(__import__("sys").modules, "uvloop", None)  # as if it were not installed
    assert evloop.loop_factory("auto") == ("asyncio", None)
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        evloop.loop_factory("uvloop")
    assert evloop.run(asyncio.sleep(0, "ran"), "auto") == "ran"


def test_the_daemon_thread_gets_the_time_slice_it_asks_for_and_keeps_its_nice_value():
    if evloop.current_slice() is None:
        pytest.skip("sched_getattr is not available for this machine type")
    seen = []

    def thread():  # a thread of its own: the test runner's threads keep their slice
        before = os.getpriority(os.PRIO_PROCESS, 0)
        seen.append((evloop.request_slice(100), evloop.current_slice(), os.getpriority(os.PRIO_PROCESS, 0) == before,
                     evloop.request_slice(0)))

    t = threading.Thread(target=thread)
    t.start()
    t.join()
    got, now, same_nice, back = seen[0]
    if got != 100:
        pytest.skip(f"this kernel ({os.uname().release}) ignores a requested slice (Linux 6.12+ honours it)")
    assert now == 100 and same_nice
    assert back == evloop.current_slice()  # 0 gives the kernel's default again, as the main thread has
    with pytest.raises(ValueError):
        evloop.request_slice(50)
    assert Config().sched_slice_us == 100
    assert config_from_dict({"dataplane": {"sched_slice_us": 0}}).sched_slice_us == 0
    for bad in (50, 200_000, -1):
        with pytest.raises(ConfigError, match="sched_slice_us"):
            config_from_dict({"dataplane": {"sched_slice_us": bad}})


def test_the_short_slice_is_asked_for_only_while_the_cpus_are_contended(tmp_path):
    """[dataplane] sched_slice_pressure: the daemon's thread gets the short slice while the kernel
    reports CPU pressure at or above the threshold (and until it falls below half of it), the
    kernel's default otherwise, and keeps the short slice where there is no pressure to read."""
    if evloop.current_slice() is None:
        pytest.skip("sched_getattr is not available for this machine type")
    psi = tmp_path / "cpu"
    readings = [(b"some avg10=57.20 avg60=40.00 avg300=12.00 total=1\n", 100),  # contended: short
                (b"some avg10=6.00 avg60=1.00 avg300=0.50 total=2\n", 100),  # above half the threshold: kept
                (b"some avg10=0.40 avg60=1.00 avg300=0.50 total=3\n", None),  # idle: the kernel's default
                (b"some avg10=9.99 avg60=1.00 avg300=0.50 total=4\n", None),  # below the threshold: default
                (None, 100)]  # no PSI (file gone): the fixed setting's short slice
    seen = []

    honoured = []

    def thread():  # a thread of its own: the test runner's threads keep their slice
        default = evloop.current_slice()
        honoured.append(evloop.request_slice(100) == 100)
        evloop.request_slice(0)
        follower = evloop.SliceFollower(100, 10, read=lambda: evloop.cpu_pressure(str(psi)))
        for text, _want in readings:
            if text is None:
                psi.unlink()
            else:
                psi.write_bytes(text)
            follower.check()
            seen.append((evloop.current_slice(), follower.pressure, default))
        evloop.request_slice(0)

    t = threading.Thread(target=thread)
    t.start()
    t.join()
    if not honoured[0]:
        pytest.skip(f"this kernel ({os.uname().release}) ignores a requested slice (Linux 6.12+ honours it)")
    for (now, pressure, default), (text, want) in zip(seen, readings):
        assert now == (want if want is not None else default)
        assert pressure == (None if text is None else float(text.split()[1].split(b"=")[1]))
    assert Config().sched_slice_pressure == 10
    assert config_from_dict({"dataplane": {"sched_slice_pressure": 0}}).sched_slice_pressure == 0
    for bad in (-1, 101):
        with pytest.raises(ConfigError, match="sched_slice_pressure"):
            config_from_dict({"dataplane": {"sched_slice_pressure": bad}})


def test_cpu_pressure_reads_the_kernels_some_avg10_and_nothing_else():
    assert evloop.cpu_pressure("/nonexistent/pressure/cpu") is None
    if os.path.exists(evloop.PRESSURE_FILE):
        p = evloop.cpu_pressure()
        assert p is not None and 0.0 <= p <= 100.0

