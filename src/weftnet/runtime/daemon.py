"""`weft up`: one node in the foreground.

Binds the UDP socket, drives a NodeCore through :class:`UdpDriver`, joins the
configured peers, brings up a TUN device for every private network the node
has joined (docs/vpn.md), serves the control API, logs what happens, and on
SIGINT or SIGTERM shuts down cleanly: routing table saved, TUN devices and
socket closed, control socket removed, database closed. SIGHUP (or ``weft reload``)
re-reads the config (runtime/reload.py); ``[metrics]`` and ``[dashboard]`` serve
HTTP (runtime/metrics.py, runtime/web/). Every task it starts belongs to one
``asyncio.TaskGroup``.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from weftnet.core.dht import DhtConfig
from weftnet.core.node import describe_path
from weftnet.core.reach.engine import ReachConfig
from weftnet.core.reach.relay import RelayConfig
from weftnet.core.histogram import LatencyHistogram
from weftnet.core.vpn.ackfilter import prepare_batch
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.vpn.netcert import CertificateError
from weftnet.core.vpn.network import GSO_MAX_SIZE, VNET_NONE, VpnNetwork
from weftnet.core.vpn.plane import VpnLocalBinding, VpnMemberEvent, VpnRevocations
from weftnet.core.identity import NodeId, parse_node_ref
from weftnet.core.overlay import OVERLAY_TUN
from weftnet.core.node import NodeConfig, NodeCore, NodeEvent
from weftnet.core.puzzle import meets_puzzle, puzzle_bits
from weftnet.core.session.transport import TransportConfig
from weftnet.runtime.underlay import transport_ciphers
from weftnet.errors import ConfigError, NetworkError, ParseError, WeftError
from weftnet.runtime.config import Config, NetworkConfig, PeerSpec, parse_peer
from weftnet.runtime import evloop, pathsctl
from weftnet.runtime.control import ControlServer
from weftnet.runtime.driver import UdpDriver, open_udp_socket
from weftnet.runtime.heap import keep_heap
from weftnet.runtime.tun import queued, read_wakeup
from weftnet.runtime.tunmtu import TunMtuFollower
from weftnet.runtime.keystore import load_identity
from weftnet.runtime.overlay import LanBeacons, OverlayInterface
from weftnet.runtime.paths import StatePaths
from weftnet.runtime.reload import Reloader
from weftnet.runtime.store import SqliteStore

__all__ = ["Daemon", "run"]

log = logging.getLogger("weftnet.daemon")
#: The routing table is saved this soon after it changes (and after a join), so a node
#: killed without warning rejoins from it; and in any case this often.
SAVE_CHECK = 5.0
SAVE_INTERVAL = 60.0
#: Members republish their directory records this often (their DHT lifetime is 6 h).
PUBLISH_INTERVAL = 1200.0
#: Members look for a newer revocation list this often.
REVOCATION_INTERVAL = 300.0
#: Interface addresses are read again this often: a changed address is a new network (roaming).
ADDRESS_INTERVAL = 10.0


def quiet_collector() -> None:
    """Keep the cyclic garbage collector off the packet path: everything built at start-up
    (modules, tables, the node) is frozen out of its scans, and the young generation is
    collected every 50,000 allocations instead of 700, each packet allocating a few dozen
    short-lived objects that reference counting frees anyway (docs/dataplane.md, "Latency")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def node_config(cfg: Config) -> NodeConfig:
    exempt = tuple(cfg.exempt_prefixes)
    return NodeConfig(
        transport=TransportConfig(max_peers=cfg.max_peers, exempt_prefixes=exempt,
                                  ciphers=transport_ciphers(cfg.ciphers)),
        dht=DhtConfig(
            k=cfg.k,
            alpha=cfg.alpha,
            lookup_alpha=cfg.lookup_alpha,
            cold_parallel=cfg.cold_parallel,
            disjoint_paths=cfg.disjoint_paths,
            per_prefix=cfg.per_prefix or None,
            max_records=cfg.max_records,
            prs_bits=cfg.prs_bits,
            rtt_hints=cfg.rtt_hints,
            sessionless=cfg.sessionless,
            id_difficulty=cfg.id_difficulty,
            exempt_prefixes=exempt,
            records_per_peer=cfg.records_per_peer,
            records_per_prefix=cfg.records_per_prefix,
            max_ttl=float(cfg.max_ttl),
        ),
        pmtu_ceiling=cfg.pmtu_max,
        reach=ReachConfig(enabled=cfg.reach_enabled, keepalive=cfg.reach_keepalive, relays=cfg.reach_relays,
                          punch=cfg.reach_punch),
        relay=RelayConfig(enabled=cfg.relay_enabled, max_sessions=cfg.relay_max_sessions,
                          peer_rate=cfg.relay_peer_rate, total_rate=cfg.relay_total_rate),
        paths=cfg.paths,
    )


def local_addresses(listen: str, exclude_ifaces: set[str]) -> list[str]:
    """The addresses this node's UDP socket can be reached at on its own interfaces (global scope,
    not loopback, not our TUN devices). For a specific listen address, just that one."""
    if listen not in ("0.0.0.0", "::"):
        return [listen]
    from pyroute2 import IPRoute

    family = socket.AF_INET6 if listen == "::" else socket.AF_INET
    out = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for a in ipr.get_addr(family=family):
            if a["scope"] != 0 or names.get(a["index"]) in exclude_ifaces:
                continue
            addr = a.get_attr("IFA_ADDRESS")
            if addr and not ipaddress.ip_address(addr).is_loopback:
                out.append(addr)
    return sorted(set(out))


def _target(text: Any) -> NodeId:
    if not isinstance(text, str):
        raise ParseError("target must be a string")
    ref = parse_node_ref(text)
    if not isinstance(ref, NodeId):
        raise ParseError("this command takes a node ID, not an overlay address")
    return ref


def _key(text: Any) -> bytes:
    if isinstance(text, str) and len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if isinstance(text, str):
        return NodeId.parse(text).raw
    raise ParseError("key must be 64 hex digits or a node ID")


class Daemon:
    def __init__(self, state_dir: Path, cfg: Config, loader: Callable[[], Config] | None = None):
        self.paths = StatePaths(state_dir)
        self.cfg = cfg
        #: Re-reads the config on SIGHUP / `weft reload`; subsystems register hooks on it.
        self.reloader = Reloader(self, loader)
        #: The daemon is the whole process (``weft up``): it may tune process-wide settings (the collector).
        self.own_process = False
        self.reloader.register("reach", ("reach_keepalive", "reach_punch", "relay_max_sessions", "relay_peer_rate",
                                         "relay_total_rate"), self._reload_reach)
        pathsctl.register_reload(self)  # [paths], [[class]], [[route]], [[link]] on reload
        self.http: Any = None  # HttpEndpoints: /metrics and the dashboard
        self._tg: asyncio.TaskGroup | None = None
        self._publisher: asyncio.Task | None = None
        self.identity = load_identity(self.paths.key)
        self.driver: UdpDriver | None = None
        self.store: SqliteStore | None = None
        self._stop = asyncio.Event()
        self._tuns: dict[bytes, Any] = {}  # network ID -> TunDevice
        self._tun_info: dict[str, dict[str, Any]] = {}  # network ID hex -> tun name, netns
        self.tun_write_errors = 0
        self.heap_kept = False  # runtime/heap.py, set by a daemon that is the whole process
        self.acks_filtered = 0  # pure TCP ACKs left out (core/vpn/ackfilter.py)
        self._tun_written: dict[bytes, None] = {}  # TUNs written since the last drain (_drain_tuns)
        self._draining = False
        self._drain_quiet: dict[bytes, None] = {}  # TUNs whose last drain found nothing (_drain_tuns)
        self._tun_sparse = True  # the last TUN wake-up read one packet (_on_tun_readable)
        self.slice_follower: evloop.SliceFollower | None = None  # [dataplane] sched_slice_pressure
        self._coalesce: set[bytes] = set()  # layer-3 networks: UDP bursts read are joined (core/vpn/coalesce.py)
        self._published_at: float | None = None
        self._owned_records = 0  # revocation records of networks we own but are no member of
        self._saved_changes = -1  # routing-table change count at the last save
        self.overlay: OverlayInterface | None = None
        self.lan: LanBeacons | None = None
        self.bgp: Any = None  # runtime.bgp.BgpService when [bgp] is configured
        self.l3vpn: Any = None  # runtime.l3vpn.L3vpnService when [vrf.NAME] tables are configured
        #: [dataplane] workers > 1 (runtime/dpworkers.py): the steered UDP sockets, each layer-3
        #: network's TUN queues for slots 1..n-1, and the pool of worker processes.
        self._group: list[socket.socket] = []
        self._wq: dict[bytes, list[Any]] = {}
        self._new_queues: dict[str, list[Any]] = {}
        self.workers: Any = None

    @property
    def core(self) -> NodeCore:
        assert self.driver is not None
        return self.driver.core

    def stop(self) -> None:
        self._stop.set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        """Start a task owned by the daemon's TaskGroup."""
        assert self._tg is not None
        return self._tg.create_task(coro)

    async def _reload_from_signal(self) -> None:
        try:
            await self.reloader.reload()
            if self.workers is not None:
                self.workers.resync()
        except WeftError as exc:
            log.error("reload refused", extra={"error": str(exc)})

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.store = SqliteStore(self.paths.database)
        core = NodeCore(self.identity, random.SystemRandom(), time.time(), node_config(self.cfg), self.store)
        core.dht.latency = LatencyHistogram()  # for weftnet_dht_operation_duration_seconds
        try:
            if self.cfg.workers > 1:  # one steered reuseport group (docs/dataplane.md, "Several workers")
                from weftnet.runtime.dpsteer import open_steered_group

                try:
                    self._group = open_steered_group(self.cfg.listen, self.cfg.port, self.cfg.workers)
                except WeftError:
                    self.store.close()
                    raise
                self.driver = UdpDriver(core, self._group[0])
                core.transport.worker_slots = frozenset(range(1, self.cfg.workers))
            else:
                self.driver = UdpDriver(core, open_udp_socket(self.cfg.listen, self.cfg.port))
            self.driver.after_tun_writes = self._drain_tuns
            self.tun_mtu = TunMtuFollower(core, self._tuns, lambda c: self.spawn(c) if self._tg else c.close())
        except OSError as exc:
            self.store.close()
            raise ConfigError(f"cannot listen on {self.cfg.listen}:{self.cfg.port}: {exc.strerror}") from None
        self.driver.listeners.append(self._on_event)
        self._open_alt_port()
        try:
            if self.cfg.relay_tcp_port:
                await self.driver.links.listen(self.cfg.listen, self.cfg.relay_tcp_port)
        except OSError as exc:
            self.driver.close()
            self.store.close()
            raise ConfigError(f"cannot listen for TCP relay clients on {self.cfg.listen}:{self.cfg.relay_tcp_port}: "
                              f"{exc.strerror}") from None
        try:
            await pathsctl.open_links(self)  # [[link]]: a socket per extra underlay link (docs/paths.md)
            await self._start_networks(loop)
            await self._start_overlay(loop)
        except WeftError:
            self._close_networks(loop)
            self.driver.close()
            self.store.close()
            raise
        sock_path = Path(self.cfg.control_socket) if self.cfg.control_socket else self.paths.control_socket
        # Its directory is checked if it is the shared fallback one (runtime/paths.py).
        control = ControlServer(sock_path, self._handlers())
        try:
            await control.start()
        except WeftError:
            self._close_networks(loop)
            self.driver.close()
            self.store.close()
            raise
        if self.cfg.bgp is not None:
            from weftnet.runtime.bgp import BgpService
            from weftnet.runtime.l2evpn import dataplane_for

            self.bgp = BgpService(self.cfg.bgp, loop, dataplane_for(self.cfg.bgp, self.core.vpn, self._tun_info))
            if hasattr(self.bgp.dataplane, "attach"):
                self.bgp.dataplane.attach(self.bgp)  # MAC/IP routes steer a layer-2 network (runtime/l2evpn.py)
        try:
            if self.cfg.vrfs:  # before the PE speaker starts, so no VPN route is missed (docs/l3vpn.md)
                from weftnet.runtime.l3vpn import L3vpnService

                self.l3vpn = L3vpnService(core, self.driver, self.cfg, self._tuns, loop)
                self.driver.tun_writer = self._write_tun
                await self.l3vpn.start(self.bgp)
            if self.bgp is not None:
                await self.bgp.start()
            if self.l3vpn is not None:
                await self.l3vpn.start_ce()
        except WeftError:
            if self.l3vpn is not None:
                await self.l3vpn.close()
            if self.bgp is not None:
                await self.bgp.close()
            await control.close()
            self._close_networks(loop)
            self.driver.close()
            self.store.close()
            raise
        if self.own_process:
            quiet_collector()
            self.heap_kept = keep_heap()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._tg and self.spawn(self._reload_from_signal()))
        ep = core.endpoint
        log.info(
            "node up", extra={"node_id": core.node_id.text(), "address": str(core.address),
                              "listen": f"{ep[0]}:{ep[1]}", "control": str(sock_path),
                              "event_loop": evloop.loop_name(loop), "sched_slice_us": evloop.current_slice()},
        )
        self._warn_about_settings()
        try:
            saved = self.store.load_contacts()
            if saved:
                log.info("rejoining from saved routing table", extra={"contacts": len(saved)})
                core.bootstrap(saved, time.time())
                self.driver.transmit()
            self._start_workers()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_addresses())
                if self.workers is not None:
                    tg.create_task(self.workers.run())
                self._tg = tg
                from weftnet.runtime.web.server import HttpEndpoints

                self.http = HttpEndpoints(self, control.handlers, self.spawn)
                await self.http.configure(self.cfg)
                for peer in self.cfg.peers:
                    tg.create_task(self._join_tcp(peer) if peer.tcp else self._join(peer))
                tg.create_task(self._save_periodically())
                if self.own_process and self.cfg.sched_slice_us and self.cfg.sched_slice_pressure \
                        and self.workers is None:
                    tg.create_task(self._follow_pressure())
                if self.lan is not None:
                    tg.create_task(self.lan.run())
                if self.l3vpn is not None:
                    tg.create_task(self.l3vpn.run())
                self._ensure_publisher()
                await self._stop.wait()
                raise _Shutdown()
        except* _Shutdown:
            pass
        except* WeftError as eg:  # e.g. a metrics address that cannot be bound: one line, as for the UDP port
            raise eg.exceptions[0] from None
        finally:
            log.info("shutting down")
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self.workers is not None:
                self.workers.close()
            self._save()
            if self.http is not None:
                await self.http.close()
            if self.l3vpn is not None:
                await self.l3vpn.close()
            if self.bgp is not None:
                await self.bgp.close()
            await control.close()
            self._close_networks(loop)
            self.driver.close()
            self.store.close()
            log.info("stopped")

    async def _join(self, peer: PeerSpec) -> None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(peer.host, peer.port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            log.warning("cannot resolve peer", extra={"peer": str(peer), "error": exc.strerror})
            return
        host = infos[0][4][0]
        for attempt in range(1, 6):
            ev = await self.driver.request(lambda c, t: c.connect((host, peer.port), t, peer.node_id))
            if ev.ok:
                log.info("joined", extra={"peer": str(peer), "node_id": ev.node_id.text()})
                await self.driver.request(lambda c, t: c.lookup(c.node_id, t))
                self._save()  # now, not at the next periodic save: a crash must not cost the table
                self._publish()
                if self._tuns:  # a member back from being offline learns of revocations at once
                    self.core.vpn_check_revocations(time.time())
                    self.driver.transmit()
                return
            log.warning("join failed", extra={"peer": str(peer), "error": ev.error, "attempt": attempt})
            await asyncio.sleep(min(30.0, 2.0**attempt))

    # -- reach (docs/reach.md) -----------------------------------------------------
    def _open_alt_port(self) -> None:
        """A second UDP socket, only for sending dial-back tests from another port (RFC 5780)."""
        port = self.cfg.reach_alt_port  # 0: any free port (the test only needs another source port)
        if port == -1 or not self.cfg.reach_enabled:
            return
        try:
            self.driver.alt_sock = open_udp_socket(self.cfg.listen, port, buffer_bytes=1 << 16)
        except OSError as exc:
            log.warning("no second UDP port for dial-back tests", extra={"port": port, "error": exc.strerror})
            return
        self.core.reach.alt_port = True

    async def _reload_reach(self, old: Config, new: Config) -> list[str]:
        """``[reach] keepalive, punch`` and the relay's limits apply at once (the rest needs a restart)."""
        reach = self.core.reach
        reach.config.keepalive, reach.config.punch = new.reach_keepalive, new.reach_punch
        out = [f"reach: keepalive {new.reach_keepalive:g} s, punch {'on' if new.reach_punch else 'off'}"]
        if reach.relay is not None:
            rc = reach.relay.config
            rc.max_sessions, rc.peer_rate, rc.total_rate = (new.relay_max_sessions, new.relay_peer_rate,
                                                            new.relay_total_rate)
            reach.relay.set_rates(self.driver.clock())
            out.append(f"relay: at most {rc.max_sessions} registered, {rc.peer_rate} B/s a peer, "
                       f"{rc.total_rate} B/s in all")
        return out

    async def _watch_addresses(self) -> None:
        """Tell the core our interface addresses now and whenever they change (a laptop changing networks)."""
        last = None
        while True:
            try:
                addrs = await asyncio.to_thread(local_addresses, self.cfg.listen,
                                                {i["tun"] for i in self._tun_info.values()})
            except Exception as exc:  # netlink trouble must not stop the node
                log.warning("cannot list interface addresses", extra={"error": str(exc)})
                addrs = last or []
            if addrs != last:
                if last is not None:
                    log.info("local addresses changed", extra={"addresses": ", ".join(addrs) or "-"})
                last = addrs
                port = self.core.endpoint[1]
                self.core.set_local_endpoints([(a, port) for a in addrs], time.time())
                self.driver.transmit()
            await asyncio.sleep(ADDRESS_INTERVAL)

    async def _join_tcp(self, peer: PeerSpec) -> None:
        """Keep a TCP link to a relay up (reconnecting with back-off) and a session over it."""
        attempt = 0
        while True:
            attempt += 1
            try:
                link, closed = await self.driver.links.connect(peer.host, peer.port)
            except (OSError, asyncio.TimeoutError) as exc:
                log.warning("TCP link failed", extra={"peer": str(peer), "error": str(exc), "attempt": attempt})
                await asyncio.sleep(min(30.0, 2.0 ** min(attempt, 5)))
                continue
            ev = await self.driver.request(lambda c, t: c.connect(link, t, peer.node_id))
            if ev.ok:
                attempt = 0
                log.info("joined over TCP", extra={"peer": str(peer), "node_id": ev.node_id.text()})
                await self.driver.request(lambda c, t: c.lookup(c.node_id, t))
                self._publish()
            else:
                log.warning("join over TCP failed", extra={"peer": str(peer), "error": ev.error})
                proto = self.driver.links.links.get(link)
                if proto is not None and proto.transport is not None:
                    proto.transport.close()
            await closed
            log.warning("TCP link closed", extra={"peer": str(peer)})
            await asyncio.sleep(min(30.0, 2.0 ** min(attempt, 5)))

    # -- private networks -------------------------------------------------------
    async def _start_networks(self, loop: asyncio.AbstractEventLoop) -> None:
        """A TUN device and a VpnNetwork for every network this node holds a certificate for."""
        from weftnet.runtime.netstate import list_networks

        every = list_networks(self.paths.root)
        for m in every:
            if m.certificate is None and m.owner and m.revocation_record is not None:
                self.core.vpn.add_published(m.revocation_record)  # the owner spreads its revocations
                self._owned_records += 1
        joined = [m for m in every if m.certificate is not None]
        names = {m.descriptor.name for m in joined}
        for name in sorted(set(self.cfg.networks) - names):
            log.warning("config names a network this node has not joined", extra={"network": name})
        for m in joined:
            await self._start_network(m, self.cfg.networks.get(m.descriptor.name) or NetworkConfig(m.descriptor.name))

    async def _start_network(self, m: Any, nc: NetworkConfig) -> None:
        """One joined network (a netstate Membership): its VpnNetwork, TUN device and reader
        (a layer-2 network: its L2Network, bridge and TAP).

        pyroute2 runs its own event loop, so the netlink work happens in a
        worker thread (which is also the only thread that enters a namespace).
        """
        from weftnet.runtime.tun import cap_superpackets, configure_tun, open_tun, set_offload, set_txqueuelen

        loop = asyncio.get_running_loop()

        def make_tun(tun_name: str, netns: str | None, addrs: list[str], nc: NetworkConfig):
            # Always with the virtio_net_hdr, so offloaded packets from peers can be written.
            workers = self.cfg.workers
            tun = open_tun(tun_name, netns=netns, vnet_hdr=True, multi_queue=workers > 1)
            try:
                if nc.offload:
                    set_offload(tun, uso=True)
                    cap_superpackets(tun.name, GSO_MAX_SIZE, netns=netns)  # one chunk each
                configure_tun(tun.name, addresses=addrs, mtu=nc.effective_mtu(3), netns=netns)
                set_txqueuelen(tun.name, nc.txqueuelen, netns=netns)
                if workers > 1:  # a queue for each worker slot (runtime/dpworkers.py)
                    from weftnet.runtime.dpsteer import open_tun_queues

                    self._new_queues[tun.name] = open_tun_queues(tun.name, workers - 1, vnet_hdr=True, netns=netns)
            except BaseException:
                tun.close()
                raise
            return tun

        now = time.time()
        if m.descriptor.layer == 2:  # a bridge, a TAP and an L2Network (runtime/l2dev.py, docs/l2.md)
            from weftnet.runtime.l2dev import start_l2_network

            vnet, tun, info = await start_l2_network(m, nc, now)
        else:
            vnet, tun, info = await self._start_l3(m, nc, now, make_tun)
        self._tuns[vnet.network_id] = tun
        tun.set_blocking(False)
        if tun.name in self._new_queues:
            self._wq[vnet.network_id] = self._new_queues.pop(tun.name)
            if self.workers is not None:
                self.workers.resync()
        self.core.vpn.add_network(vnet, m.directory, vnet=True, revocation_record=m.revocation_record)
        if m.descriptor.layer != 2 and nc.offload:
            self._coalesce.add(vnet.network_id)
        if m.descriptor.layer != 2 and nc.mtu is None:
            self.tun_mtu.add(vnet.network_id)  # 1280 until path MTU discovery measured the members' paths
        loop.add_reader(tun.fileno(), self._on_tun_readable, vnet.network_id, tun)
        self._tun_info[vnet.network_id.hex()] = info
        self.driver.tun_writer = self._write_tun
        if self._tg is not None:  # joined by a reload: announce it now
            self._ensure_publisher()
            self._publish()

    async def _start_l3(self, m, nc: NetworkConfig, now: float, make_tun):
        name = m.descriptor.name
        mtu = nc.effective_mtu(3)
        try:
            vnet = VpnNetwork(m.descriptor, m.certificate, now, revocations=m.revocations, mtu=mtu,
                              firewall=Firewall.from_config(nc.effective_firewall))
        except CertificateError as exc:
            raise NetworkError(f"network {name!r}: {exc}; ask the owner for a new certificate "
                               f"(weft net join)") from None
        netns = nc.netns or None
        addrs = []
        for a in m.certificate.addresses:
            prefix = next(p for p in m.descriptor.prefixes if p.version == a.version and a in p)
            addrs.append(f"{a}/{prefix.prefixlen}")
        try:
            tun = await asyncio.to_thread(make_tun, nc.tun_name, netns, addrs, nc)
        except NetworkError as exc:
            raise NetworkError(f"network {name!r}: {exc}") from None
        log.info("network up", extra={"network": name, "tun": tun.name, "addresses": ", ".join(addrs),
                                      "netns": netns or "-", "mtu": mtu, "offload": nc.offload,
                                      "directory_records": len(m.directory)})
        return vnet, tun, {"tun": tun.name, "netns": netns}

    async def _start_overlay(self, loop: asyncio.AbstractEventLoop) -> None:
        """The overlay interface and LAN discovery, as configured (docs/overlay.md)."""
        oc = self.cfg.overlay
        if oc.enable:
            self.overlay = OverlayInterface(self.core, self.driver, oc, self.paths.root)
            self.overlay.ack_filter = self.cfg.ack_filter
            if await self.overlay.start(loop):
                self.driver.tun_writer = self._write_tun
        if oc.discovery_interfaces:
            if ":" in self.cfg.listen:
                raise ConfigError("[overlay] discovery uses IPv4 broadcast: it needs an IPv4 [node] listen address")
            self.lan = LanBeacons(self.core, self.driver, oc.discovery_interfaces, oc.discovery_port,
                                  oc.discovery_interval)
            self.lan.start(loop)

    def _stop_network(self, network_id: bytes) -> None:
        """Leave one running network: TUN closed, the core forgets it (sessions stay)."""
        tun = self._tuns.pop(network_id, None)
        for q in self._wq.pop(network_id, ()):
            q.close()
        if self.workers is not None:
            self.workers.resync()
        self.tun_mtu.discard(network_id)
        self._coalesce.discard(network_id)
        if tun is not None:
            asyncio.get_running_loop().remove_reader(tun.fileno())
            tun.close()
        self.core.vpn.remove_network(network_id)
        info = self._tun_info.pop(network_id.hex(), None)
        log.info("network down", extra={"network_id": network_id.hex(), "tun": (info or {}).get("tun", "-")})

    def _start_workers(self) -> None:
        """Fork the data-plane workers once the layer-3 networks are up (runtime/dpworkers.py)."""
        if self.cfg.workers <= 1:
            return
        from weftnet.runtime.dpworkers import WorkerPool

        self.workers = WorkerPool(self, self._group, self._wq, self.cfg.workers)
        self.workers.start()

    def _ensure_publisher(self) -> None:
        if (self._tuns or self._owned_records) and self._publisher is None:
            self._publisher = self.spawn(self._publish_periodically())

    def _close_networks(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.lan is not None:
            self.lan.close()
        if self.overlay is not None:
            self.overlay.close()
        for tun in self._tuns.values():
            loop.remove_reader(tun.fileno())
            tun.close()
        self._tuns.clear()
        for qs in self._wq.values():  # the worker slots' queues (the pool closes them too, if it ran)
            for q in qs:
                q.close()
        self._wq.clear()
        for sock in self._group[1:]:
            sock.close()

    def _on_tun_readable(self, network_id: bytes, tun: Any) -> None:
        packets, self._tun_sparse = read_wakeup(tun.fileno(), self._tun_sparse,
                                                lambda first: self._tun_send(network_id, [first]), log,
                                                "TUN read failed", tun.name)
        if packets:
            if len(packets) > 1 and network_id in self._coalesce:
                packets, acks = prepare_batch(packets, self.cfg.ack_filter)
                self.acks_filtered += acks
            self._tun_send(network_id, packets)

    def _tun_send(self, network_id: bytes, packets: list[bytes]) -> None:
        """Packets read from a network's TUN, sealed and sent (a sparse wake-up's first before the
        reader reads on: tun.read_wakeup)."""
        self.driver.core.vpn_outbound(network_id, packets, time.time())
        self.driver.transmit()

    def _write_tun(self, network_id: bytes, vnet: bytes, packet: bytes) -> None:
        self._tun_written[network_id] = None
        tun = self._tuns.get(network_id)
        if tun is None:
            if network_id == OVERLAY_TUN and self.overlay is not None:
                self.overlay.write(vnet, packet)
            return
        try:
            os.writev(tun.fileno(), (vnet or VNET_NONE, packet))
        except OSError:  # full queue (EAGAIN) or a packet the kernel refuses: like a congested link
            self.tun_write_errors += 1

    def _drain_tuns(self) -> None:
        """Read the TUNs just written to, before going back to the event loop.

        A packet written to a TUN goes through the kernel's stack inside the
        write, so what it makes the host answer (an echo reply, TCP ACKs, a
        local server's response) is already queued on the TUN when the write
        returns. Reading it now sends it on without a loop iteration and an
        epoll wake-up in between: that is half the work of a round trip
        through this node (docs/dataplane.md, "Latency"). The private
        networks' TUNs, the overlay interface's and the VRFs' alike. A TUN
        whose last drain sent nothing is polled before it is read.
        """
        if self._draining or not self._tun_written:
            return
        self._draining = True
        driver, quiet = self.driver, self._drain_quiet
        try:
            written, self._tun_written = self._tun_written, {}
            for network_id in written:
                tun = self._tuns.get(network_id)
                if tun is None and network_id == OVERLAY_TUN and self.overlay is not None:
                    tun = self.overlay.tun
                if tun is None:
                    continue
                if network_id in quiet:
                    # The last drain of this TUN found nothing to send (the pinging end of a ping: the
                    # reply went to a local socket, not back into the TUN). Ask with a zero-timeout
                    # poll instead of a read that fails: on cold caches the read and its
                    # BlockingIOError cost several times the poll, and this runs after the write
                    # that woke the packet's receiver, which on a loaded CPU waits for it.
                    if not queued(tun.fileno()):
                        continue
                sent = driver.sent
                if network_id == OVERLAY_TUN and network_id not in self._tuns:
                    self.overlay._on_readable()
                elif network_id in driver.core.vpn.switch.networks:
                    self._on_tun_readable(network_id, tun)
                elif self.l3vpn is not None:  # a VRF's (runtime/l3vpn.py reads those)
                    self.l3vpn.drain(network_id, tun)
                if driver.sent == sent:
                    if len(quiet) < 4096:  # bounded by the node's TUNs; the bound is a backstop
                        quiet[network_id] = None
                else:
                    quiet.pop(network_id, None)
        finally:
            self._draining = False

    def _publish(self) -> None:
        if self.core.vpn_publish(time.time()):
            self._published_at = time.monotonic()
            self.driver.transmit()

    async def _publish_periodically(self) -> None:
        """Publish our records now and every PUBLISH_INTERVAL; look for revocations every REVOCATION_INTERVAL."""
        self._publish()  # at least into our own store, where a first get finds it
        last_publish = time.monotonic()
        while True:
            await asyncio.sleep(REVOCATION_INTERVAL)
            if self._tuns:
                self.core.vpn_check_revocations(time.time())
                self.driver.transmit()
            if time.monotonic() - last_publish >= PUBLISH_INTERVAL:
                self._publish()
                last_publish = time.monotonic()

    async def _follow_pressure(self) -> None:
        """The short time slice only while the CPUs are contended (runtime/evloop.py, SliceFollower):
        on an idle machine the kernel's default slice gives the lower ping latency."""
        self.slice_follower = follower = evloop.SliceFollower(self.cfg.sched_slice_us, self.cfg.sched_slice_pressure)
        while True:
            follower.check()
            await asyncio.sleep(evloop.PRESSURE_INTERVAL)

    async def _save_periodically(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(SAVE_CHECK)
            if self.core.dht.table.changes != self._saved_changes or time.monotonic() - last >= SAVE_INTERVAL:
                self._save()
                last = time.monotonic()

    def _save(self) -> None:
        if self.store is not None and self.driver is not None:
            changes = self.core.dht.table.changes
            try:
                self.store.save_contacts(self.core.dht.export_contacts(), time.time())
                self._saved_changes = changes
            except Exception as exc:  # persistence trouble must not kill the node (the store logs it)
                log.debug("could not save the routing table", extra={"error": str(exc)})

    def _warn_about_settings(self) -> None:
        """Say which defaults are in force, and whether our own ID passes the network's puzzle."""
        cfg = self.cfg
        if cfg.source is None:
            log.warning("no config file: built-in defaults in force",
                        extra={"expected_at": str(self.paths.config), "listen": f"{cfg.listen}:{cfg.port}",
                               "peers": len(cfg.peers), "id_difficulty": cfg.id_difficulty,
                               "hint": "weft init writes one"})
        if not meets_puzzle(self.identity.node_id, cfg.id_difficulty):
            log.warning("this node's ID does not meet the network's ID puzzle: other nodes will not put it in "
                        "their routing tables; create a new identity with 'weft init --force'",
                        extra={"id_difficulty": cfg.id_difficulty,
                               "id_bits": puzzle_bits(self.identity.node_id.raw)})

    def _on_event(self, ev: NodeEvent) -> None:
        if ev.kind == "peer_up":
            # A new neighbour may be closer to our directory keys than any before:
            # publish again, at most every 30 s (a join storm must not become a publish storm).
            if (self._tuns or self._owned_records) and (self._published_at is None or time.monotonic() - self._published_at > 30.0):
                self._published_at = time.monotonic()
                asyncio.get_running_loop().call_later(1.0, self._publish)
            log.info("session up", extra={"peer": ev.node_id.text(), "endpoint": describe_path(ev.endpoint)})
        elif ev.kind == "path_mtu":
            log.info("path MTU measured", extra={"peer": ev.node_id.text(), "datagram": ev.datagram,
                                                 "link_mtu": ev.link_mtu})
            self.tun_mtu.on_path_mtu(ev.node_id)
        elif ev.kind == "peer_down":
            log.info("session down", extra={"peer": ev.node_id.text(), "reason": ev.reason})
        elif ev.kind == "text":
            log.info("message received", extra={"origin": ev.origin.text(), "text": ev.text})
        elif ev.kind == "path":
            log.info("path changed", extra={"peer": ev.node_id.text(), "path": ev.path, "previous": ev.previous})
        elif ev.kind in ("reach", "paths"):
            log.info(ev.what, extra={"detail": ev.detail})
        elif ev.kind == "lan_peer":
            log.info("LAN peer found", extra={"peer": ev.node_id.text(), "endpoint": f"{ev.endpoint[0]}:{ev.endpoint[1]}"})
        elif isinstance(ev, VpnRevocations):
            from weftnet.runtime.netstate import save_revocations

            if self.workers is not None:
                self.workers.resync()  # a revoked member must not keep a worker's copy of its routes

            try:
                save_revocations(self.paths.root, ev.network, ev.revocations, ev.record)
            except (OSError, WeftError) as exc:
                log.warning("could not store the revocation list", extra={"network": ev.network, "error": str(exc)})
            log.warning("revocation list installed", extra={"network": ev.network, "seq": ev.revocations.seq,
                                                           "own_certificate_revoked": ev.own_revoked})
        elif isinstance(ev, VpnMemberEvent):
            if self.workers is not None:
                self.workers.resync()  # the workers restart from the main process's members and routes
            self.tun_mtu.on_path_mtu(ev.node_id)  # a member whose path was measured before it was known
            log.info(f"network member {ev.change}", extra={"network": ev.network, "member": ev.node_id.text(),
                                                          "detail": ev.detail})
            if ev.change == "added" and hasattr(getattr(self.bgp, "dataplane", None), "retry_waiting"):
                self.bgp.dataplane.retry_waiting()  # EVPN routes that named this member before we knew it
        elif isinstance(ev, VpnLocalBinding) and hasattr(getattr(self.bgp, "dataplane", None), "local_binding"):
            self.bgp.dataplane.local_binding(self.bgp, ev.network_id, ev.mac, ev.ip)

    # -- control handlers -------------------------------------------------------
    def _handlers(self) -> dict[str, Any]:
        async def status(req):
            st = self.core.status(time.time())
            for n in st["networks"]:
                n.update(self._tun_info.get(n["network_id"], {}))
            st["tun_write_errors"] = self.tun_write_errors
            st["reach"]["links"] = dict(self.driver.links.stats)
            st["dataplane"] = {"pmtu": self.core.pmtu.status(), "probes_sent": self.driver.probes_sent,
                               "probe_send_errors": self.driver.probe_errors, "tun_mtu_changes": self.tun_mtu.changes,
                               "event_loop": evloop.loop_name(asyncio.get_running_loop()),
                               "sched_slice_us": evloop.current_slice(),
                               "cpu_pressure": (self.slice_follower.pressure
                                                if self.slice_follower is not None else None),
                               "datagrams_sent": self.driver.sent, "gso_sends": self.driver.gso_sends,
                               "datagrams_received": self.driver.received, "send_errors": self.driver.send_errors,
                               "send_dropped": self.driver.dropped, "heap_kept": self.heap_kept,
                               "acks_filtered": self.acks_filtered}
            if self.workers is not None:
                st["dataplane"]["workers"] = self.workers.status()
            counters = pathsctl.link_counters(self)
            for link in st["paths"]["links"]:
                link.update(counters.get(link["name"], {}))
            if self.overlay is not None:
                st["overlay"].update(self.overlay.status())
            if self.bgp is not None:
                st["bgp"] = self.bgp.stats()
            if self.l3vpn is not None:
                st["l3vpn"].update(self.l3vpn.status())
            return st

        async def peers(req):
            return self.core.peers(time.time())

        async def reach(req):
            st = self.core.reach.status(time.time())
            st["links"] = dict(self.driver.links.stats)
            return st

        async def ping(req):
            ref = parse_node_ref(str(req["target"]))
            return (await self.driver.request(lambda c, t: c.ping(ref, t))).to_dict()

        async def send(req):
            text = req["text"]
            if not isinstance(text, str):
                raise ParseError("text must be a string")
            target: NodeId | bytes = _target(req["target"]) if not _is_hex_key(req["target"]) else _key(req["target"])
            return (await self.driver.request(lambda c, t: c.send_text(target, text, t))).to_dict()

        async def trace(req):
            target = parse_node_ref(str(req["target"]))
            return (await self.driver.request(lambda c, t: c.trace(target, t))).to_dict()

        async def put(req):
            value = bytes.fromhex(req["value_hex"]) if "value_hex" in req else str(req["value"]).encode()
            salt = req.get("salt")
            salt_b = str(salt).encode() if salt is not None else None
            return (await self.driver.request(lambda c, t: c.put(value, t, mutable_salt=salt_b))).to_dict()

        async def get(req):
            key = _key(req["key"])
            quorum = req.get("quorum")  # None: the safe read (mutable: highest seq of several holders)
            quorum = None if quorum is None else int(quorum)
            return (await self.driver.request(lambda c, t: c.get(key, t, quorum=quorum))).to_dict()

        async def lookup(req):
            target = _target(req["target"])
            return (await self.driver.request(lambda c, t: c.lookup(target, t))).to_dict()

        async def connect(req):
            peer = parse_peer(str(req["peer"]))
            if peer.tcp:
                try:
                    link, _closed = await self.driver.links.connect(peer.host, peer.port)
                except (OSError, asyncio.TimeoutError) as exc:
                    return {"kind": "connected", "op_id": 0, "ok": False, "node_id": None,
                            "error": f"TCP connection to {peer.host}:{peer.port} failed: {exc}"}
                ev = await self.driver.request(lambda c, t: c.connect(link, t, peer.node_id))
                return ev.to_dict()
            ev = await self.driver.request(lambda c, t: c.connect((peer.host, peer.port), t, peer.node_id))
            return ev.to_dict()

        async def reload(req):
            report = await self.reloader.reload()
            if self.workers is not None:
                self.workers.resync()  # firewall rules and networks as reloaded
            return report.to_dict()

        async def overlay_rules(req):
            if self.overlay is None:
                raise ConfigError("the overlay interface is off ([overlay] enable = false)")
            if req.get("action") == "list":
                return self.overlay.status()["rules"]
            return self.overlay.apply_rules(str(req["action"]), req["rule"])

        async def bgp_summary(req):
            if self.bgp is None:
                raise ConfigError("BGP is not configured on this node (no [bgp] section)")
            return self.bgp.summary()

        async def bgp_routes(req):
            if self.bgp is None:
                raise ConfigError("BGP is not configured on this node (no [bgp] section)")
            return self.bgp.routes(req.get("afi"), int(req.get("limit", 100_000)))

        async def vrf_ls(req):
            return self.l3vpn.vrf_list() if self.l3vpn is not None else []

        async def vrf_routes(req):
            if self.l3vpn is None:
                raise ConfigError("no VRF is configured on this node (no [vrf.NAME] tables)")
            return await self.l3vpn.vrf_routes(str(req.get("name", "")), bool(req.get("kernel", False)))

        return {"status": status, "peers": peers, "ping": ping, "send": send, "trace": trace,
                "put": put, "get": get, "lookup": lookup, "connect": connect, "overlay_rules": overlay_rules,
                "reload": reload, "bgp_summary": bgp_summary, "bgp_routes": bgp_routes,
                "vrf_ls": vrf_ls, "vrf_routes": vrf_routes, "reach": reach, **pathsctl.handlers(self)}


def _is_hex_key(text: Any) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


class _Shutdown(Exception):
    pass


def run(state_dir: Path, cfg: Config, loader: Callable[[], Config] | None = None) -> None:
    daemon = Daemon(state_dir, cfg, loader)
    daemon.own_process = True
    if cfg.sched_slice_us:  # a short slice: a packet's wake-up preempts sooner (runtime/evloop.py)
        evloop.request_slice(cfg.sched_slice_us)
    evloop.run(daemon.run(), cfg.event_loop)  # uvloop where installed
