"""Path MTU discovery end to end: two `weft up` daemons in namespaces, over underlays of different MTUs.

Topologies (namespaces named with this process's pid, removed at the end, also on failure):

* ``1500``: A --veth(1500)-- B
* ``9000``: A --veth(9000)-- B
* ``router``: A --veth(9000)-- R --veth(1400)-- B, R forwarding: the first link would carry jumbo
  datagrams, the path does not (R drops the larger probes, which carry don't-fragment).

In each, the private network's TUN (no ``mtu`` in the config) starts at 1,280 and must end at
what the path carries in one datagram minus the tunnel's 64 bytes, and a packet of that size with
don't-fragment set must cross. Needs root, /dev/net/tun and the ip command; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WEFT = [sys.executable, "-m", "weftnet.cli.main"]
pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip") and shutil.which("ping")),
        reason="needs root, /dev/net/tun, ip and ping (the test makes its own namespaces)",
    ),
]
ALLOW_ALL = """
[networks.mtu]
firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]
firewall.inbound = [ { proto = "any", port = "any", host = "any" } ]
"""


def sh(*args: str) -> None:
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {p.stderr.strip()}")


def weft(state: Path, *args: str) -> str:
    p = subprocess.run([*WEFT, "--state-dir", str(state), *args], capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise AssertionError(f"weft {' '.join(args)} failed: {p.stdout}{p.stderr}")
    return p.stdout


def tun_mtu(ns: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "wn-mtu"], capture_output=True, text=True).stdout
    return int(out.split(" mtu ")[1].split()[0]) if " mtu " in out else 0


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Lab:
    def __init__(self, tmp: Path, kind: str):
        self.tmp, self.kind = tmp, kind
        self.tag = f"pm{os.getpid() % 100000}{kind[0]}"
        self.ns: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def add_ns(self, host: str) -> str:
        name = f"{self.tag}-{host}"
        sh("ip", "netns", "add", name)
        self.ns.append(name)
        return name

    def link(self, a: str, a_ip: str, b: str, b_ip: str, mtu: int, dev: str) -> None:
        sh("ip", "-n", a, "link", "add", dev, "mtu", str(mtu), "type", "veth", "peer", "name", dev + "p",
           "netns", b, "mtu", str(mtu))
        sh("ip", "-n", a, "addr", "add", a_ip + "/24", "dev", dev)
        sh("ip", "-n", b, "addr", "add", b_ip + "/24", "dev", dev + "p")
        sh("ip", "-n", a, "link", "set", dev, "up")
        sh("ip", "-n", b, "link", "set", dev + "p", "up")

    def build(self) -> tuple[str, str, str]:
        a, b = self.add_ns("a"), self.add_ns("b")
        if self.kind == "router":
            r = self.add_ns("r")
            self.link(a, "10.251.1.1", r, "10.251.1.254", 9000, "u0")
            self.link(r, "10.251.2.254", b, "10.251.2.2", 1400, "u1")
            sh("ip", "netns", "exec", r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
            sh("ip", "-n", a, "route", "add", "10.251.2.0/24", "via", "10.251.1.254")
            sh("ip", "-n", b, "route", "add", "10.251.1.0/24", "via", "10.251.2.254")
            a_ip, b_ip = "10.251.1.1", "10.251.2.2"
        else:
            self.link(a, "10.251.1.1", b, "10.251.1.2", int(self.kind), "u0")
            a_ip, b_ip = "10.251.1.1", "10.251.1.2"
        owner = self.tmp / "owner"
        weft(owner, "init")
        weft(owner, "net", "create", "mtu", "--ipv4", "10.3.0.0/24")
        for i, (host, ns, ip) in enumerate((("a", a, a_ip), ("b", b, b_ip)), start=1):
            st = self.tmp / host
            weft(st, "init")
            node = json.loads(weft(st, "id", "--json"))["node_id"]
            weft(owner, "net", "sign", "mtu", "--node", node, "--ip", f"10.3.0.{i}", "-o", str(self.tmp / f"{host}.cert"))
            weft(st, "net", "join", str(self.tmp / f"{host}.cert"))
            with open(st / "config.toml", "a") as f:
                f.write(ALLOW_ALL)
        for host, ns, ip, peer in (("b", b, b_ip, None), ("a", a, a_ip, b_ip)):
            args = ["ip", "netns", "exec", ns, *WEFT, "--state-dir", str(self.tmp / host), "up",
                    "--listen", ip, "--port", "4500"] + (["--peer", f"{peer}:4500"] if peer else [])
            log = open(self.tmp / f"{host}.log", "w")
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=log))
            wait_for(lambda h=host: (self.tmp / h / "control.sock").exists(), 20, f"{host}'s control socket")
        return a, b, b_ip

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for ns in reversed(self.ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("kind, datagram", [("1500", 1472), ("9000", 8972), ("router", 1372)])
def test_the_tunnel_mtu_follows_the_path(tmp_path, kind, datagram):
    lab = Lab(tmp_path, kind)
    try:
        a, b, _ = lab.build()
        expected = datagram - 64
        # The first ping also makes the members find each other (sessions up, then the search).
        wait_for(lambda: subprocess.run(["ip", "netns", "exec", a, "ping", "-c1", "-W1", "10.3.0.2"],
                                        capture_output=True).returncode == 0, 30, "a ping through the tunnel")
        wait_for(lambda: tun_mtu(a) == expected and tun_mtu(b) == expected, 30,
                 f"both TUNs at MTU {expected} (now {tun_mtu(a)}, {tun_mtu(b)})")
        status = json.loads(weft(lab.tmp / "a", "status", "--json"))
        (found,) = status["dataplane"]["pmtu"]["peers"].values()
        assert found == datagram
        # A packet of the full new MTU, don't-fragment set, crosses (as one datagram on the wire).
        size = expected - 28
        p = subprocess.run(["ip", "netns", "exec", a, "ping", "-c1", "-W2", "-M", "do", "-s", str(size), "10.3.0.2"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        lab.close()
