"""Several data-plane workers end to end (runtime/dpworkers.py, docs/dataplane.md "Several workers").

Two `weft up` daemons in namespaces joined by a veth, each with `[dataplane] workers = 2` and a
private network whose firewall is default-deny inbound (A accepts new flows on port 7100 only,
B on 7000 only, so every reply is admitted by connection tracking). Twelve TCP and twelve UDP
flows each way, all at once, must be echoed whole (with pieces of both processes' partitions joined in
one UDP GRO read, none may be dropped); both the main process and the worker must have carried
some of them at both ends; a worker killed with SIGKILL is restarted and traffic goes on; and
after the sessions' first rekey (120 s) the workers carry traffic with the new keys. Needs root,
/dev/net/tun, ip and ping; skipped otherwise.
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
TRAFFIC = str(Path(__file__).with_name("dp_traffic.py"))
pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip") and shutil.which("ping")),
        reason="needs root, /dev/net/tun, ip and ping (the test makes its own namespaces)",
    ),
]
FIREWALL = """
[networks.dpw]
firewall.outbound = [ {{ proto = "any", port = "any", host = "any" }} ]
firewall.inbound = [ {{ proto = "icmp", port = "any", host = "any" }}, {{ proto = "tcp", port = {port}, host = "any" }},
                     {{ proto = "udp", port = {port}, host = "any" }} ]

[dataplane]
workers = 2
"""
IPS = {"a": "10.4.0.1", "b": "10.4.0.2"}
PORTS = {"a": 7100, "b": 7000}
FLOWS = 12


def sh(*args: str, timeout: float = 60) -> str:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {p.stdout}{p.stderr}")
    return p.stdout


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _gro_on(ns: str, dev: str) -> None:
    """GRO on the underlay veth, as a NIC has it (a veth has it off): the kernel may then join
    datagrams of several counter partitions into one read, which the workers must sort out."""
    from pyroute2 import netns as pr_netns
    from pyroute2.ethtool import Ethtool

    pr_netns.pushns(ns)
    try:
        e = Ethtool()
        try:
            features = e.get_features(dev)
            features.features["rx-gro"].enable = True
            e.set_features(dev, features)
        finally:
            e.close()
    finally:
        pr_netns.popns()


class Lab:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.ns = {h: f"dpw{os.getpid() % 100000}-{h}" for h in "ab"}
        self.procs: list[subprocess.Popen] = []
        self.up_at = 0.0

    def weft(self, host: str, *args: str) -> str:
        return sh(*WEFT, "--state-dir", str(self.tmp / host), *args)

    def status(self, host: str) -> dict:
        return json.loads(self.weft(host, "status", "--json"))

    def slots(self, host: str) -> list[dict]:
        return self.status(host)["dataplane"]["workers"]["slots"]

    def build(self) -> None:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        a, b = self.ns["a"], self.ns["b"]
        sh("ip", "-n", a, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", b)
        for h, ns in self.ns.items():
            sh("ip", "-n", ns, "addr", "add", f"10.252.0.{1 if h == 'a' else 2}/24", "dev", "u0")
            sh("ip", "-n", ns, "link", "set", "u0", "up")
            _gro_on(ns, "u0")
        owner = self.tmp / "owner"
        sh(*WEFT, "--state-dir", str(owner), "init")
        sh(*WEFT, "--state-dir", str(owner), "net", "create", "dpw", "--ipv4", "10.4.0.0/24")
        for h in "ab":
            self.weft(h, "init")
            node = json.loads(self.weft(h, "id", "--json"))["node_id"]
            cert = self.tmp / f"{h}.cert"
            sh(*WEFT, "--state-dir", str(owner), "net", "sign", "dpw", "--node", node, "--ip", IPS[h], "-o", str(cert))
            self.weft(h, "net", "join", str(cert))
            with open(self.tmp / h / "config.toml", "a") as f:
                f.write(FIREWALL.format(port=PORTS[h]))
        for h, peer in (("b", None), ("a", "10.252.0.2")):
            args = ["ip", "netns", "exec", self.ns[h], *WEFT, "--state-dir", str(self.tmp / h), "up",
                    "--listen", f"10.252.0.{1 if h == 'a' else 2}", "--port", "4500"]
            args += ["--peer", f"{peer}:4500"] if peer else []
            log = open(self.tmp / f"{h}.log", "w")
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=log))
            wait_for(lambda h=h: (self.tmp / h / "control.sock").exists(), 30, f"{h}'s control socket")
        wait_for(lambda: subprocess.run(["ip", "netns", "exec", a, "ping", "-c", "1", "-W", "1", IPS["b"]],
                                        capture_output=True).returncode == 0, 40, "a ping through the tunnel")
        self.up_at = time.monotonic()
        # Both ends know the other runs as many slots, and the workers hold the session's keys.
        for h in "ab":
            wait_for(lambda h=h: self.status(h)["dataplane"]["workers"]["peers_with_workers"] == 1
                     and self.slots(h)[1].get("sessions", 0) >= 1, 40, f"{h}'s worker to get the peer's keys")
        for h in "ab":
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.ns[h], sys.executable, TRAFFIC, "serve",
                                                IPS[h], str(PORTS[h])]))
        for h in "ab":  # a client started before the echo server listens would be refused, not slow
            wait_for(lambda h=h: self._listening(h), 30, f"{h}'s echo server")

    def _listening(self, host: str) -> bool:
        p = subprocess.run(["ip", "netns", "exec", self.ns[host], "ss", "-Hln", "sport", "=", f":{PORTS[host]}"],
                           capture_output=True, text=True)
        return sum(1 for line in p.stdout.splitlines() if line.startswith(("tcp", "udp"))) >= 2

    def traffic(self, src: str, dst: str) -> dict:
        out = sh("ip", "netns", "exec", self.ns[src], sys.executable, TRAFFIC, "client", IPS[dst], str(PORTS[dst]),
                 str(FLOWS), timeout=120)
        got = json.loads(out.strip().splitlines()[-1])
        if got != {"tcp_ok": FLOWS, "udp_ok": FLOWS, "flows": FLOWS}:
            print(out)
            self.diagnose()
        return got

    def diagnose(self) -> None:
        """Where packets went, for a failure's report: both daemons' counters and the kernel's."""
        for h in "ab":
            try:
                st = self.status(h)
                print(h, "transport", st["transport"])
                print(h, "vpn", st["vpn"], "tun_write_errors", st["tun_write_errors"])
                print(h, "networks", [{k: v for k, v in n.items() if k != "members"} for n in st["networks"]])
                print(h, "workers", json.dumps(st["dataplane"]["workers"]))
            except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the failure
                print(h, "status failed:", exc)
            for cmd in (["ip", "-s", "link"], ["cat", "/proc/net/snmp"]):
                p = subprocess.run(["ip", "netns", "exec", self.ns[h], *cmd], capture_output=True, text=True)
                print(h, " ".join(cmd), p.stdout)

    def logs(self) -> str:
        return "".join((self.tmp / f"{h}.log").read_text()[-3000:] for h in "ab" if (self.tmp / f"{h}.log").exists())

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
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("dpw"))
    try:
        lab.build()
        yield lab
    except BaseException:
        print(lab.logs())
        raise
    finally:
        lab.close()


def _carried(slot: dict) -> bool:
    return slot.get("packets_out", 0) > 0 and slot.get("packets_in", 0) > 0


def test_tcp_and_udp_cross_both_ways_and_flows_spread_over_the_workers(lab):
    assert lab.traffic("a", "b") == {"tcp_ok": FLOWS, "udp_ok": FLOWS, "flows": FLOWS}
    assert lab.traffic("b", "a") == {"tcp_ok": FLOWS, "udp_ok": FLOWS, "flows": FLOWS}
    time.sleep(1.5)  # the workers report every second
    for h in "ab":
        slots = lab.slots(h)
        assert [s["slot"] for s in slots] == [0, 1]
        assert _carried(slots[0]) and _carried(slots[1]), (h, slots)  # flows on both, in both directions
        assert slots[1]["flows"] > 0  # the worker's own connection tracking admitted replies
        assert slots[1]["auth_failures"] == 0 and slots[1]["replays_dropped"] == 0
        # No piece is dropped for belonging to another process's partition: pieces that UDP GRO
        # joined behind another partition's are handed to their owner (runtime/dpworkers.py).
        handoff = lab.status(h)["dataplane"]["workers"]["handoff"]
        assert slots[1]["foreign_dropped"] == 0 and slots[1]["handoff_lost"] == 0 and handoff["lost"] == 0
        print(h, "pieces handed over: main", handoff["handed"], "worker", slots[1]["handoff_handed"])


def test_a_killed_worker_is_restarted_and_traffic_goes_on(lab):
    before = lab.status("a")["dataplane"]["workers"]
    old = before["slots"][1]["pid"]
    os.kill(old, signal.SIGKILL)
    st = wait_for(lambda: (s := lab.status("a")["dataplane"]["workers"])["restarts"] == before["restarts"] + 1
                  and len(s["slots"]) == 2 and s["slots"][1]["pid"] != old and s, 10, "the worker's restart")
    assert "data-plane worker died" in (lab.tmp / "a.log").read_text()
    assert st["slots"][1]["pid"] != old
    wait_for(lambda: lab.slots("a")[1].get("sessions", 0) >= 1, 10, "the new worker's keys")
    assert lab.traffic("a", "b") == {"tcp_ok": FLOWS, "udp_ok": FLOWS, "flows": FLOWS}
    time.sleep(1.5)
    assert _carried(lab.slots("a")[1])  # the new worker process carries flows again


def test_after_a_rekey_the_workers_carry_on_with_the_new_keys(lab):
    wait = lab.up_at + 135 - time.monotonic()  # sessions rekey after 120 s (the responder's 10 s later)
    if wait > 0:
        time.sleep(wait)
    assert lab.traffic("a", "b") == {"tcp_ok": FLOWS, "udp_ok": FLOWS, "flows": FLOWS}
    peers = json.loads(lab.weft("a", "peers", "--json"))
    assert any(p["rekeys"] >= 1 for p in peers), peers
    time.sleep(1.5)
    for h in "ab":
        w = lab.slots(h)[1]
        assert w["key_installs"] >= 2 and _carried(w), (h, w)
        assert w["auth_failures"] == 0 and w["expired_dropped"] == 0
