"""The floor tunnels (bench only; docs/dataplane.md, "Twelfth ping round"): how fast a tunnel on this
host can be when its packet work is C, with and without a Python event loop around it, and when it is
the least Python a tunnel can be.

They carry none of what weftnet does for a packet (handshakes, sessions, routing, firewalls): static keys,
one peer, floor/floor.h's datagram. They exist to be measured beside wireguard-go and weftnet in
pinglat.py (`--only wireguard-go,weftnet,floor-c,floor-hybrid,floor-python`), as bounds: what a fast
path in C could reach, in either shape, and what Python costs before any of weftnet's code runs.
Built from source at set-up (gcc, OpenSSL's headers, Python's headers).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from netns import UNDERLAY_A, UNDERLAY_B, BenchError, Topology, run
from systems import Overlay, System, kernel_version, link_mtu

SRC = Path(__file__).resolve().parent / "floor"


def _compile(argv: list[str]) -> None:
    cp = run(argv, timeout=120, check=False)
    if cp.returncode != 0:
        raise BenchError(f"building a floor tunnel failed: {' '.join(argv)}: {cp.stderr.strip()[-400:]}")


class Floor(System):
    """Base: build, keys, both ends, addresses. Subclasses say how each end is started."""
    PORT, MTU = 4610, 1420
    SUBNET = ""
    tools = ("gcc", "ip")

    def missing(self) -> list[str]:
        gone = super().missing()
        if not Path("/usr/include/openssl/evp.h").exists():
            gone.append("OpenSSL headers (libssl-dev)")
        return gone

    def _version(self) -> str:
        return f"bench/dataplane/floor (gcc -O2, OpenSSL EVP AES-256-GCM); {kernel_version()}"

    def build(self, wd: Path) -> list[str]:
        """Build into wd; return the argv before TUN LOCAL PEER PORT."""
        raise NotImplementedError

    def setup(self, topo: Topology, wd: Path) -> Overlay:
        head = self.build(wd)
        keys = [os.urandom(32).hex(), os.urandom(32).hex()]
        inner = {"a": f"{self.SUBNET}.1", "b": f"{self.SUBNET}.2"}
        under = {"a": UNDERLAY_A, "b": UNDERLAY_B}
        dev = "flr0"
        for i, side in enumerate("ab"):
            other = "b" if side == "a" else "a"
            env = {"FLOOR_SEND_KEY": keys[i], "FLOOR_RECV_KEY": keys[1 - i]}
            topo.spawn(side, [*head, dev, under[side], under[other], str(self.PORT)], f"{self.name}-{side}",
                       env=env, cwd=wd)
            topo.wait_for(lambda s=side: topo.exec(s, ["ip", "link", "show", dev], check=False).returncode == 0,
                          f"{dev} in {side}", timeout=10)
            topo.exec(side, ["ip", "addr", "add", f"{inner[side]}/24", "dev", dev])
            topo.exec(side, ["ip", "link", "set", dev, "mtu", str(self.MTU), "up"])
        topo.wait_ping(inner["b"])
        return Overlay(inner["b"], dev, link_mtu(topo, "a", dev),
                       {"encryption": "AES-256-GCM, static keys (no handshake)", "transport": f"UDP {self.PORT}",
                        "loop": self.LOOP})


class FloorC(Floor):
    name = "floor-c"
    title = "floor: C, one epoll thread"
    SUBNET = "10.209.0"
    LOOP = "epoll in C (floor/ctun.c)"

    def build(self, wd: Path) -> list[str]:
        exe = wd / "ctun"
        _compile(["gcc", "-O2", "-Wall", "-o", str(exe), str(SRC / "ctun.c"), "-lcrypto"])
        return [str(exe)]


class FloorPython(Floor):
    name = "floor-python"
    title = "floor: uvloop and the packet work in Python"
    SUBNET = "10.211.0"
    LOOP = "uvloop, cryptography's AESGCM (floor/pytun.py)"
    MODE = "python"  # pytun.py's first argument

    def build(self, wd: Path) -> list[str]:
        shutil.copy(SRC / "pytun.py", wd / "pytun.py")
        return [sys.executable, str(wd / "pytun.py"), self.MODE]


class FloorHybrid(FloorPython):
    name = "floor-hybrid"
    title = "floor: uvloop in Python, packet work in C"
    SUBNET = "10.210.0"
    LOOP = "uvloop, one C call a wake-up (floor/floorext.c)"
    MODE = "hybrid"

    def build(self, wd: Path) -> list[str]:
        """pytun.py, and beside it (on its import path) the extension it calls."""
        ext = wd / f"floorext{sysconfig.get_config_var('EXT_SUFFIX')}"
        _compile(["gcc", "-O2", "-Wall", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}",
                  "-o", str(ext), str(SRC / "floorext.c"), "-lcrypto"])
        return super().build(wd)


def floor_systems() -> list[System]:
    return [FloorC(), FloorHybrid(), FloorPython()]
