"""Private networks end to end: real `weft up` daemons in network namespaces the test creates.

Topology (all namespaces named with this process's pid, removed at the end):

    hub:  bridge br0 --- veth --- A (10.250.0.1)   members of "lab"  10.1.0.0/24 as .1
                     --- veth --- B (10.250.0.2)                     as .2
                     --- veth --- C (10.250.0.3)                     as .3
                     --- veth --- X (10.250.0.4)   no member: the attacker
    A and B are also members of "lab2", another network with the SAME prefix
    10.1.0.0/24, whose TUNs sit in their own namespaces A2 and B2.

A starts alone; B and C join the overlay through A. Members find each other's
addresses through the DHT (directory records). B allows inbound ICMP and TCP
port 5001 only. Needs root, /dev/net/tun and the `ip` command; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOOL = [sys.executable, str(HERE / "netns_tool.py")]
WEFT = [sys.executable, "-m", "weftnet.cli.main"]

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")),
        reason="needs root, /dev/net/tun and the ip command (the test makes its own namespaces)",
    ),
]

ALLOW_ALL = """
[networks.{net}]
{extra}firewall.outbound = [ {{ proto = "any", port = "any", host = "any" }} ]
firewall.inbound = [ {{ proto = "any", port = "any", host = "any" }} ]
"""
B_LAB = """
[networks.lab]
firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]
firewall.inbound = [ { proto = "icmp", port = "any", host = "any" }, { proto = "tcp", port = 5001, host = "any" } ]
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {p.stderr.strip()}")
    return p


def weft(state: Path, *args: str) -> str:
    p = subprocess.run([*WEFT, "--state-dir", str(state), *args], capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise AssertionError(f"weft {' '.join(args)} failed: {p.stdout}{p.stderr}")
    return p.stdout


def in_ns(ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=timeout)


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Overlay:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.tag = f"wt{os.getpid() % 100000}"
        self.ns: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.state: dict[str, Path] = {}

    def name(self, host: str) -> str:
        return f"{self.tag}{host}"

    def add_ns(self, host: str) -> str:
        ns = self.name(host)
        sh("ip", "netns", "add", ns)
        self.ns.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def build(self) -> None:
        hub = self.add_ns("hub")
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i, host in enumerate("ABCX", start=1):
            ns = self.add_ns(host)
            outer = f"{self.tag}{host}h"
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "u0")
            sh("ip", "link", "set", "u0", "netns", ns)
            sh("ip", "link", "set", outer, "netns", hub)
            sh("ip", "-n", hub, "link", "set", outer, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"10.250.0.{i}/24", "dev", "u0")
            sh("ip", "-n", ns, "link", "set", "u0", "up")
        for host in ("A2", "B2"):
            self.add_ns(host)
        owner, owner2 = self.tmp / "owner", self.tmp / "owner2"
        for st in (owner, owner2):
            weft(st, "init")
        weft(owner, "net", "create", "lab", "--ipv4", "10.1.0.0/24")
        weft(owner2, "net", "create", "lab2", "--ipv4", "10.1.0.0/24")
        for i, host in enumerate("ABCX", start=1):
            st = self.state[host] = self.tmp / host
            weft(st, "init")
            if host == "X":
                continue
            node = json.loads(weft(st, "id", "--json"))["node_id"]
            cert = self.tmp / f"{host}.cert"
            weft(owner, "net", "sign", "lab", "--node", node, "--ip", f"10.1.0.{i}", "-o", str(cert))
            weft(st, "net", "join", str(cert))
            conf = B_LAB if host == "B" else ALLOW_ALL.format(net="lab", extra="")
            if host in "AB":
                cert2 = self.tmp / f"{host}2.cert"
                weft(owner2, "net", "sign", "lab2", "--node", node, "--ip", f"10.1.0.{i}", "-o", str(cert2))
                weft(st, "net", "join", str(cert2))
                conf += ALLOW_ALL.format(net="lab2", extra=f'netns = "{self.name(host + "2")}"\n')
            with open(st / "config.toml", "a") as f:
                f.write(conf)

    def up(self, host: str, peer: str | None = None) -> None:
        i = "ABCX".index(host) + 1
        args = ["ip", "netns", "exec", self.name(host), *WEFT, "--state-dir", str(self.state[host]), "up",
                "--listen", f"10.250.0.{i}", "--port", "4500", "--log-format", "json"]
        if peer:
            args += ["--peer", peer]
        log = open(self.tmp / f"{host}.log", "w")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=log))
        wait_for(lambda: (self.state[host] / "control.sock").exists(), 20, f"{host}'s control socket")

    def serve(self, ns: str, port: int, tag: str) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *TOOL, "serve", str(port), tag],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "listening"

    def status(self, host: str) -> dict:
        return json.loads(weft(self.state[host], "status", "--json"))

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


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    ov = Overlay(tmp_path_factory.mktemp("vpn"))
    try:
        ov.build()
        ov.up("A")
        ov.up("B", "10.250.0.1:4500")
        ov.up("C", "10.250.0.1:4500")
        ov.serve(ov.name("B"), 5001, "B-lab")
        ov.serve(ov.name("B"), 5002, "B-lab-5002")
        ov.serve(ov.name("B2"), 5001, "B-lab2")
        yield ov
    finally:
        ov.close()


def ping_until_answered(ov: Overlay, ns: str, dst: str, timeout: float = 20.0) -> str:
    # The first packets may go while the sender looks the address up in the DHT.
    return wait_for(lambda: (r := in_ns(ns, *TOOL, "ping", dst, "1")).returncode == 0 and r.stdout, timeout,
                    f"an echo reply from {dst} in {ns}")


def test_tun_devices_come_up_with_the_certified_addresses(overlay):
    st = overlay.status("A")
    nets = {n["network"]: n for n in st["networks"]}
    assert nets["lab"]["tun"] == "wn-lab" and nets["lab"]["addresses"] == ["10.1.0.1"]
    assert nets["lab2"]["netns"] == overlay.name("A2")
    out = sh("ip", "-n", overlay.name("A"), "-j", "addr", "show", "wn-lab").stdout
    link = json.loads(out)[0]
    assert link["mtu"] == 1280 and {"local": "10.1.0.1", "prefixlen": 24} in [
        {"local": a["local"], "prefixlen": a["prefixlen"]} for a in link["addr_info"]]
    out2 = json.loads(sh("ip", "-n", overlay.name("A2"), "-j", "addr", "show", "wn-lab2").stdout)[0]
    assert any(a["local"] == "10.1.0.1" for a in out2["addr_info"])
    # TCP superpackets capped so each crosses as one chunk (docs/dataplane.md, "CPU per GB").
    detail = json.loads(sh("ip", "-n", overlay.name("A"), "-d", "-j", "link", "show", "wn-lab").stdout)[0]
    assert detail.get("gso_max_size") == 64_000


def test_ping_and_tcp_between_two_members(overlay):
    ping_until_answered(overlay, overlay.name("A"), "10.1.0.2")
    before = overlay.status("A")["dataplane"]
    r = in_ns(overlay.name("A"), *TOOL, "connect", "10.1.0.2", "5001", str(4 << 20))
    assert r.returncode == 0 and r.stdout.strip() == f"B-lab:{4 << 20}", r.stdout
    peers = {n["network"]: n for n in overlay.status("B")["networks"]}["lab"]["peers"]
    assert any(c["bytes_in"] > 4 << 20 for c in peers.values())  # counted in B's per-peer counters
    # The 4 MiB left A in runs of datagrams, each run one UDP GSO send (core/session/train.py).
    after = overlay.status("A")["dataplane"]
    sends = after["gso_sends"] - before["gso_sends"]
    assert sends > 0 and (after["datagrams_sent"] - before["datagrams_sent"]) / sends > 4
    assert after["heap_kept"] is (platform.libc_ver()[0] == "glibc")  # runtime/heap.py
    # The session carried it with the cipher this CPU prefers (docs/handshake.md, "Transport ciphers").
    from weftnet.core.session.ciphers import AES_256_GCM
    from weftnet.runtime.underlay import transport_ciphers

    aes = overlay.status("A")["transport"]["sessions_aes_256_gcm"]
    assert aes >= 1 if transport_ciphers(None)[0] == AES_256_GCM else aes == 0
    assert "acks_filtered" in after  # core/vpn/ackfilter.py


def test_a_third_member_finds_the_others_through_the_dht(overlay):
    # C joined through A and has never heard of 10.1.0.2's holder.
    ping_until_answered(overlay, overlay.name("C"), "10.1.0.2")
    r = in_ns(overlay.name("C"), *TOOL, "connect", "10.1.0.2", "5001", "100000")
    assert r.stdout.strip() == "B-lab:100000"
    assert overlay.status("C")["vpn"]["resolved"] >= 1


def test_a_port_the_firewall_does_not_allow_stays_closed(overlay):
    ping_until_answered(overlay, overlay.name("A"), "10.1.0.2")
    r = in_ns(overlay.name("A"), *TOOL, "connect", "10.1.0.2", "5002", "1000", "2")
    assert r.returncode == 1 and "timed out" in r.stdout
    r = in_ns(overlay.name("A"), *TOOL, "connect", "10.1.0.2", "5001", "1000")
    assert r.stdout.strip() == "B-lab:1000"
    lab = {n["network"]: n for n in overlay.status("B")["networks"]}["lab"]
    assert lab["drops"].get("firewall", 0) >= 1


def test_two_networks_with_one_prefix_carry_traffic_independently(overlay):
    ping_until_answered(overlay, overlay.name("A2"), "10.1.0.2")
    r2 = in_ns(overlay.name("A2"), *TOOL, "connect", "10.1.0.2", "5001", "12345")
    r1 = in_ns(overlay.name("A"), *TOOL, "connect", "10.1.0.2", "5001", "12345")
    assert r2.stdout.strip() == "B-lab2:12345"
    assert r1.stdout.strip() == "B-lab:12345"


def test_a_non_members_packets_never_reach_a_members_tun(overlay):
    b = overlay.status("B")
    lab = {n["network"]: n for n in b["networks"]}["lab"]
    rx = Path("/sys/class/net/wn-lab/statistics/rx_packets")

    def tun_rx() -> int:
        return int(in_ns(overlay.name("B"), "cat", str(rx)).stdout)

    before = tun_rx()
    pub = json.loads(weft(overlay.state["B"], "id", "--json"))["public_key"]
    r = in_ns(overlay.name("X"), *TOOL, "forge", "10.250.0.2", "4500", pub, lab["network_id"])
    assert r.returncode == 0 and "sessions: 1" in r.stdout, r.stdout + r.stderr
    after = overlay.status("B")
    lab_after = {n["network"]: n for n in after["networks"]}["lab"]
    assert lab_after["drops"].get("not-member", 0) >= lab["drops"].get("not-member", 0) + 1
    assert lab_after["drops"].get("bad-signature", 0) >= 1
    # Member traffic in the meantime is all that reached the TUN (no forged echo request did).
    assert tun_rx() - before < 20


def test_without_cap_net_admin_the_daemon_names_the_capability():
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv (util-linux) to drop root")
    # pytest's tmp dirs are root-only; the unprivileged daemon needs a path it can walk.
    tmp_path = Path(tempfile.mkdtemp(prefix="weft-nocap-"))
    try:
        _run_without_cap(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _run_without_cap(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    owner, st = tmp_path / "o", tmp_path / "m"
    weft(owner, "init")
    weft(st, "init")
    weft(owner, "net", "create", "lab", "--ipv4", "10.1.0.0/24")
    node = json.loads(weft(st, "id", "--json"))["node_id"]
    weft(owner, "net", "sign", "lab", "--node", node, "--ip", "10.1.0.9", "-o", str(tmp_path / "c"))
    weft(st, "net", "join", str(tmp_path / "c"))
    sh("chown", "-R", "65534:65534", str(st))
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *WEFT, "--state-dir", str(st),
                        "up", "--port", "0", "--listen", "127.0.0.1"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(st)})
    assert p.returncode == 1
    assert "CAP_NET_ADMIN" in p.stderr and "Traceback" not in p.stderr, p.stderr
    # The advice is a unit with that one capability, never setcap on the shared Python binary.
    assert "AmbientCapabilities=CAP_NET_ADMIN" in p.stderr and "setcap" not in p.stderr, p.stderr
