"""Operating private networks: metrics under load and config reload, with real daemons in namespaces.

Topology (namespaces named with this process's pid, removed at the end):

    A (10.251.0.1) --- veth --- B (10.251.0.2)
    network "lab"  10.1.0.0/24: A = .1, B = .2 (both from the start)
    network "lab2" 10.2.0.0/24: A = .1 from the start; B joins and leaves while running

A serves metrics on its own loopback (127.0.0.1:9477 inside A). Needs root,
/dev/net/tun and the ip command; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opstools import WEFT, documented_metrics, wait_for, weft
from weftnet.runtime.control import call

HERE = Path(__file__).resolve().parent
TOOL = [sys.executable, str(HERE / "netns_tool.py")]

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")),
        reason="needs root, /dev/net/tun and the ip command (the test makes its own namespaces)",
    ),
]

LAB_A = """
[metrics]
listen = "127.0.0.1:9477"
[networks.lab]
firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]
firewall.inbound = [ { proto = "icmp", port = "any", host = "any" } ]
[networks.lab2]
firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]
firewall.inbound = [ { proto = "any", port = "any", host = "any" } ]
"""
OPEN_5001 = 'firewall.inbound = [ { proto = "icmp", port = "any", host = "any" }, { proto = "tcp", port = 5001, host = "any" } ]'
LAB_B = """
[networks.lab]
firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]
firewall.inbound = [ { proto = "any", port = "any", host = "any" } ]
"""


def sh(*args: str) -> None:
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise AssertionError(f"{' '.join(args)}: {p.stderr.strip()}")


def in_ns(ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=timeout)


class Site:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.tag = f"wo{os.getpid() % 100000}"
        self.ns = {h: f"{self.tag}{h}" for h in "AB"}
        self.state = {h: tmp / h for h in "AB"}
        self.procs: dict[str, subprocess.Popen] = {}
        self.made: list[str] = []
        self.servers: list[subprocess.Popen] = []

    def build(self) -> None:
        for h, ns in self.ns.items():
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"{self.tag}a", "netns", self.ns["A"], "type", "veth", "peer", "name", f"{self.tag}b",
           "netns", self.ns["B"])
        for h, i in (("A", 1), ("B", 2)):
            dev = f"{self.tag}{h.lower()}"
            sh("ip", "-n", self.ns[h], "addr", "add", f"10.251.0.{i}/24", "dev", dev)
            sh("ip", "-n", self.ns[h], "link", "set", dev, "up")
        owner = self.tmp / "owner"
        weft(owner, "init")
        weft(owner, "net", "create", "lab", "--ipv4", "10.1.0.0/24")
        weft(owner, "net", "create", "lab2", "--ipv4", "10.2.0.0/24")
        for h, i in (("A", 1), ("B", 2)):
            st = self.state[h]
            weft(st, "init")
            node = weft(st, "id", "-q").stdout.strip()
            for net in ("lab", "lab2"):
                cert = self.tmp / f"{h}-{net}.cert"
                weft(owner, "net", "sign", net, "--node", node, "--ip", f"10.{1 if net == 'lab' else 2}.0.{i}",
                     "-o", str(cert))
                if h == "A" or net == "lab":
                    weft(st, "net", "join", str(cert))
            with open(st / "config.toml", "a") as f:
                f.write(LAB_A if h == "A" else LAB_B)

    def up(self, h: str) -> None:
        i = "AB".index(h) + 1
        args = ["ip", "netns", "exec", self.ns[h], *WEFT, "--state-dir", str(self.state[h]), "up",
                "--listen", f"10.251.0.{i}", "--port", "4500", "--log-format", "json"]
        if h == "B":
            args += ["--peer", "10.251.0.1:4500"]
        log = open(self.tmp / f"{h}.log", "a")
        self.procs[h] = subprocess.Popen(args, stdout=log, stderr=log)
        wait_for(lambda: (self.state[h] / "control.sock").exists(), 20, f"{h}'s control socket")

    def status(self, h: str) -> dict:
        return call(self.state[h] / "control.sock", "status")

    def log(self, h: str) -> list[dict]:
        return [json.loads(x) for x in (self.tmp / f"{h}.log").read_text().splitlines() if x.startswith("{")]

    def serve(self, h: str, port: int) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[h], *TOOL, "serve", str(port), h],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "listening"
        self.servers.append(p)

    def close(self) -> None:
        for p in [*self.procs.values(), *self.servers]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.procs.values(), *self.servers]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("ops-netns"))
    try:
        s.build()
        s.up("A")
        s.up("B")
        wait_for(lambda: any(n["members"] >= 1 for n in s.status("B")["networks"]) or
                 in_ns(s.ns["B"], *TOOL, "ping", "10.1.0.1", "1").returncode == 0, 30, "B to reach A over lab")
        yield s
    finally:
        s.close()


def scrape_in(ns: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    code = ("import urllib.request, sys; "
            "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9477/metrics', timeout=10).read().decode())")
    p = in_ns(ns, sys.executable, "-c", code)
    assert p.returncode == 0, p.stderr
    return {f.name: f for f in text_string_to_metric_families(p.stdout)}


def test_metrics_under_load_match_the_doc(site):
    b_id = site.status("B")["node_id"]
    # Load: an ICMP flood over the VPN, an overlay ping flood, a DHT workload, refused TCP.
    pinger = subprocess.Popen(["ip", "netns", "exec", site.ns["B"], *TOOL, "ping", "10.1.0.1", "300"],
                              stdout=subprocess.DEVNULL)
    flood = subprocess.Popen(["ip", "netns", "exec", site.ns["A"], *WEFT, "--state-dir", str(site.state["A"]),
                              "ping", "-c", "100", "-i", "0.01", b_id], stdout=subprocess.DEVNULL)
    sock = site.state["A"] / "control.sock"
    keys = [call(sock, "put", value=f"record {i}")["key"] for i in range(30)]
    for k in keys:
        assert call(site.state["B"] / "control.sock", "get", key=k)["ok"]
    assert in_ns(site.ns["B"], *TOOL, "connect", "10.1.0.1", "5001", "10", "1").returncode == 1  # firewall: dropped
    fams = scrape_in(site.ns["A"])  # during the floods
    assert pinger.wait(120) == 0 and flood.wait(120) == 0
    fams = scrape_in(site.ns["A"])

    exposed = {}
    for name, fam in fams.items():
        exposed[name + "_total" if fam.type == "counter" else name] = fam
    documented = documented_metrics("Every metric")  # BGP, EVPN, VRF and layer-2 tables: their own tests
    assert set(exposed) == set(documented), (
        f"missing from the scrape: {sorted(set(documented) - set(exposed))}; "
        f"missing from docs/metrics.md: {sorted(set(exposed) - set(documented))}")
    for name, typ in documented.items():
        assert exposed[name].type == typ, f"{name}: {exposed[name].type}, documented as {typ}"
        assert exposed[name].samples, f"{name} has no samples under load"

    def sample(name, **labels):
        for s in exposed[name].samples:
            if all(s.labels.get(k) == v for k, v in labels.items()) and s.name.endswith(("_total", "_count")) == name.endswith("_total"):
                return s.value
        raise AssertionError(f"no sample of {name} with {labels}")

    assert sample("weftnet_network_packets_total", network="lab", direction="in") >= 300
    assert sample("weftnet_network_drops_total", network="lab", reason="firewall") >= 1
    assert sample("weftnet_dht_record_events_total", event="stored") >= 30
    gets = [s for s in exposed["weftnet_dht_operation_duration_seconds"].samples
            if s.name.endswith("_count") and s.labels["kind"] in ("store", "get")]
    assert sum(s.value for s in gets) >= 30
    assert exposed["weftnet_peer_rtt_seconds"].samples[0].value > 0
    assert sample("weftnet_sessions") >= 1 and sample("weftnet_network_members", network="lab") >= 1


def test_reload_firewall_networks_and_tun_settings_without_dropping_sessions(site):
    a, b = site.state["A"], site.state["B"]
    site.serve("A", 5001)
    age = {p["node_id"]: p["session_age"] for p in site.status("A")["sessions"]}
    assert in_ns(site.ns["B"], *TOOL, "connect", "10.1.0.1", "5001", "100", "2").returncode == 1

    # New firewall rules on A: TCP 5001 is let in, on the same TUN.
    conf = (a / "config.toml").read_text()
    first_inbound = 'firewall.inbound = [ { proto = "icmp", port = "any", host = "any" } ]'
    (a / "config.toml").write_text(conf.replace(first_inbound, OPEN_5001, 1))
    out = weft(a, "reload").stdout
    assert "network lab: new firewall rules (2 inbound, 1 outbound), same TUN" in out, out
    r = in_ns(site.ns["B"], *TOOL, "connect", "10.1.0.1", "5001", "100", "5")
    assert r.returncode == 0 and "A:100" in r.stdout

    # A broken file: refused, the rules stay.
    (a / "config.toml").write_text(conf.replace(first_inbound, 'firewall.inbound = [ { proto = "tcpp" } ]', 1))
    r = weft(a, "reload", check=False)
    assert r.returncode == 1 and "[networks.lab] firewall" in r.stderr and "keeps its running config" in r.stderr
    assert in_ns(site.ns["B"], *TOOL, "connect", "10.1.0.1", "5001", "100", "5").returncode == 0

    # B joins lab2 while running: `weft net join` + SIGHUP brings its TUN up.
    weft(b, "net", "join", str(site.tmp / "B-lab2.cert"))
    site.procs["B"].send_signal(1)  # SIGHUP
    wait_for(lambda: any(n["network"] == "lab2" for n in site.status("B")["networks"]), 20, "lab2 up on B")
    wait_for(lambda: in_ns(site.ns["B"], *TOOL, "ping", "10.2.0.1", "1").returncode == 0, 30, "a ping over lab2")
    # A TUN setting of lab on B: that network restarts, lab2 and the session do not.
    (b / "config.toml").write_text((b / "config.toml").read_text().replace("[networks.lab]\n", "[networks.lab]\nmtu = 1400\n"))
    out = weft(b, "reload").stdout
    assert "network lab: restarted (mtu 1280 -> 1400)" in out, out
    assert "mtu 1400" in in_ns(site.ns["B"], "ip", "link", "show", "wn-lab").stdout
    wait_for(lambda: in_ns(site.ns["B"], *TOOL, "ping", "10.1.0.1", "1").returncode == 0, 30, "lab after its restart")
    # B leaves lab2: its TUN goes, lab stays.
    weft(b, "net", "leave", "lab2")
    out = weft(b, "reload").stdout
    assert "network lab2: left, its TUN is gone" in out
    assert in_ns(site.ns["B"], "ip", "link", "show", "wn-lab2").returncode != 0
    assert in_ns(site.ns["B"], *TOOL, "ping", "10.1.0.1", "2").returncode == 0

    # Through all of it the overlay session A-B stayed up.
    after = {p["node_id"]: p["session_age"] for p in site.status("A")["sessions"]}
    assert set(age) <= set(after) and all(after[k] > age[k] for k in age)
    for h in "AB":
        assert not [e for e in site.log(h) if e["event"] == "session down"], h
