"""The systems under test: how each one is installed-checked, versioned and brought up.

Every system brings up a tunnel between namespaces A and B of a `Topology` and returns an
`Overlay` with the address of B to which iperf3 connects. Processes are started with
`Topology.spawn`, so the topology stops them at teardown; files go in the per-system work
directory. Overlay subnets are distinct per system so rows cannot be confused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from netns import UNDERLAY_A, UNDERLAY_B, UNDERLAY_DEV, UNDERLAY_MTU, BenchError, Topology, run

REPO = Path(__file__).resolve().parents[2]
WEFT_DEFAULT = REPO / ".venv" / "bin" / "weft"


@dataclass
class Overlay:
    """What a system reports after setup: where to send traffic, and how it is configured."""
    server: str                      # overlay address of B (iperf3 server)
    dev: str                         # tunnel interface in A, whose counters must see the traffic
    mtu: int                         # MTU of the tunnel interface
    notes: dict = field(default_factory=dict)


def first_line(argv: list[str]) -> str:
    """First non-empty line of a command's output (stdout or stderr), for version strings."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (cp.stdout + "\n" + cp.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "unknown"


def deb_version(package: str) -> str | None:
    """Installed Debian package version, or None."""
    try:
        cp = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                            text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if cp.returncode != 0:
        return None
    return cp.stdout.strip() or None


def kernel_version() -> str:
    """Kernel release and iproute2 version, the 'version' of the in-kernel rows."""
    ip = first_line(["ip", "-V"]).replace("ip utility, ", "").split(",")[0]
    return f"kernel {os.uname().release}; {ip}"


def link_mtu(topo: Topology, side: str, dev: str) -> int:
    """Current MTU of `dev` in namespace `side`."""
    out = topo.exec(side, ["ip", "-o", "link", "show", dev]).stdout
    m = re.search(r"\bmtu (\d+)", out)
    if not m:
        raise BenchError(f"cannot read MTU of {dev}: {out.strip()}")
    return int(m.group(1))


def has_addr(topo: Topology, side: str, dev: str, addr: str) -> bool:
    """Does `dev` in namespace `side` carry `addr`?"""
    out = topo.exec(side, ["ip", "-o", "addr", "show", "dev", dev], check=False).stdout
    return f" {addr}/" in out


class System:
    """Base class: a name for --only, a title for the table, and the binaries it needs."""
    name = ""
    title = ""
    tools: tuple[str, ...] = ()
    package = ""  # Debian package whose version is recorded alongside the --version output

    def missing(self) -> list[str]:
        """Required executables that cannot be found."""
        return [t for t in self.tools if not (os.path.isabs(t) and os.access(t, os.X_OK)) and not shutil.which(t)]

    def version(self) -> str:
        text = self._version()
        deb = deb_version(self.package) if self.package else None
        return f"{text} (deb {deb})" if deb and deb not in text else text

    def _version(self) -> str:
        return "unknown"

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        raise NotImplementedError


# -- 1. raw veth ---------------------------------------------------------------------------------

class Veth(System):
    name = "veth"
    title = "raw veth (baseline)"
    tools = ("ip",)

    def _version(self) -> str:
        return kernel_version()

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        return Overlay(UNDERLAY_B, UNDERLAY_DEV, UNDERLAY_MTU, {"encryption": "none", "transport": "none"})


# -- 2. kernel VXLAN -----------------------------------------------------------------------------

class Vxlan(System):
    name = "vxlan"
    title = "kernel VXLAN"
    tools = ("ip",)
    VNI, PORT, MTU = 42, 4789, UNDERLAY_MTU - 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14

    def _version(self) -> str:
        return kernel_version()

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        for side, local, remote, inner in (("a", UNDERLAY_A, UNDERLAY_B, "10.201.0.1"),
                                           ("b", UNDERLAY_B, UNDERLAY_A, "10.201.0.2")):
            topo.exec(side, ["ip", "link", "add", "vx0", "type", "vxlan", "id", str(self.VNI),
                             "local", local, "remote", remote, "dstport", str(self.PORT),
                             "dev", UNDERLAY_DEV])
            topo.exec(side, ["ip", "link", "set", "vx0", "mtu", str(self.MTU), "up"])
            topo.exec(side, ["ip", "addr", "add", f"{inner}/24", "dev", "vx0"])
        topo.wait_ping("10.201.0.2", timeout=10)
        return Overlay("10.201.0.2", "vx0", link_mtu(topo, "a", "vx0"),
                       {"encryption": "none", "transport": f"UDP {self.PORT}, VNI {self.VNI}, unicast remote"})


# -- 3. wireguard-go -----------------------------------------------------------------------------

class WireguardGo(System):
    name = "wireguard-go"
    title = "wireguard-go (userspace)"
    tools = ("wireguard-go", "wg")
    package = "wireguard-go"
    PORT, MTU = 51820, 1420

    def _version(self) -> str:
        return f"{first_line(['wireguard-go', '--version'])}; {first_line(['wg', '--version']).split(' - ')[0]}"

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        # The UAPI socket lives in /var/run/wireguard/<ifname>.sock, which is shared by all
        # namespaces, so the interface names must be unique on the host.
        tag = os.getpid() % 100000
        ifs = {"a": f"wg{tag}a", "b": f"wg{tag}b"}
        inner = {"a": "10.202.0.1", "b": "10.202.0.2"}
        under = {"a": UNDERLAY_A, "b": UNDERLAY_B}
        keys = {}
        for side in "ab":
            priv = run(["wg", "genkey"]).stdout.strip()
            pub = run(["wg", "pubkey"], input=priv).stdout.strip()
            path = wd / f"{side}.key"
            path.write_text(priv + "\n")
            path.chmod(0o600)
            keys[side] = (path, pub)

        def remove_sockets() -> None:
            for name in ifs.values():
                Path("/var/run/wireguard", f"{name}.sock").unlink(missing_ok=True)
        topo.on_close(remove_sockets)

        for side in "ab":
            other = "b" if side == "a" else "a"
            topo.spawn(side, ["wireguard-go", "-f", ifs[side]], f"wireguard-go-{side}",
                       env={"LOG_LEVEL": "error"})
            sock = Path("/var/run/wireguard", f"{ifs[side]}.sock")
            topo.wait_for(sock.exists, f"{sock}", timeout=10)
            topo.exec(side, ["wg", "set", ifs[side], "listen-port", str(self.PORT),
                             "private-key", str(keys[side][0]),
                             "peer", keys[other][1], "endpoint", f"{under[other]}:{self.PORT}",
                             "allowed-ips", f"{inner[other]}/32"])
            topo.exec(side, ["ip", "addr", "add", f"{inner[side]}/24", "dev", ifs[side]])
            topo.exec(side, ["ip", "link", "set", ifs[side], "mtu", str(self.MTU), "up"])
        topo.wait_ping(inner["b"])
        return Overlay(inner["b"], ifs["a"], link_mtu(topo, "a", ifs["a"]),
                       {"encryption": "ChaCha20-Poly1305 (Noise IK, Curve25519)", "transport": f"UDP {self.PORT}"})


# -- 4. tinc -------------------------------------------------------------------------------------

class Tinc(System):
    name = "tinc"
    title = "tinc"
    tools = ("tincd",)
    package = "tinc"
    PORT, MTU = 655, 1400
    CIPHER, DIGEST = "aes-256-cbc", "sha256"

    def _version(self) -> str:
        return first_line(["tincd", "--version"])

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        inner = {"a": "10.203.0.1", "b": "10.203.0.2"}
        under = {"a": UNDERLAY_A, "b": UNDERLAY_B}
        dirs = {side: wd / f"tinc-{side}" for side in "ab"}
        for side in "ab":
            d = dirs[side]
            (d / "hosts").mkdir(parents=True)
            conf = [f"Name = node{side}", "Mode = router", "DeviceType = tun", "Interface = tinc0",
                    "AddressFamily = ipv4", f"BindToAddress = {under[side]}", f"Port = {self.PORT}",
                    f"Cipher = {self.CIPHER}", f"Digest = {self.DIGEST}", "PMTUDiscovery = no"]
            if side == "a":
                conf.append("ConnectTo = nodeb")
            (d / "tinc.conf").write_text("\n".join(conf) + "\n")
            (d / "hosts" / f"node{side}").write_text(
                f"Address = {under[side]} {self.PORT}\nSubnet = {inner[side]}/32\n"
                f"Cipher = {self.CIPHER}\nDigest = {self.DIGEST}\nPMTUDiscovery = no\n")
            up = d / "tinc-up"
            up.write_text("#!/bin/sh\n"
                          f"ip addr add {inner[side]}/24 dev \"$INTERFACE\"\n"
                          f"ip link set \"$INTERFACE\" mtu {self.MTU} up\n")
            up.chmod(0o755)
            # -K appends the public key to hosts/<Name>; with stdin not a TTY it asks nothing.
            run(["tincd", "-c", str(d), "-K2048"], timeout=60)
        # Each node needs the other's host file (address, subnet, public key).
        for side in "ab":
            other = "b" if side == "a" else "a"
            shutil.copy(dirs[other] / "hosts" / f"node{other}", dirs[side] / "hosts" / f"node{other}")
        for side in ("b", "a"):
            topo.spawn(side, ["tincd", "-c", str(dirs[side]), "-D", "-d1",
                              f"--pidfile={dirs[side] / 'tinc.pid'}"], f"tincd-{side}")
            topo.wait_for(lambda s=side: has_addr(topo, s, "tinc0", inner[s]), f"tinc0 in {side}", timeout=10)
            if side == "b":
                topo.wait_for(lambda: topo.listening("b", self.PORT), "tincd listener in B", timeout=10)
        topo.wait_ping(inner["b"], timeout=30)
        return Overlay(inner["b"], "tinc0", link_mtu(topo, "a", "tinc0"),
                       {"encryption": f"{self.CIPHER} + HMAC-{self.DIGEST} (RSA-2048 keys, 1.0 protocol)",
                        "transport": f"UDP {self.PORT} (TCP meta connection)", "mode": "router",
                        "PMTUDiscovery": "no (fixed tun MTU; see README)"})


# -- 5. nebula -----------------------------------------------------------------------------------

class Nebula(System):
    name = "nebula"
    title = "nebula"
    tools = ("nebula", "nebula-cert")
    package = "nebula"
    PORT, MTU = 4242, 1300

    def _version(self) -> str:
        return "nebula " + first_line(["nebula", "-version"]).replace("Version:", "").strip()

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        inner = {"a": "10.204.0.1", "b": "10.204.0.2"}
        under = {"a": UNDERLAY_A, "b": UNDERLAY_B}
        run(["nebula-cert", "ca", "-name", "dataplane-bench", "-out-crt", str(wd / "ca.crt"),
             "-out-key", str(wd / "ca.key")])
        for side in "ab":
            other = "b" if side == "a" else "a"
            run(["nebula-cert", "sign", "-ca-crt", str(wd / "ca.crt"), "-ca-key", str(wd / "ca.key"),
                 "-name", f"node{side}", "-ip", f"{inner[side]}/24",
                 "-out-crt", str(wd / f"{side}.crt"), "-out-key", str(wd / f"{side}.key")])
            # JSON is valid YAML, so no YAML library is needed.
            config = {
                "pki": {"ca": str(wd / "ca.crt"), "cert": str(wd / f"{side}.crt"), "key": str(wd / f"{side}.key")},
                "static_host_map": {inner[other]: [f"{under[other]}:{self.PORT}"]},
                "lighthouse": {"am_lighthouse": False, "interval": 60, "hosts": []},
                "listen": {"host": under[side], "port": self.PORT},
                "punchy": {"punch": False},
                "tun": {"disabled": False, "dev": "nebula0", "mtu": self.MTU},
                "logging": {"level": "info", "format": "text"},
                "firewall": {"outbound": [{"port": "any", "proto": "any", "host": "any"}],
                             "inbound": [{"port": "any", "proto": "any", "host": "any"}]},
            }
            path = wd / f"nebula-{side}.yml"
            path.write_text(json.dumps(config, indent=1) + "\n")
            run(["nebula", "-test", "-config", str(path)])
        for side in "ab":
            topo.spawn(side, ["nebula", "-config", str(wd / f"nebula-{side}.yml")], f"nebula-{side}")
        for side in "ab":
            topo.wait_for(lambda s=side: has_addr(topo, s, "nebula0", inner[s]), f"nebula0 in {side}", timeout=10)
        topo.wait_ping(inner["b"])
        return Overlay(inner["b"], "nebula0", link_mtu(topo, "a", "nebula0"),
                       {"encryption": "AES-256-GCM (default cipher: aes; Noise IX, Curve25519)",
                        "transport": f"UDP {self.PORT}", "lighthouse": "none (static_host_map)"})


# -- 6. yggdrasil --------------------------------------------------------------------------------

class Yggdrasil(System):
    name = "yggdrasil"
    title = "yggdrasil"
    tools = ("yggdrasil",)
    package = "yggdrasil"
    PORT = 12345

    def _version(self) -> str:
        # Debian's build reports "Build name: unknown", so the package version carries the information.
        text = first_line(["yggdrasil", "-version"])
        return "yggdrasil (-version: unknown build)" if "unknown" in text else text

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        addrs = {}
        for side in "ab":
            conf = json.loads(run(["yggdrasil", "-genconf", "-json"]).stdout)
            conf.update({
                "Listen": [f"tcp://{UNDERLAY_B}:{self.PORT}"] if side == "b" else [],
                "Peers": [f"tcp://{UNDERLAY_B}:{self.PORT}"] if side == "a" else [],
                "InterfacePeers": {},
                "MulticastInterfaces": [],
                "AdminListen": "none",
                "IfName": "ygg0",
            })
            path = wd / f"ygg-{side}.json"
            path.write_text(json.dumps(conf, indent=1) + "\n")
            path.chmod(0o600)
            addrs[side] = run(["yggdrasil", "-useconffile", str(path), "-address"]).stdout.strip()
            if not addrs[side]:
                raise BenchError("yggdrasil -address printed nothing")
            self.if_mtu = conf.get("IfMTU")
        # B must listen before A dials: yggdrasil 0.4 retries a failed static peer only once a minute.
        for side in ("b", "a"):
            topo.spawn(side, ["yggdrasil", "-useconffile", str(wd / f"ygg-{side}.json"), "-logto", "stdout"],
                       f"yggdrasil-{side}")
            if side == "b":
                topo.wait_for(lambda: topo.listening("b", self.PORT), "yggdrasil listener in B", timeout=15)
        for side in "ab":
            topo.wait_for(lambda s=side: has_addr(topo, s, "ygg0", addrs[s]), f"ygg0 in {side}", timeout=15)
        topo.wait_ping(addrs["b"], timeout=30)
        return Overlay(addrs["b"], "ygg0", link_mtu(topo, "a", "ygg0"),
                       {"encryption": "ironwood end-to-end sessions (Curve25519, XSalsa20-Poly1305)",
                        "transport": f"TCP peering tcp://{UNDERLAY_B}:{self.PORT}",
                        "IfMTU": f"{self.if_mtu} (config default)"})


# -- 7. weftnet ----------------------------------------------------------------------------------

class Weftnet(System):
    name = "weftnet"
    title = "weftnet"
    PORT = 4500

    #: Variants with other [dataplane] settings in both daemons: name suffix -> (title, settings).
    VARIANTS = {
        # The settings before uvloop and the short slice (docs/dataplane.md, "Latency").
        "asyncio": ("asyncio loop and default time slice", {"event_loop": "asyncio", "sched_slice_us": 0}),
        "noslice": ("uvloop, default time slice", {"event_loop": "auto", "sched_slice_us": 0}),
        "asyncio-slice": ("asyncio loop, 100 µs time slice", {"event_loop": "asyncio", "sched_slice_us": 100}),
    }

    def __init__(self, weft: Path = WEFT_DEFAULT, workers: int = 1, variant: str | None = None):
        self.weft = str(weft)
        self.tools = (self.weft,)
        self.workers = workers
        self.dataplane: dict = {"workers": workers} if workers > 1 else {}
        if workers > 1:
            self.name = f"{type(self).name}-workers{workers}"
            self.title = f"{type(self).title}, {workers} data-plane workers"
        if variant is not None:
            label, settings = self.VARIANTS[variant]
            self.dataplane.update(settings)
            self.name = f"{self.name}-{variant}"
            self.title = f"{self.title}, {label}"

    def _version(self) -> str:
        return first_line([self.weft, "--version"])

    def w(self, state: Path, *args: str, timeout: float = 60) -> str:
        return run([self.weft, "--state-dir", str(state), *args], timeout=timeout).stdout

    def wait_pmtu(self, topo: Topology, state: Path) -> None:
        """Wait (up to 10 s) until path MTU discovery measured the path to the peer, so the run sees the
        datagram size and tunnel MTU the daemon settles on, not the 1,344/1,280 it starts with."""
        def measured() -> bool:
            try:
                st = json.loads(self.w(state, "status", "--json", timeout=10))
            except (BenchError, ValueError):
                return False
            return bool(st.get("dataplane", {}).get("pmtu", {}).get("peers"))
        try:
            topo.wait_for(measured, "path MTU measured", timeout=10)
        except BenchError:
            pass  # a daemon without path MTU discovery: run at its fixed sizes
        time.sleep(0.5)  # the TUN MTU is set by a worker thread right after the measurement

    def wait_workers(self, topo: Topology, state: Path) -> None:
        """With data-plane workers: wait (up to 15 s) until A's worker holds B's keys (B announced
        as many slots), so the run starts with the workers in use."""
        def ready() -> bool:
            try:
                w = json.loads(self.w(state, "status", "--json", timeout=10))["dataplane"]["workers"]
            except (BenchError, ValueError, KeyError):
                return False
            return w["peers_with_workers"] >= 1 and all(s.get("sessions", 0) >= 1 for s in w["slots"][1:])
        topo.wait_for(ready, "data-plane workers holding the peer's keys", timeout=15)

    def after(self, topo: Topology, wd: Path) -> dict:
        """Packets each process of A's daemon carried (slot 0: the main process), with workers."""
        if self.workers <= 1:
            return {}
        time.sleep(1.2)  # workers report every second
        try:
            w = json.loads(self.w(wd / "sa", "status", "--json", timeout=10))["dataplane"]["workers"]
        except (BenchError, ValueError, KeyError):
            return {}
        return {"slots": [{k: s.get(k, 0) for k in ("slot", "packets_out", "packets_in", "handoff_handed")}
                          for s in w["slots"]],
                "worker_restarts": w["restarts"], "handoff": w.get("handoff", {})}

    def cipher(self, state: Path) -> str:
        """The transport cipher A's sessions use (``weft status --json``; builds before the
        negotiation know only ChaCha20-Poly1305)."""
        try:
            stats = json.loads(self.w(state, "status", "--json", timeout=10))["transport"]
        except (BenchError, ValueError, KeyError):
            return "cipher unknown (status failed)"
        return "AES-256-GCM (negotiated)" if stats.get("sessions_aes_256_gcm") else "ChaCha20-Poly1305"

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        owner, sa, sb = wd / "owner", wd / "sa", wd / "sb"
        inner = {"a": "10.99.0.1", "b": "10.99.0.2"}
        self.w(owner, "init")
        self.w(owner, "net", "create", "bench", "--ipv4", "10.99.0.0/24")
        allow_all = ('\n[networks.bench]\n'
                     'firewall.outbound = [ { proto = "any", port = "any", host = "any" } ]\n'
                     'firewall.inbound  = [ { proto = "any", port = "any", host = "any" } ]\n')
        for side, state in (("a", sa), ("b", sb)):
            self.w(state, "init")
            out = self.w(state, "id", "--json")
            try:
                node_id = json.loads(out)["node_id"]
            except (ValueError, KeyError, TypeError) as e:
                raise BenchError(f"weft id --json: no node_id in {out.strip()[:200]!r}") from e
            cert = wd / f"{side}.cert"
            self.w(owner, "net", "sign", "bench", "--node", node_id, "--ip", inner[side], "--out", str(cert))
            self.w(state, "net", "join", str(cert))
            with open(state / "config.toml", "a") as fh:
                fh.write(allow_all)
                if self.dataplane:
                    fh.write("\n[dataplane]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.dataplane.items()))
        topo.spawn("b", [self.weft, "--state-dir", str(sb), "up", "--listen", UNDERLAY_B,
                         "--port", str(self.PORT)], "weft-b")
        topo.wait_for(lambda: has_addr(topo, "b", "wn-bench", inner["b"]), "wn-bench in B", timeout=20)
        topo.spawn("a", [self.weft, "--state-dir", str(sa), "up", "--listen", UNDERLAY_A,
                         "--port", str(self.PORT), "--peer", f"{UNDERLAY_B}:{self.PORT}"], "weft-a")
        for side in "ab":
            topo.wait_for(lambda s=side: has_addr(topo, s, "wn-bench", inner[s]), f"wn-bench in {side}",
                          timeout=20)
        topo.wait_ping(inner["b"], timeout=20)
        self.wait_pmtu(topo, sa)
        if self.workers > 1:
            self.wait_workers(topo, sa)
        offload = re.search(r"\boffload=(\S+)", topo.log_text("weft-a"))
        loop = re.search(r"\bevent_loop=(\S+)", topo.log_text("weft-a"))
        slice_us = re.search(r"\bsched_slice_us=(\S+)", topo.log_text("weft-a"))
        return Overlay(inner["b"], "wn-bench", link_mtu(topo, "a", "wn-bench"),
                       {"encryption": f"{self.cipher(sa)} (Noise IK, Python daemon)",
                        "transport": f"UDP {self.PORT}", "firewall": "allow all (both directions)",
                        "offload (daemon log)": offload.group(1) if offload else "not logged",
                        "event loop (daemon log)": loop.group(1) if loop else "not logged (asyncio)",
                        "time slice µs (daemon log)": slice_us.group(1) if slice_us else "not logged (kernel default)"})


# -- 8. weftnet by overlay address -------------------------------------------------------------

class WeftnetOverlay(Weftnet):
    """Every node's own key-derived address on its overlay interface (weft0): no private network,
    no configuration but B's firewall opening the iperf3 port — the counterpart of Yggdrasil's row."""
    name = "weftnet-overlay"
    title = "weftnet, overlay addresses"

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        sa, sb = wd / "sa", wd / "sb"
        addrs = {}
        for side, state in (("a", sa), ("b", sb)):
            self.w(state, "init")
            out = self.w(state, "id", "--json")
            try:
                addrs[side] = json.loads(out)["address"]
            except (ValueError, KeyError, TypeError) as e:
                raise BenchError(f"weft id --json: no address in {out.strip()[:200]!r}") from e
        self.w(sb, "allow", "tcp", "5201")  # the overlay interface is default-deny inbound
        self.w(sb, "allow", "udp", "5201")
        topo.spawn("b", [self.weft, "--state-dir", str(sb), "up", "--listen", UNDERLAY_B,
                         "--port", str(self.PORT)], "weft-b")
        topo.wait_for(lambda: has_addr(topo, "b", "weft0", addrs["b"]), "weft0 in B", timeout=20)
        topo.spawn("a", [self.weft, "--state-dir", str(sa), "up", "--listen", UNDERLAY_A,
                         "--port", str(self.PORT), "--peer", f"{UNDERLAY_B}:{self.PORT}"], "weft-a")
        topo.wait_for(lambda: has_addr(topo, "a", "weft0", addrs["a"]), "weft0 in A", timeout=20)
        topo.wait_ping(addrs["b"], timeout=20)  # (its path is measured when iperf3's first superpacket leaves)
        return Overlay(addrs["b"], "weft0", link_mtu(topo, "a", "weft0"),
                       {"encryption": f"{self.cipher(sa)} (Noise IK, Python daemon)",
                        "transport": f"UDP {self.PORT}", "addresses": "key-derived fd77:6566::/32, found via the DHT",
                        "firewall": "default-deny inbound, weft allow tcp 5201 and udp 5201 on B"})


def baseline(weft: Path, workers: int = 1) -> Weftnet:
    """weftnet from another build (``--baseline``: e.g. the code before a change, in the same run),
    with ``workers`` data-plane processes (``weftnet-baseline-workers2`` beside ``weftnet-workers2``)."""
    s = Weftnet(weft, workers=workers)
    suffix = f"-workers{workers}" if workers > 1 else ""
    s.name, s.title = f"weftnet-baseline{suffix}", f"{s.title}, baseline build ({weft})"
    return s


def baseline_overlay(weft: Path) -> WeftnetOverlay:
    """The overlay-address row from another build (``--baseline``), beside ``weftnet-overlay``."""
    s = WeftnetOverlay(weft)
    s.name, s.title = "weftnet-baseline-overlay", f"{s.title}, baseline build ({weft})"
    return s


def all_systems(weft: Path = WEFT_DEFAULT) -> list[System]:
    """The systems in table order."""
    return [Veth(), Vxlan(), WireguardGo(), Tinc(), Nebula(), Yggdrasil(), Weftnet(weft),
            Weftnet(weft, variant="asyncio"), Weftnet(weft, workers=2), WeftnetOverlay(weft)]
