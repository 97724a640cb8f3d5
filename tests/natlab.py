"""A NAT lab of network namespaces with real `weft up` daemons (tests/test_reach_netns.py, bench/reach/).

Topology (every name carries a per-run tag; everything is deleted by ``close``)::

    public segment: namespace "pub" with bridge br0, 198.18.0.0/15 (RFC 2544's benchmarking range)
      P1 198.18.1.1     public node, relay ([relay] enabled, TCP on 443), the bootstrap
      P2 198.18.2.1     public node
      router Rk  wan 198.18.(10+k).1 --- lan 10.0.k.1/24 --- client k 10.0.k.2/24

Every public address is in a /24 of its own, as on the Internet (the DHT keeps at most
``per_prefix`` contacts of one /24 in a bucket).

Each router NATs with nftables (../shared/LAB.md):

* ``eim``: plain ``masquerade`` — endpoint-independent mapping, address-and-port filtering
  ("port-restricted cone"; keeps the port when it can);
* ``edm``: ``masquerade random`` — endpoint-dependent mapping ("symmetric");
* ``udp-blocked``: ``eim`` and every UDP packet from the LAN dropped: TCP only.

and every router drops new connections *to itself* on its WAN (``iifname "wan" ct state new
drop``) — without it a peer's first punch packet makes a conntrack entry on the router and
masquerade then remaps the client (the trap LAB.md describes). Clients are members of one
private network ``lab`` (10.77.0.0/24, client k at 10.77.0.k) whose firewall allows all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOL = [sys.executable, str(HERE / "netns_tool.py")]
WEFT = [sys.executable, "-m", "weftnet.cli.main"]

NFT_ROUTER = """\
table ip nat {{
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade{random}
  }}
}}
table inet filter {{
  chain input_wan {{
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }}
  chain forwarded {{
    type filter hook forward priority 0; policy accept;
{block}  }}
}}
"""

ALLOW_ALL = """
[networks.lab]
firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]
firewall.inbound = [ { proto = "any", port = "any", host = "any" } ]
"""


def sh(*args: str, check: bool = True, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {p.stderr.strip() or p.stdout.strip()}")
    return p


def wait_for(pred, timeout: float, what: str, every: float = 0.2, explain=None):
    """Poll ``pred`` until it is true; on a timeout ``explain()`` (if given) says what was seen."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    seen = f"; {explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{seen}")


class NatLab:
    def __init__(self, tmp: Path, tag: str | None = None):
        self.tmp = tmp
        self.tag = tag or f"nl{os.getpid() % 100000}"
        self.ns: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.extra: list[subprocess.Popen] = []
        self.state: dict[str, Path] = {}
        self.ip: dict[str, str] = {}  # node name -> its underlay address
        self.kind: dict[str, str] = {}
        self.vpn_ip: dict[str, str] = {}
        self.node_id: dict[str, str] = {}
        self.relay: set[str] = set()
        self.wan: dict[str, str] = {}  # client -> its router's public address
        self._k = 0
        self.logs: dict[str, Path] = {}

    # -- topology -------------------------------------------------------------
    def name(self, host: str) -> str:
        return f"{self.tag}{host}"

    def _ns(self, host: str) -> str:
        ns = self.name(host)
        sh("ip", "netns", "add", ns)
        self.ns.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def _veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        tmp_a, tmp_b = f"{self.tag}x{len(self.ns)}a", f"{self.tag}x{len(self.ns)}b"
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", ns_a)
        sh("ip", "link", "set", tmp_b, "netns", ns_b)
        sh("ip", "-n", ns_a, "link", "set", tmp_a, "name", name_a)
        sh("ip", "-n", ns_b, "link", "set", tmp_b, "name", name_b)

    def build_public(self) -> None:
        pub = self._ns("pub")
        sh("ip", "-n", pub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", pub, "link", "set", "br0", "up")

    def _to_bridge(self, ns: str, ifname: str, addr: str) -> None:
        port = f"p{len(self.ns)}"
        self._veth(ns, ifname, self.name("pub"), port)
        sh("ip", "-n", self.name("pub"), "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", addr, "dev", ifname)
        sh("ip", "-n", ns, "link", "set", ifname, "up")

    def add_public(self, host: str, index: int, relay: bool = False) -> None:
        ns = self._ns(host)
        self._to_bridge(ns, "eth0", f"198.18.{index}.1/15")
        self.ip[host] = f"198.18.{index}.1"
        self.kind[host] = "public"
        if relay:
            self.relay.add(host)

    def add_client(self, host: str, kind: str) -> None:
        self._k += 1
        k = self._k
        router = self._ns(f"R{host}")
        ns = self._ns(host)
        self._to_bridge(router, "wan", f"198.18.{10 + k}.1/15")
        self.wan[host] = f"198.18.{10 + k}.1"
        self._veth(router, "lan", ns, "eth0")
        sh("ip", "-n", router, "addr", "add", f"10.0.{k}.1/24", "dev", "lan")
        sh("ip", "-n", router, "link", "set", "lan", "up")
        sh("ip", "-n", ns, "addr", "add", f"10.0.{k}.2/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"10.0.{k}.1")
        sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = NFT_ROUTER.format(random=" random" if kind == "edm" else "",
                                  block='    iifname "lan" meta l4proto udp drop\n' if kind == "udp-blocked" else "")
        sh("ip", "netns", "exec", router, "nft", "-f", "-", input=rules)
        self.ip[host] = f"10.0.{k}.2"
        self.kind[host] = kind
        self.vpn_ip[host] = f"10.77.0.{k}"

    def router(self, host: str) -> str:
        return self.name(f"R{host}")

    def flush_conntrack(self, host: str) -> None:
        """``conntrack -F`` in a client's router: every mapping forgotten (a NAT rebinding)."""
        sh("ip", "netns", "exec", self.router(host), "conntrack", "-F", check=False)

    # -- nodes ------------------------------------------------------------------
    def weft(self, host: str, *args: str, timeout: float = 60, check: bool = True) -> str:
        """``weft ARGS`` on ``host``; its output (with ``check``, an AssertionError if it fails)."""
        p = subprocess.run([*WEFT, "--state-dir", str(self.state[host]), *args], capture_output=True, text=True,
                           timeout=timeout)
        if not check:
            return p.stdout + p.stderr
        if p.returncode:
            raise AssertionError(f"weft {' '.join(args)} on {host} failed: {p.stdout}{p.stderr}")
        return p.stdout

    def init_nodes(self) -> None:
        """Identities, default configs and the private network's certificates, through the library
        (what ``weft init`` and ``weft net create/sign/join`` do; the CLI path has its own tests)."""
        import random

        from weftnet.core.puzzle import generate_identity
        from weftnet.runtime.config import DEFAULT_CONFIG, DEFAULT_ID_DIFFICULTY
        from weftnet.runtime.keystore import ensure_private_dir, write_identity
        from weftnet.runtime.netstate import create_network, join_network, sign_member_cert
        from weftnet.runtime.paths import StatePaths

        now = time.time()
        rng = random.SystemRandom()
        owner = self.state["owner"] = self.tmp / "owner"
        ensure_private_dir(owner)
        create_network(owner, "lab", ["10.77.0.0/24"], now)
        for host in self.kind:
            st = self.state[host] = self.tmp / host
            ensure_private_dir(st)
            ident = generate_identity(rng, DEFAULT_ID_DIFFICULTY)  # the node-ID puzzle the default config asks
            write_identity(StatePaths(st).key, ident)
            self.node_id[host] = ident.node_id.text()
            # The lab has two public nodes: a new node's DHT hint credit (docs/security.md, item 6)
            # lets it try one stranger at a time, and a symmetric-NAT node whose first stranger is
            # a NATed peer may need minutes to meet P2, the second address it must hear its
            # mapping from. The lab's range is exempt, as a lab's should be; the defaults are not.
            text = DEFAULT_CONFIG.replace("exempt_prefixes = []", 'exempt_prefixes = ["198.18.0.0/15"]')
            assert "198.18.0.0/15" in text
            if host in self.relay:
                text = text.replace("[relay]\nenabled = false", "[relay]\nenabled = true")
                text = text.replace("\ntcp_port = 0 ", "\ntcp_port = 443 ")
                assert "enabled = true" in text and "tcp_port = 443" in text
            if host in self.vpn_ip:
                _, cert_text = sign_member_cert(owner, "lab", ident.node_id, [self.vpn_ip[host]], [], now, 30.0)
                join_network(st, cert_text, ident.node_id, now)
                text += ALLOW_ALL
            StatePaths(st).config.write_text(text)

    def up(self, host: str, peer: str | None = None, port: int = 4500) -> None:
        args = ["ip", "netns", "exec", self.name(host), *WEFT, "--state-dir", str(self.state[host]), "up",
                "--listen", "0.0.0.0", "--port", str(port), "--log-format", "json"]
        if peer:
            args += ["--peer", peer]
        log = self.logs[host] = self.tmp / f"{host}.log"
        with open(log, "w") as f:
            self.procs[host] = subprocess.Popen(args, stdout=f, stderr=f)
        wait_for(lambda: (self.state[host] / "control.sock").exists(), 30, f"{host}'s control socket")

    def control(self, host: str, op: str) -> dict | list:
        """What ``weft status --json`` / ``weft peers --json`` print: the control API's answer, asked directly."""
        from weftnet.runtime.control import call

        return call(self.state[host] / "control.sock", op, timeout=30)

    def status(self, host: str) -> dict:
        return self.control(host, "status")

    def peer_path(self, host: str, other: str) -> str | None:
        for p in self.control(host, "peers"):
            if p["node_id"] == self.node_id[other]:
                return p["path"]
        return None

    def relay_pairs(self, relay: str = "P1", field: str = "packets") -> dict[tuple[str, str], int]:
        """Packets (or ``field="bytes"``: bytes) the relay forwarded, per (sender, receiver) host name."""
        names = {v: k for k, v in self.node_id.items()}
        out = {}
        for row in self.status(relay)["reach"]["relay"]["pairs"]:
            out[(names.get(row["from"], row["from"]), names.get(row["to"], row["to"]))] = row[field]
        return out

    def log_events(self, host: str) -> list[dict]:
        out = []
        for line in self.logs[host].read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def in_ns(self, host: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name(host), *args], capture_output=True, text=True,
                              timeout=timeout)

    def serve(self, host: str, port: int, tag: str) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", self.name(host), *TOOL, "serve", str(port), tag],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.extra.append(p)
        assert p.stdout.readline().strip() == "listening"

    def close(self) -> None:
        procs = list(self.procs.values()) + self.extra
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
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
