"""The overlay interface on this host: the ``weft0`` TUN, its firewall rules, and LAN discovery sockets.

* :class:`OverlayInterface` — opens the TUN (``IFF_VNET_HDR``, segmentation
  offload), gives it the node's overlay address as ``addr/32`` so the kernel
  routes all of ``fd77:6566::/32`` to it (no duplicate address detection: the
  address is the key's and unique), reads packets in batches into
  ``NodeCore.overlay_outbound`` and writes what the core delivers. When it
  cannot (no CAP_NET_ADMIN, no ``/dev/net/tun``, the name taken by another
  daemon on this host) the node runs on without it and says why.
* Rules added with ``weft allow`` live in ``overlay-rules.json`` in the state
  directory, next to the ``[overlay] firewall`` rules of the config file; the
  daemon applies a change at once (flows a removed rule admitted are cut).
* :class:`LanBeacons` — one UDP socket per configured interface (bound to it,
  broadcast allowed), a beacon to 255.255.255.255 every ``interval`` seconds
  (jittered), and every datagram heard handed to ``NodeCore.lan_received``.

pyroute2 does the netlink work in a worker thread, as for private networks.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import os
import random
import socket
import time
from pathlib import Path
from typing import Any

from weftnet.core.identity import NodeId
from weftnet.core.overlay.dataplane import GSO_MAX_SIZE
from weftnet.core.vpn.ackfilter import prepare_batch
from weftnet.core.vpn.firewall import Firewall, parse_rule
from weftnet.errors import ConfigError, NetworkError, ParseError
from weftnet.runtime.config import DEFAULT_OVERLAY_FIREWALL, OverlayConfig
from weftnet.runtime.tun import read_wakeup

__all__ = ["OverlayInterface", "LanBeacons", "rules_path", "load_saved_rules", "change_saved_rules",
           "make_rule", "overlay_firewall_config", "config_inbound_rules", "rules_report"]

log = logging.getLogger("weftnet.overlay")

RULES_FILE = "overlay-rules.json"
MAX_SAVED_RULES = 256
#: How many flows one peer may hold in the overlay firewall's connection table.
FLOWS_PER_PEER = 1024


# -- rules -----------------------------------------------------------------------------

def rules_path(state_dir: Path) -> Path:
    return Path(state_dir) / RULES_FILE


def make_rule(proto: str, port: str | None, source: str | None) -> dict[str, Any]:
    """The rule ``weft allow PROTO [PORT] [--from NODE|ADDRESS|CIDR]`` means (validated)."""
    rule: dict[str, Any] = {"proto": proto.lower(), "port": port if port not in (None, "") else "any"}
    if isinstance(rule["port"], str) and rule["port"].isdigit():
        rule["port"] = int(rule["port"])
    if source is None or source.strip().lower() == "any":
        rule["host"] = "any"
    else:
        s = source.strip()
        if any(c in s for c in ":./"):
            try:
                net = ipaddress.ip_network(s if "/" in s else s + "/128", strict=True)
            except ValueError as exc:
                raise ParseError(f"--from {source!r}: {exc}") from None
            if net.version != 6:
                raise ParseError(f"--from {source!r}: the overlay interface carries IPv6 only")
            rule["cidr"] = str(net)
        else:
            rule["host"] = NodeId.parse(s).text()
    parse_rule("rule", rule)  # the same validation as the config file
    return rule


def _check_overlay_rules(rules: list, where: str) -> None:
    for i, raw in enumerate(rules):
        r = parse_rule(f"{where}[{i}]", raw)
        if r.groups:
            raise ConfigError(f"{where}[{i}]: the overlay interface has no groups (use host or cidr)")
        if r.cidr is not None and r.cidr.version != 6:
            raise ConfigError(f"{where}[{i}]: cidr {r.cidr} is IPv4; the overlay interface carries IPv6 only")


def load_saved_rules(state_dir: Path) -> list[dict[str, Any]]:
    """Inbound rules added with ``weft allow`` (validated; a broken file is a ConfigError)."""
    path = rules_path(state_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the saved overlay rules: {exc}") from None
    rules = data.get("inbound") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        raise ConfigError(f"{path}: expected {{\"inbound\": [rules]}}")
    try:
        _check_overlay_rules(rules, f"{path.name} inbound")
    except ConfigError as exc:
        raise ConfigError(f"{path.parent}/{exc}") from None
    return rules


def _same(a: dict, b: dict) -> bool:
    return parse_rule("a", a) == parse_rule("a", b)  # compares the parsed meaning, not the spelling


def change_saved_rules(state_dir: Path, action: str, rule: dict[str, Any], config_rules: list) -> list[dict]:
    """Add (``allow``) or remove (``deny``) one saved inbound rule; returns the saved rules after."""
    rules = load_saved_rules(state_dir)
    _check_overlay_rules([rule], "rule")
    if action == "allow":
        if any(_same(r, rule) for r in rules + list(config_rules)):
            return rules
        if len(rules) >= MAX_SAVED_RULES:
            raise ConfigError(f"at most {MAX_SAVED_RULES} saved overlay rules")
        rules.append(rule)
    elif action == "deny":
        kept = [r for r in rules if not _same(r, rule)]
        if len(kept) == len(rules):
            if any(_same(r, rule) for r in config_rules):
                raise ConfigError("that rule is in config.toml ([overlay] firewall.inbound) or the default rules: "
                                  "set firewall.inbound there")
            raise ConfigError("no saved rule allows exactly that (see 'weft rules')")
        rules = kept
    else:
        raise ConfigError(f"unknown rule action {action!r}")
    path = rules_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"inbound": rules}, indent=1) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return rules


def overlay_firewall_config(cfg: OverlayConfig, saved: list) -> dict:
    """The firewall table of the overlay: the config's rules, the default for a direction the config
    leaves out (so ``firewall.inbound = [...]`` alone keeps outbound open), plus the saved inbound rules."""
    fw = dict(DEFAULT_OVERLAY_FIREWALL)
    fw.update(cfg.firewall or {})
    fw["inbound"] = list(fw["inbound"]) + list(saved)
    return fw


def config_inbound_rules(cfg: OverlayConfig) -> list:
    """The inbound rules the config file gives (or the default ones)."""
    return list((cfg.firewall or {}).get("inbound", DEFAULT_OVERLAY_FIREWALL["inbound"]))


def rules_report(cfg: OverlayConfig, saved: list) -> dict[str, Any]:
    """What ``weft rules`` shows: the config's inbound rules (or the defaults) and the saved ones."""
    return {"config": config_inbound_rules(cfg), "default": "inbound" not in (cfg.firewall or {}), "saved": saved}


# -- the interface -----------------------------------------------------------------------

class OverlayInterface:
    """The overlay TUN of a running daemon (see the module docstring)."""

    def __init__(self, core: Any, driver: Any, cfg: OverlayConfig, state_dir: Path):
        self.core = core
        self.driver = driver
        self.cfg = cfg
        self.state_dir = Path(state_dir)
        self.tun: Any = None
        self.error: str | None = None
        self.write_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: ``[dataplane] ack_filter`` (the daemon sets it): pure TCP ACKs a later one supersedes are left out.
        self.ack_filter = True
        self.acks_filtered = 0
        #: The last wake-up read one packet: this one sends its first before reading on (_on_readable).
        self._sparse = True

    @property
    def config_rules(self) -> list:
        return config_inbound_rules(self.cfg)

    def firewall(self) -> Firewall:
        table = overlay_firewall_config(self.cfg, load_saved_rules(self.state_dir))
        return Firewall.from_config(table, "[overlay] firewall", default_max_flows_per_peer=FLOWS_PER_PEER)

    async def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Bring the interface up; False (and ``error`` says why, logged) when this host will not let us."""
        from weftnet.runtime.tun import configure_tun, open_tun, set_offload, set_txqueuelen

        firewall = self.firewall()  # a broken rules file stops the node: say so before any TUN exists
        cfg = self.cfg
        address = f"{self.core.address}/32"

        def make():
            tun = open_tun(cfg.interface, vnet_hdr=True)
            try:
                if cfg.offload:
                    set_offload(tun, uso=True)
                configure_tun(tun.name, mtu=cfg.mtu)
                _add_address(tun.name, address, GSO_MAX_SIZE if cfg.offload else None)
                set_txqueuelen(tun.name, cfg.txqueuelen)
            except BaseException:
                tun.close()
                raise
            return tun

        try:
            self.tun = await asyncio.to_thread(make)
        except NetworkError as exc:
            self.error = str(exc)
            log.warning("overlay interface not started: the node runs without it",
                        extra={"interface": cfg.interface, "error": self.error})
            return False
        self._loop = loop
        self.tun.set_blocking(False)
        self.core.overlay.enable(time.time(), firewall=firewall, mtu=cfg.mtu, vnet=True)
        loop.add_reader(self.tun.fileno(), self._on_readable)
        log.info("overlay interface up", extra={"interface": self.tun.name, "address": address, "mtu": cfg.mtu,
                                                "offload": cfg.offload})
        return True

    def close(self) -> None:
        if self.tun is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.tun.fileno())
            self.tun.close()
            self.tun = None
            self.core.overlay.disable()

    def _on_readable(self) -> None:
        packets, self._sparse = read_wakeup(self.tun.fileno(), self._sparse, lambda first: self._send([first]), log,
                                            "TUN read failed", self.tun.name)
        if packets:
            if len(packets) > 1 and self.cfg.offload:
                packets, acks = prepare_batch(packets, self.ack_filter)
                self.acks_filtered += acks
            self._send(packets)

    def _send(self, packets: list[bytes]) -> None:
        """Packets read from the TUN, sealed and sent (a sparse wake-up's first before the reader
        reads on: tun.read_wakeup)."""
        self.core.overlay_outbound(packets, time.time())
        self.driver.transmit()

    def write(self, vnet: bytes, packet: bytes) -> None:
        if self.tun is None:
            return
        try:
            os.writev(self.tun.fd, (vnet or b"\x00" * 10, packet))
        except OSError:  # a full queue (EAGAIN) or a packet the kernel refuses: like a congested link
            self.write_errors += 1

    def apply_rules(self, action: str, rule: dict[str, Any]) -> dict[str, Any]:
        """``weft allow`` / ``weft deny`` on the running node: saved, and in force at once."""
        saved = change_saved_rules(self.state_dir, action, rule, self.config_rules)
        closed = 0
        data = self.core.overlay.data
        if data is not None:
            fresh = self.firewall()
            closed = data.firewall.replace_rules(fresh.inbound, fresh.outbound)
        return {**rules_report(self.cfg, saved), "flows_closed": closed}

    def status(self) -> dict[str, Any]:
        return {"interface": self.tun.name if self.tun is not None else None, "error": self.error,
                "tun_write_errors": self.write_errors, "acks_filtered": self.acks_filtered,
                "rules": rules_report(self.cfg, load_saved_rules(self.state_dir))}


def _add_address(name: str, address: str, gso_max_size: int | None) -> None:
    """``address`` (``fd77:…/32``) on ``name``, usable at once: IFA_F_NODAD (no duplicate detection);
    superpackets capped at ``gso_max_size`` so each one crosses as one chunk."""
    from pyroute2.netlink.exceptions import NetlinkError

    from weftnet.runtime.tun import _index, _iproute, _netlink_error

    iface = ipaddress.ip_interface(address)
    with _iproute(None) as ipr:
        idx = _index(ipr, name)
        try:
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                     family=socket.AF_INET6, flags=0x02)  # IFA_F_NODAD
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _netlink_error(f"adding {address} to {name!r}", exc) from None
        if gso_max_size is not None:
            try:
                ipr.link("set", index=idx, gso_max_size=gso_max_size)
            except NetlinkError as exc:  # an older kernel: superpackets then travel in two chunks
                log.info("cannot cap the overlay interface's superpackets", extra={"error": str(exc)})


# -- LAN discovery ---------------------------------------------------------------------------

class LanBeacons:
    """Beacons out of, and beacons heard on, the configured interfaces (module docstring)."""

    def __init__(self, core: Any, driver: Any, interfaces: list[str], port: int, interval: float):
        self.core = core
        self.driver = driver
        self.interfaces = list(interfaces)
        self.port = port
        self.interval = interval
        self.socks: dict[str, socket.socket] = {}
        self._rng = random.SystemRandom()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.send_errors = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open one socket per interface; an interface that cannot be used is a ConfigError."""
        self._loop = loop
        try:
            for name in self.interfaces:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    s.setblocking(False)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
                    s.bind(("0.0.0.0", self.port))
                except OSError as exc:
                    s.close()
                    why = "no such interface" if exc.errno == errno.ENODEV else exc.strerror
                    raise ConfigError(f"[overlay] discovery on {name!r}: {why}") from None
                self.socks[name] = s
                loop.add_reader(s.fileno(), self._on_readable, s)
        except BaseException:
            self.close()
            raise
        log.info("LAN discovery on", extra={"interfaces": ", ".join(self.interfaces), "port": self.port})

    def close(self) -> None:
        for s in self.socks.values():
            if self._loop is not None:
                self._loop.remove_reader(s.fileno())
            s.close()
        self.socks.clear()

    def _on_readable(self, s: socket.socket) -> None:
        for _ in range(32):
            try:
                data, addr = s.recvfrom(512)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            self.core.lan_received(data, addr[0], time.time())
        self.driver.transmit()

    def beacon(self) -> None:
        data = self.core.lan_beacon(self.core.endpoint[1], time.time())
        for name, s in self.socks.items():
            try:
                s.sendto(data, ("255.255.255.255", self.port))
            except OSError as exc:  # the interface is down, for one: try again next time
                self.send_errors += 1
                log.debug("beacon not sent", extra={"interface": name, "error": exc.strerror})

    async def run(self) -> None:
        """Beacon every ``interval`` seconds (+-20 %), until cancelled."""
        while True:
            self.beacon()
            await asyncio.sleep(self.interval * (0.8 + 0.4 * self._rng.random()))
