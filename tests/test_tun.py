"""TUN devices in network namespaces (needs root and /dev/net/tun; skipped otherwise).

Each test makes its own namespace named with the pid, and removes it in a finally block.
"""

import ipaddress
import os
import select
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

from weftnet.errors import NetworkError
from weftnet.runtime.tun import configure_tun, link_info, move_to_netns, open_tun

HAVE_TUN = os.path.exists("/dev/net/tun")
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not (IS_ROOT and HAVE_TUN and shutil.which("ip")),
    reason="needs root, /dev/net/tun and the ip command (to make test namespaces)",
)
pytestmark = pytest.mark.netns


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo_request(src: str, dst: str, ident: int, payload: bytes = b"weftnet") -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + payload
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0x4000, 64, 1, 0,
                                ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed))
    hdr[10:12] = struct.pack("!H", _checksum(bytes(hdr)))
    return bytes(hdr) + icmp


def read_echo_reply(tun, ident: int, timeout: float = 5.0) -> bytes:
    """Read packets until the ICMP echo reply with ``ident`` (IPv6 chatter may come first)."""
    tun.set_blocking(False)
    for _ in range(50):
        ready, _, _ = select.select([tun.fd], [], [], timeout)
        if not ready:
            break
        pkt = tun.read()
        if pkt[0] >> 4 == 4 and pkt[9] == 1 and pkt[20] == 0 and struct.unpack("!H", pkt[24:26])[0] == ident:
            return pkt
    raise AssertionError("no echo reply came out of the TUN")


@pytest.fixture
def netns():
    name = f"weft-t{os.getpid()}-{os.urandom(2).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@needs_root
def test_tun_inside_a_namespace_is_configured_and_answers_ping(netns):
    with open_tun("weft%d", netns=netns) as tun:
        assert tun.name.startswith("weft") and tun.netns == netns
        configure_tun(tun.name, addresses=["10.77.0.1/24", "fd00:77::1/64"], mtu=1280, netns=netns)
        info = link_info(tun.name, netns=netns)
        assert info["up"] and info["running"]
        assert info["mtu"] == 1280
        assert "10.77.0.1/24" in info["addresses"] and "fd00:77::1/64" in info["addresses"]
        # The device is in the namespace, not here.
        with pytest.raises(NetworkError, match="no interface"):
            link_info(tun.name)
        # A packet written to the TUN reaches the namespace's kernel, whose reply comes back out.
        tun.write(echo_request("10.77.0.2", "10.77.0.1", ident=4242))
        reply = read_echo_reply(tun, 4242)
        assert reply[12:16] == ipaddress.ip_address("10.77.0.1").packed
        assert reply[16:20] == ipaddress.ip_address("10.77.0.2").packed
        assert reply.endswith(b"weftnet")


@needs_root
def test_move_an_open_tun_into_a_namespace(netns):
    name = f"wt{os.getpid() % 100000}"
    with open_tun(name) as tun:
        assert link_info(name)["up"] is False  # created down, in this namespace
        move_to_netns(name, netns)
        with pytest.raises(NetworkError, match="no interface"):
            link_info(name)
        configure_tun(name, addresses=["10.78.0.1/24"], routes=["10.79.0.0/16"], netns=netns)
        assert "10.78.0.1/24" in link_info(name, netns=netns)["addresses"]
        routes = subprocess.run(["ip", "-n", netns, "route", "show", "10.79.0.0/16"], capture_output=True,
                                text=True, check=True).stdout
        assert f"dev {name}" in routes
        tun.write(echo_request("10.78.0.2", "10.78.0.1", ident=7))
        assert read_echo_reply(tun, 7)[12:16] == bytes([10, 78, 0, 1])


@needs_root
def test_missing_namespace_and_interface_are_clear_errors():
    with pytest.raises(NetworkError, match="does not exist"):
        open_tun("weftx0", netns=f"weft-missing-{os.getpid()}")
    with pytest.raises(NetworkError, match="no interface named"):
        configure_tun(f"nope{os.getpid() % 10000}", mtu=1280)


def test_bad_interface_names():
    for bad in ("", "a" * 16, "a/b", "tün0"):
        with pytest.raises(NetworkError, match="interface name"):
            open_tun(bad)


@pytest.mark.skipif(not (IS_ROOT and HAVE_TUN), reason="needs root to drop privileges and /dev/net/tun")
def test_without_cap_net_admin_the_error_names_it():
    code = textwrap.dedent("""
        import os, sys
        from weftnet.errors import NetworkError
        from weftnet.runtime.tun import open_tun
        os.setgid(65534); os.setuid(65534)  # after the imports: the stdlib may not be readable by nobody
        try:
            open_tun("weftnp0")
        except NetworkError as exc:
            print(exc)
            sys.exit(0)
        sys.exit("opened a TUN without privileges")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "CAP_NET_ADMIN" in r.stdout


@needs_root
def test_namespace_work_forks_no_process(netns, monkeypatch):
    """pyroute2's IPRoute(netns=...) forks a helper that it later ends with SIGTERM; forked after
    the daemon installed its signal handlers, that SIGTERM reached the daemon (a reload that
    restarted a network in a namespace stopped the node). Namespace work must not fork."""

    def no_fork(*args, **kwargs):
        raise AssertionError("a process was forked for namespace work")

    monkeypatch.setattr(os, "fork", no_fork)
    import multiprocessing

    monkeypatch.setattr(multiprocessing.Process, "start", no_fork)
    with open_tun("weft%d", netns=netns) as tun:
        configure_tun(tun.name, addresses=["10.77.1.1/24"], mtu=1400, netns=netns)
        assert link_info(tun.name, netns=netns)["mtu"] == 1400
