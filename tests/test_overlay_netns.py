"""The overlay interface end to end: real `weft up` daemons in network namespaces the test creates.

No private network is configured anywhere. Topology (names carry this process's pid; all removed at the end):

    hub:  bridge br0 --- A (10.253.0.1)  the seed
                     --- B (10.253.0.2)  joins through A
                     --- C (10.253.0.3)  joins through A; allows tcp 5001 and 5201 inbound (weft allow)
                     --- D (10.253.0.4)  joins through A; later puts C's address on its own interface
    lan:  bridge br0 --- E (10.254.0.1)  no --peer: LAN discovery on u0
                     --- F (10.254.0.2)  no --peer: LAN discovery on u0

A never hears of C's address from anyone: it resolves it through the DHT. Needs root, /dev/net/tun, `ip`
and `ping` (iputils); iperf3 for the throughput check. Skipped, with the reason, otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_vpn_netns import TOOL, WEFT, in_ns, sh, wait_for, weft

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip") and shutil.which("ping")),
        reason="needs root, /dev/net/tun, the ip command and ping (the test makes its own namespaces)",
    ),
]

HOSTS = {"A": ("hub", "10.253.0.1"), "B": ("hub", "10.253.0.2"), "C": ("hub", "10.253.0.3"),
         "D": ("hub", "10.253.0.4"), "E": ("lan", "10.254.0.1"), "F": ("lan", "10.254.0.2")}
DISCOVERY = '\n[overlay]\ndiscovery.interfaces = ["u0"]\ndiscovery.interval = 1\n'


class Site:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.tag = f"wo{os.getpid() % 100000}"
        self.ns: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.servers: list[subprocess.Popen] = []
        self.state: dict[str, Path] = {}
        self.addr: dict[str, str] = {}

    def name(self, host: str) -> str:
        return f"{self.tag}{host}"

    def add_ns(self, host: str) -> str:
        ns = self.name(host)
        sh("ip", "netns", "add", ns)
        self.ns.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def build(self) -> None:
        for bridge in ("hub", "lan"):
            ns = self.add_ns(bridge)
            sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", ns, "link", "set", "br0", "up")
        for host, (bridge, ip) in HOSTS.items():
            ns = self.add_ns(host)
            outer = f"{self.tag}{host}h"
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "u0")
            sh("ip", "link", "set", "u0", "netns", ns)
            sh("ip", "link", "set", outer, "netns", self.name(bridge))
            sh("ip", "-n", self.name(bridge), "link", "set", outer, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "u0")
            sh("ip", "-n", ns, "link", "set", "u0", "up")
            st = self.state[host] = self.tmp / host
            weft(st, "init")
            self.addr[host] = json.loads(weft(st, "id", "--json"))["address"]
            if host in "EF":
                with open(st / "config.toml", "a") as f:
                    f.write(DISCOVERY)
        # C offers two services before it starts: saved rules, in force at start.
        weft(self.state["C"], "allow", "tcp", "5001")
        weft(self.state["C"], "allow", "tcp", "5201")

    def up(self, host: str, peer: str | None = None) -> None:
        ip = HOSTS[host][1]
        args = ["ip", "netns", "exec", self.name(host), *WEFT, "--state-dir", str(self.state[host]), "up",
                "--listen", ip, "--port", "4500", "--log-format", "json"]
        if host in "EF":
            args[args.index("--listen") + 1] = "0.0.0.0"
        if peer:
            args += ["--peer", peer]
        log = open(self.tmp / f"{host}.log", "w")
        self.procs[host] = subprocess.Popen(args, stdout=log, stderr=log)
        wait_for(lambda: (self.state[host] / "control.sock").exists(), 20, f"{host}'s control socket")

    def stop(self, host: str) -> None:
        p = self.procs[host]
        p.send_signal(signal.SIGTERM)
        p.wait(15)

    def serve(self, host: str, port: int, tag: str) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", self.name(host), *TOOL, "serve", str(port), tag, "::"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.servers.append(p)
        assert p.stdout.readline().strip() == "listening"

    def connect(self, src: str, dst: str, port: int, nbytes: int, timeout: float = 5.0) -> subprocess.CompletedProcess:
        return in_ns(self.name(src), *TOOL, "connect", self.addr[dst], str(port), str(nbytes), str(timeout))

    def status(self, host: str) -> dict:
        return json.loads(weft(self.state[host], "status", "--json"))

    def close(self) -> None:
        procs = list(self.procs.values()) + self.servers
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for ns in reversed(self.ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("overlay"))
    try:
        s.build()
        s.up("A")
        for host in "BCD":
            s.up(host, "10.253.0.1:4500")
        s.up("E")
        s.up("F")
        s.serve("C", 5001, "C")
        s.serve("C", 5002, "C-5002")
        yield s
    finally:
        s.close()


def ping6(site: Site, src: str, dst: str, timeout: float = 20.0) -> str:
    # The first echo may go while the sender looks the address up.
    return wait_for(lambda: (r := in_ns(site.name(src), "ping", "-6", "-c", "1", "-W", "1", site.addr[dst]))
                    .returncode == 0 and r.stdout, timeout, f"an echo reply from {dst} to {src}")


def test_each_node_has_its_key_derived_address_and_the_overlay_route(site):
    for host in "ABCD":
        link = json.loads(sh("ip", "-n", site.name(host), "-j", "addr", "show", "weft0").stdout)[0]
        assert {"local": site.addr[host], "prefixlen": 32} in [
            {"local": a["local"], "prefixlen": a["prefixlen"]} for a in link["addr_info"]]
        assert link["mtu"] == 1280
        routes = json.loads(sh("ip", "-n", site.name(host), "-6", "-j", "route", "show", "fd77:6566::/32").stdout)
        assert routes and routes[0]["dev"] == "weft0"
    st = site.status("A")
    assert st["overlay"]["enabled"] and st["overlay"]["interface"] == "weft0"
    text = weft(site.state["A"], "status")
    assert f"overlay:         weft0 {site.addr['A']} mtu 1280" in text
    assert st["networks"] == []  # no private network anywhere


def test_ping6_tcp_and_iperf3_from_a_to_c_by_address(site):
    out = ping6(site, "A", "C")
    assert f"from {site.addr['C']}" in out
    a = site.status("A")["overlay"]
    assert a["cache"]["found"] >= 1  # C's address was resolved through the DHT, not configured
    r = site.connect("A", "C", 5001, 4 << 20)
    assert r.returncode == 0 and r.stdout.strip() == f"C:{4 << 20}", r.stdout
    c = site.status("C")["overlay"]
    assert c["peers"][site.status("A")["node_id"]]["bytes_in"] > 4 << 20
    if not shutil.which("iperf3"):
        pytest.skip("iperf3 is not installed (.ci/run installs it)")
    srv = subprocess.Popen(["ip", "netns", "exec", site.name("C"), "iperf3", "-s", "-1", "-p", "5201"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    site.servers.append(srv)
    wait_for(lambda: "5201" in in_ns(site.name("C"), "ss", "-Hltn").stdout, 10, "iperf3 listening in C")
    r = in_ns(site.name("A"), "iperf3", "-c", site.addr["C"], "-p", "5201", "-t", "2", "-J", timeout=60)
    result = json.loads(r.stdout)
    assert "error" not in result, result.get("error")
    assert result["end"]["sum_received"]["bytes"] > 1 << 20


def test_inbound_is_denied_unless_allowed_and_weft_allow_and_deny_act_at_once(site):
    ping6(site, "A", "C")
    r = site.connect("A", "C", 5002, 1000, timeout=2)
    assert r.returncode == 1 and "timed out" in r.stdout
    assert site.status("C")["overlay"]["drops"].get("firewall", 0) >= 1
    out = weft(site.state["C"], "allow", "tcp", "5002", "--from", site.addr["A"])
    assert f"{site.addr['A']}/128" in out
    assert site.connect("A", "C", 5002, 1000).stdout.strip() == "C-5002:1000"
    assert site.connect("B", "C", 5002, 1000, timeout=2).returncode == 1  # the rule names A only
    weft(site.state["C"], "deny", "tcp", "5002", "--from", site.addr["A"])
    assert site.connect("A", "C", 5002, 1000, timeout=2).returncode == 1
    rules = json.loads(weft(site.state["C"], "rules", "--json"))
    assert [r["port"] for r in rules["saved"]] == [5001, 5201]


def test_a_node_that_claims_another_nodes_address_never_receives_its_traffic(site):
    ping6(site, "A", "C")
    # D (another key) puts C's address on its own interface and serves the same port.
    sh("ip", "-n", site.name("D"), "addr", "add", f"{site.addr['C']}/128", "dev", "weft0", "nodad")
    site.serve("D", 5001, "D")
    # D's kernel may now send from C's address; its own node refuses to carry that.
    in_ns(site.name("D"), "ping", "-6", "-c", "2", "-W", "1", "-I", site.addr["C"], site.addr["A"])
    assert site.status("D")["overlay"]["drops"].get("bad-source", 0) >= 1
    for _ in range(3):
        assert site.connect("A", "C", 5001, 1000).stdout.strip() == "C:1000"
    # With C gone, only D claims the address: A's traffic still never reaches D.
    before = site.status("D")["overlay"]["packets_in"]
    site.stop("C")
    for _ in range(3):
        r = site.connect("A", "C", 5001, 1000, timeout=3)
        assert r.returncode == 1 and "D:" not in r.stdout, r.stdout
    assert in_ns(site.name("A"), "ping", "-6", "-c", "2", "-W", "2", site.addr["C"]).returncode != 0
    d = site.status("D")["overlay"]
    assert d["packets_in"] == before and site.status("A")["overlay"]["peers"].get(site.status("D")["node_id"]) is None


def test_two_nodes_on_one_lan_find_each_other_without_a_peer(site):
    f_id = json.loads(weft(site.state["F"], "id", "--json"))["node_id"]
    wait_for(lambda: any(p["node_id"] == f_id for p in site.status("E")["sessions"]), 20, "E's session with F")
    out = ping6(site, "E", "F")
    assert f"from {site.addr['F']}" in out
    e = site.status("E")
    assert e["discovery"]["joined"] + site.status("F")["discovery"]["joined"] >= 1
    assert e["dht"]["contacts"] >= 1
