"""Kernel steering for several data-plane workers (runtime/dpsteer.py): the kernel, not our own
code, is the judge. A steered reuseport group hands each TransportData datagram to the socket
of its counter partition's worker slot and everything else to the main socket; a multi-queue TUN
hands a flow's outbound packets to the queue its inbound packets were written on."""

import os
import select
import shutil
import socket
import subprocess
import time

import pytest

from test_uso_netns import udp4

from weftnet.runtime.dpsteer import open_steered_group, open_tun_queues, partition_byte, partition_slot
from weftnet.runtime.tun import configure_tun


def _datagram(kind: int, partition: int, size: int = 40) -> bytes:
    head = bytes((1, kind)) + (77).to_bytes(4, "big") + bytes((partition,)) + bytes(7)
    return (head + bytes(size))[:size] if size < len(head) else head + bytes(size - len(head))


def _drain(socks):
    got = {i: [] for i in range(len(socks))}
    while True:
        ready, _, _ = select.select(socks, [], [], 0.3)
        if not ready:
            return got
        for s in ready:
            got[socks.index(s)].append(s.recv(2048))


def test_partitions_reach_their_worker_and_everything_else_the_main_socket():
    group = open_steered_group("127.0.0.1", 0, 3)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = group[0].getsockname()[1]
        assert {s.getsockname()[1] for s in group} == {port}
        cases = {
            _datagram(4, partition_byte(1, 0)): 1,
            _datagram(4, partition_byte(2, 0)): 2,
            _datagram(4, partition_byte(2, 5)): 2,  # the high four bits do not matter to steering
            _datagram(4, partition_byte(0, 0)): 0,  # the main process's own partition (and older senders')
            _datagram(4, partition_byte(5, 0)): 0,  # a slot this node has no worker for
            _datagram(1, partition_byte(1, 0)): 0,  # a handshake whose byte 6 looks like a partition
            _datagram(7, partition_byte(2, 0)): 2,  # a fragment: its worker reassembles it
            _datagram(6, partition_byte(2, 0)): 0,  # a HelloReply
            _datagram(4, 1, size=10): 0,  # too short to be data
        }
        for data in cases:
            for _ in range(3):  # several of each: a hash would scatter them, steering does not
                tx.sendto(data, ("127.0.0.1", port))
        got = _drain(group)
        for data, slot in cases.items():
            assert got[slot].count(data) == 3, (data.hex(), slot, {k: len(v) for k, v in got.items()})
        assert partition_slot(partition_byte(2, 5)) == 2
    finally:
        tx.close()
        for s in group:
            s.close()


needs_root = pytest.mark.skipif(
    not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")),
    reason="needs root, /dev/net/tun and the ip command (to make a test namespace)",
)


@pytest.fixture
def netns():
    name = f"weft-mq{os.getpid()}-{os.urandom(2).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.netns
@needs_root
def test_a_flow_written_on_a_queue_is_read_back_on_that_queue(netns):
    from pyroute2 import netns as pr_netns

    pr_netns.pushns(netns)
    try:
        queues = open_tun_queues("wmq%d", 2)
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    finally:
        pr_netns.popns()
    try:
        configure_tun(queues[0].name, addresses=["10.78.0.1/24"], netns=netns)
        echo.bind(("10.78.0.1", 7000))
        for t in queues:
            while True:  # whatever the kernel sent when the link came up (IPv6 router solicitations)
                try:
                    os.read(t.fd, 65535)
                except BlockingIOError:
                    break
        landed = {}
        for i in range(16):  # 16 flows, each written on queue i % 2; the local socket answers each
            q = i % 2
            os.write(queues[q].fd, udp4(bytes((10, 78, 0, 2)), bytes((10, 78, 0, 1)), 20000 + i, 7000, b"hi"))
            data, addr = echo.recvfrom(100)
            echo.sendto(b"re:" + data, addr)
            fds = [t.fd for t in queues]
            deadline = time.monotonic() + 2.0
            while i not in landed:  # the reply; skip what else the kernel sends (IPv6 RS, MLD) at any time
                ready, _, _ = select.select(fds, [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"no reply to flow {i} within 2 s"
                for fd in ready:
                    pkt = os.read(fd, 65535)
                    if pkt[0] >> 4 == 4 and pkt[9] == 17 and pkt[20:22] == (7000).to_bytes(2, "big"):
                        assert i not in landed, f"flow {i}'s reply came back twice"
                        landed[i] = fds.index(fd)
        assert landed == {i: i % 2 for i in range(16)}
    finally:
        echo.close()
        for t in queues:
            t.close()
