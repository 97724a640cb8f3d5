"""bench/dataplane/floors.py's floor tunnels (docs/dataplane.md, "Twelfth ping round") are bounds only if
they do a tunnel's work for each packet: seal and open with a per-direction key, drop what is forged or
replayed. Their C (floor/floor.h, as the extension floorext) and Python (floor/pytun.py) halves speak one
format, so each checks the other here, over loopback UDP and datagram socket pairs standing in for TUNs."""

import importlib.util
import os
import shutil
import socket
import subprocess
import sysconfig
from pathlib import Path

import pytest

FLOOR = Path(__file__).resolve().parent.parent / "bench" / "dataplane" / "floor"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def floorext(tmp_path_factory):
    include = Path(sysconfig.get_paths()["include"])
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (.ci/run installs it)")
    if not Path("/usr/include/openssl/evp.h").exists():
        pytest.skip("OpenSSL headers not installed (libssl-dev; .ci/run installs them)")
    if not (include / "Python.h").exists():
        pytest.skip(f"Python's headers not found in {include}")
    out = tmp_path_factory.mktemp("floor") / f"floorext{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", f"-I{include}", "-o", str(out),
                    str(FLOOR / "floorext.c"), "-lcrypto"], check=True, capture_output=True)
    return _load("floorext", out)


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def _tun() -> tuple[socket.socket, socket.socket]:
    """(the tunnel's end, the host's end): a datagram pair keeps packet boundaries as a TUN does."""
    ours, host = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    host.setblocking(False)
    return ours, host


def _recv_all(s: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(s.recv(70_000))
        except BlockingIOError:
            return got


def test_c_and_python_halves_carry_packets_both_ways_and_drop_forgeries_and_replays(floorext):
    pytun = _load("pytun", FLOOR / "pytun.py")
    k_ab, k_ba = os.urandom(32), os.urandom(32)
    udp_a, udp_b = _udp(), _udp()
    (tun_a, host_a), (tun_b, host_b) = _tun(), _tun()
    floorext.init(k_ab, k_ba, "127.0.0.1", udp_b.getsockname()[1])  # A: C
    b_out, b_in = pytun.python_pumps(k_ba, k_ab, udp_a.getsockname())  # B: Python
    sniff = _udp()  # where a copy of A's datagrams is sent, to replay and forge them

    packets = [bytes([0x45]) + os.urandom(n) for n in (27, 83, 1399)]
    for p in packets:
        host_a.send(p)
    assert floorext.pump(tun_a.fileno(), udp_a.fileno(), True) == 3
    wire = _recv_all(udp_b)
    assert len(wire) == 3 and all(p not in w for p, w in zip(packets, wire))  # sealed
    for w in wire:
        sniff.sendto(w, udp_b.getsockname())
    b_in(udp_b, tun_b.fileno())
    assert _recv_all(host_b) == packets

    # Replayed, forged (one bit of the body, of the counter) and short datagrams: all dropped by B.
    forged = bytearray(wire[0])
    forged[20] ^= 1
    moved = bytearray(wire[1])
    moved[8] ^= 0x40  # another counter: the nonce and the associated data change, the tag does not
    for w in (wire[0], wire[2], bytes(forged), bytes(moved), wire[1][:20]):
        sniff.sendto(w, udp_b.getsockname())
    b_in(udp_b, tun_b.fileno())
    assert _recv_all(host_b) == []

    # The way back: B (Python) seals, A (C) opens; then a replay and a forgery to A.
    host_b.send(packets[1])
    b_out(tun_b.fileno(), udp_b)
    back = _recv_all(udp_a)
    assert len(back) == 1
    for w in back:
        sniff.sendto(w, udp_a.getsockname())
    assert floorext.pump(udp_a.fileno(), tun_a.fileno(), False) == 1
    assert _recv_all(host_a) == [packets[1]]
    dropped = floorext.dropped()
    bad = bytearray(back[0])
    bad[-1] ^= 0x80  # the tag
    for w in (back[0], bytes(bad), back[0][:31]):
        sniff.sendto(w, udp_a.getsockname())
    assert floorext.pump(udp_a.fileno(), tun_a.fileno(), False) == 0
    assert _recv_all(host_a) == [] and floorext.dropped() == dropped + 3


def test_the_replay_window_takes_late_packets_once(floorext):
    """Counters out of order inside the 64-packet window are taken once each, older ones not at all, by
    both halves."""
    pytun = _load("pytun", FLOOR / "pytun.py")
    k_ab, k_ba = os.urandom(32), os.urandom(32)
    udp_a, udp_b, sniff = _udp(), _udp(), _udp()
    (tun_a, host_a), (tun_b, host_b) = _tun(), _tun()
    floorext.init(k_ab, k_ba, "127.0.0.1", udp_b.getsockname()[1])
    b_out, b_in = pytun.python_pumps(k_ba, k_ab, udp_a.getsockname())

    def c_in() -> None:
        floorext.pump(udp_a.fileno(), tun_a.fileno(), False)

    # Both ways: A (C) to B (Python), then B to A.
    for host_src, seal, udp_dst, open_, host_dst in (
            (host_a, lambda: floorext.pump(tun_a.fileno(), udp_a.fileno(), True), udp_b,
             lambda: b_in(udp_b, tun_b.fileno()), host_b),
            (host_b, lambda: b_out(tun_b.fileno(), udp_b), udp_a, c_in, host_a)):
        for i in range(100):
            host_src.send(bytes([0x45, i]))
            seal()
        wire = [udp_dst.recv(100) for _ in range(100)]
        # Newest first, then counters 99..0: the window (64) takes 99..36; 35..0 are too old.
        for w in reversed(wire):
            sniff.sendto(w, udp_dst.getsockname())
        open_()
        assert [g[1] for g in _recv_all(host_dst)] == list(range(99, 35, -1))
        for w in wire[50:60]:  # inside the window, already taken
            sniff.sendto(w, udp_dst.getsockname())
        open_()
        assert _recv_all(host_dst) == []
