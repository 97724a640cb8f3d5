"""UDP segmentation offload on a real TUN (needs root, /dev/net/tun; skipped otherwise).

The kernel, not our own code, is the judge here: a joined burst written to a TUN must reach a
socket as the original datagrams, and a UDP_SEGMENT burst sent into a TUN with USO must be read
as one packet.
"""

import os
import select
import shutil
import socket
import struct
import subprocess
import time

import pytest

from weftnet.core.vpn.coalesce import GSO_UDP_L4, coalesce_udp
from weftnet.core.vpn.network import VNET_HDR
from weftnet.runtime.tun import configure_tun, open_tun, set_offload

pytestmark = pytest.mark.netns
needs_root = pytest.mark.skipif(
    not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")),
    reason="needs root, /dev/net/tun and the ip command (to make test namespaces)",
)


@pytest.fixture
def netns():
    name = f"weft-uso{os.getpid()}-{os.urandom(2).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def socket_in(netns: str) -> socket.socket:
    from pyroute2 import netns as pr_netns

    pr_netns.pushns(netns)
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    finally:
        pr_netns.popns()


def udp4(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(data), 7, 0x4000, 64, 17, 0, src, dst)
    s = sum(struct.unpack("!10H", ip))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
    return ip + struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


@needs_root
def test_a_joined_burst_written_to_a_tun_reaches_the_socket_datagram_by_datagram(netns):
    with open_tun("wuso%d", netns=netns, vnet_hdr=True) as tun:
        set_offload(tun, uso=True)
        configure_tun(tun.name, addresses=["10.79.0.1/24"], netns=netns)
        rx = socket_in(netns)
        with rx:
            rx.bind(("10.79.0.1", 7000))
            rx.settimeout(5)
            sent = [bytes([i]) * 1200 for i in range(20)] + [b"last one"]
            vnet = VNET_HDR.pack(0, 0, 0, 0, 0, 0)  # checksums complete, as a peer's kernel would leave them
            burst = [vnet + udp4(bytes([10, 79, 0, 2]), bytes([10, 79, 0, 1]), 9000, 7000, d) for d in sent]
            (one,) = coalesce_udp(burst)
            assert one[1] == GSO_UDP_L4
            os.write(tun.fd, one)
            got = [rx.recvfrom(2048) for _ in sent]
        assert [d for d, _ in got] == sent
        assert {a for _, a in got} == {("10.79.0.2", 9000)}


@needs_root
def test_a_udp_gso_burst_sent_into_a_tun_with_uso_is_read_as_one_packet(netns):
    with open_tun("wuso%d", netns=netns, vnet_hdr=True) as tun:
        if not set_offload(tun, uso=True):
            pytest.skip("this kernel has no TUN UDP segmentation offload (Linux 6.2 and later)")
        configure_tun(tun.name, addresses=["10.79.1.1/24"], netns=netns)
        tx = socket_in(netns)
        with tx:
            tx.setsockopt(17, 103, 1000)  # SOL_UDP, UDP_SEGMENT: 1000-byte datagrams
            tx.sendto(b"u" * 8000, ("10.79.1.2", 7001))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                select.select([tun.fd], [], [], 1)
                pkt = os.read(tun.fd, 70_000)
                if pkt[10] >> 4 == 4 and pkt[10 + 9] == 17:
                    break
            else:
                raise AssertionError("no UDP packet came out of the TUN")
        flags, gso_type, _hl, gso_size, _cs, _co = VNET_HDR.unpack(pkt[:10])
        assert (gso_type, gso_size) == (GSO_UDP_L4, 1000)
        assert len(pkt) == 10 + 28 + 8000
