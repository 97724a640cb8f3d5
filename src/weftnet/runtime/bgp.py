"""The asyncio driver of the BGP speaker: TCP sockets, one timer, and the EVPN dataplane. Nothing else.

The protocol lives in ``weftnet.core.bgp`` (sans-IO). This module listens on
``[bgp] listen``/``port``, opens the outbound connections the speaker asks for
(``Connect``; one attempt per peer at a time, 10 s to connect; the speaker
decides when to retry, with backoff), writes ``Send``, closes on ``Close``,
feeds received bytes and TCP events back, and re-arms one ``loop.call_at`` at
``speaker.get_timer()``. The clock is the event loop's monotonic time.
With ``[[bgp.evpn]]`` it also runs the Linux EVPN dataplane
(``evpn_linux.py``) and its bridge monitor.

``WEFTNET_BGP_TRACE=FILE`` appends every message the speaker sends to FILE,
one line each: ``out PEER-CONN HEX`` (for debugging; the interop tests decode
the UPDATEs in it with exabgp).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from typing import Any

from weftnet.core.bgp import Close, Connect, PeerDown, PeerUp, Send, Speaker, SpeakerConfig, parse_family
from weftnet.core.bgp.evpn import Evpn
from weftnet.core.bgp.policy import RouteTargetImport
from weftnet.errors import ConfigError, ParseError
from weftnet.runtime.bgpconfig import BgpSettings

__all__ = ["BgpService"]

log = logging.getLogger("weftnet.bgp")
CONNECT_TIMEOUT = 10.0
READ_LIMIT = 1 << 20  # bytes buffered by the transport before reading pauses


class _Conn(asyncio.Protocol):
    def __init__(self, svc: "BgpService", conn_id: int, peer_key: str | None):
        self.svc, self.id, self.peer_key = svc, conn_id, peer_key
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local = transport.get_extra_info("sockname")[0]
        remote = transport.get_extra_info("peername")[0]
        self.svc._conns[self.id] = self
        now = self.svc.now()
        if self.peer_key is None:  # inbound
            if not self.svc.speaker.connection_accepted(self.id, local, remote, now):
                log.info("refused BGP connection", extra={"remote": remote})
                self.svc._conns.pop(self.id, None)
                transport.close()
                return
        else:
            self.svc.speaker.connection_made(self.peer_key, self.id, local, remote, now)
        self.svc.transmit()

    def data_received(self, data: bytes) -> None:
        self.svc.speaker.data_received(self.id, data, self.svc.now())
        self.svc.transmit()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.id in self.svc._conns:
            self._read_leftover()
        if self.svc._conns.pop(self.id, None) is not None:
            self.svc.speaker.connection_lost(self.id, self.svc.now())
            self.svc.transmit()

    def _read_leftover(self) -> None:
        """Feed what the peer sent and we had not read yet when the connection failed.

        A write that fails (the peer reset the connection, or closed it and reset our next segment)
        makes asyncio drop the transport without reading the socket again, yet the kernel still holds
        every byte that arrived before the reset: typically the peer's NOTIFICATION (RFC 4271 6: it
        is sent before the connection is closed). Processing it tells an administrative shutdown
        from a crash: the NOTIFICATION is counted and a graceful restart is not assumed (RFC 4724 4.2).
        """
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None or sock.fileno() < 0:
            return
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)  # asyncio's socket object cannot recv
        except OSError:
            return
        try:
            dup.setblocking(False)
            left = READ_LIMIT
            while left > 0 and self.id in self.svc._conns:
                try:
                    data = dup.recv(min(left, 65536))
                except OSError:  # nothing more (EAGAIN) or the reset itself once the bytes are read
                    break
                if not data:
                    break
                left -= len(data)
                self.data_received(data)
        finally:
            dup.close()


def _netns_socket(netns: str, host: str, port: int | None = None) -> socket.socket:
    """A non-blocking TCP socket created inside network namespace ``netns`` (listening on ``host:port``
    when ``port`` is given). A socket stays in the namespace it was made in, so the event loop can
    use it from anywhere. Runs in a worker thread: only that thread enters the namespace."""
    from pyroute2 import netns as pr_netns

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    pr_netns.pushns(netns)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    finally:
        pr_netns.popns()
    try:
        sock.setblocking(False)
        if port is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock


class BgpService:
    def __init__(self, settings: BgpSettings, loop: asyncio.AbstractEventLoop | None = None, dataplane: Any = None,
                 *, netns: str | None = None):
        """``netns``: every socket (listening and outbound) lives in that network namespace (a VRF's
        CE sessions, docs/l3vpn.md); None: the daemon's own."""
        self.settings = settings
        self.netns = netns
        self.loop = loop or asyncio.get_event_loop()
        self.speaker = Speaker(SpeakerConfig(settings.asn, settings.router_id, settings.families,
                                             settings.cluster_id, settings.graceful_restart_time),
                               random.SystemRandom(), self.now())
        self.rt_import = RouteTargetImport()
        self.speaker.import_policy = self.rt_import if settings.evpn else None
        for p in settings.peers:
            self.speaker.add_peer(p, self.now())
        self.dataplane = dataplane
        self.evpn: Evpn | None = None
        self.monitor = None
        self._conns: dict[int, _Conn] = {}
        self._next_conn = 1
        self._attempts: dict[str, asyncio.Task] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._bridges: dict[int, int] = {}  # bridge ifindex -> vni
        trace = os.environ.get("WEFTNET_BGP_TRACE")
        self._trace = open(trace, "a", buffering=1) if trace else None  # noqa: SIM115 - closed in close()

    def now(self) -> float:
        return self.loop.time()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, tg: asyncio.TaskGroup | None = None) -> None:
        """Set up EVPN devices, listen, start the peers. Connect attempts are tasks of ``tg`` if given, else
        tasks this service owns (tracked per peer, cancelled by :meth:`close`)."""
        self._tg = tg
        s = self.settings
        if s.evpn:
            if self.dataplane is None:
                from weftnet.runtime.evpn_linux import LinuxEvpnDataplane

                self.dataplane = LinuxEvpnDataplane(s.vxlan_port)
            self.evpn = Evpn(self.speaker, self.dataplane, self.rt_import)
            for evi in s.evpn:  # device set-up runs on the dataplane's netlink thread; a few ms each
                self.evpn.add_instance(evi, self.now())
            devices = getattr(self.dataplane, "devices", {})
            self._bridges = {br: vni for vni, (br, _vx) in devices.items()}
            if self._bridges:
                from weftnet.runtime.evpn_linux import BridgeMonitor

                self.monitor = BridgeMonitor(self.loop, {br: devices[vni][1] for br, vni in self._bridges.items()},
                                             self._on_bridge)
                await asyncio.to_thread(self.monitor.start)
        if s.listen:
            try:
                if self.netns:
                    sock = await asyncio.to_thread(_netns_socket, self.netns, s.listen, s.port)
                    self._server = await self.loop.create_server(lambda: self._inbound(), sock=sock)
                else:
                    self._server = await self.loop.create_server(lambda: self._inbound(), s.listen, s.port,
                                                                 reuse_address=True)
            except OSError as exc:
                raise ConfigError(f"[bgp] cannot listen on {s.listen}:{s.port}: {exc.strerror}") from None
        self.speaker.start(self.now())
        log.info("bgp up", extra={"asn": s.asn, "router_id": str(s.router_id), "listen": f"{s.listen}:{s.port}",
                                  "peers": len(s.peers), "vnis": len(s.evpn)})
        self.transmit()

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.speaker.stop(self.now())
        self.transmit()
        if self._timer is not None:
            self._timer.cancel()
        for t in self._attempts.values():
            t.cancel()
        if self._server is not None:
            self._server.close()
        for c in list(self._conns.values()):
            if c.transport is not None:
                c.transport.close()
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.stop)
        if self.dataplane is not None and hasattr(self.dataplane, "close"):
            await asyncio.to_thread(self.dataplane.close)
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    def _inbound(self) -> _Conn:
        cid = self._next_conn
        self._next_conn += 1
        return _Conn(self, cid, None)

    # -- the thin loop ------------------------------------------------------------------------
    def transmit(self) -> None:
        for act in self.speaker.actions():
            if isinstance(act, Send):
                if self._trace is not None:
                    self._trace.write(f"out {act.conn} {act.data.hex()}\n")
                c = self._conns.get(act.conn)
                if c is not None and c.transport is not None and not c.transport.is_closing():
                    c.transport.write(act.data)
            elif isinstance(act, Close):
                c = self._conns.pop(act.conn, None)
                if c is not None and c.transport is not None:
                    c.transport.close()
            elif isinstance(act, Connect):
                old = self._attempts.pop(act.peer, None)
                if old is not None:
                    old.cancel()
                spawn = self._tg.create_task if self._tg is not None else self.loop.create_task
                self._attempts[act.peer] = spawn(self._connect(act))
        while (ev := self.speaker.next_event()) is not None:
            if isinstance(ev, PeerUp):
                log.info("bgp session up", extra={"peer": ev.peer, "families": ", ".join(ev.families)})
            elif isinstance(ev, PeerDown):
                log.info("bgp session down", extra={"peer": ev.peer, "reason": ev.reason, "graceful": ev.graceful})
        if self.dataplane is not None and hasattr(self.dataplane, "flush"):
            self.dataplane.flush()
        self._arm()

    def _arm(self) -> None:
        t = self.speaker.get_timer()
        if self._timer is not None:
            if t is not None and abs(self._timer.when() - t) < 1e-6:
                return
            self._timer.cancel()
            self._timer = None
        if t is not None:
            self._timer = self.loop.call_at(max(t, self.loop.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.speaker.handle_timer(self.now())
        self.transmit()

    async def _connect(self, act: Connect) -> None:
        cid = self._next_conn
        self._next_conn += 1
        try:
            if self.netns:
                await asyncio.wait_for(self._connect_in_netns(act, cid), CONNECT_TIMEOUT)
            else:
                await asyncio.wait_for(self.loop.create_connection(lambda: _Conn(self, cid, act.peer), act.host,
                                                                   act.port), CONNECT_TIMEOUT)
        except asyncio.CancelledError:
            return
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("bgp connect failed", extra={"peer": act.peer, "error": str(exc)})
            self.speaker.connect_failed(act.peer, self.now())
            self.transmit()
        finally:
            if self._attempts.get(act.peer) is asyncio.current_task():
                del self._attempts[act.peer]

    async def _connect_in_netns(self, act: Connect, cid: int) -> None:
        sock = await asyncio.to_thread(_netns_socket, self.netns, act.host)
        try:
            await self.loop.sock_connect(sock, (act.host, act.port))
            await self.loop.create_connection(lambda: _Conn(self, cid, act.peer), sock=sock)
        except BaseException:
            sock.close()
            raise

    def _on_bridge(self, kind: str, bridge: int, mac: bytes) -> None:
        vni = self._bridges.get(bridge)
        if vni is None or self.evpn is None:
            return
        if kind == "learned":
            self.evpn.local_mac(vni, mac, self.now())
        elif mac in self.evpn.instances[vni].local_macs:
            self.evpn.local_mac_gone(vni, mac, self.now())
        else:
            return  # one of the remote MACs we installed: nothing to do
        self.transmit()

    # -- control API ------------------------------------------------------------------------------
    def summary(self) -> dict:
        out = self.speaker.summary(self.now())
        if self.evpn is not None:
            out["evpn"] = self.evpn.status()
            out["dataplane"] = dict(getattr(self.dataplane, "stats", {}))
        return out

    def routes(self, afi: str | None, limit: int = 100_000) -> dict:
        try:
            fams = [parse_family(afi)] if afi else list(self.settings.families)
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        return {str(f): self.speaker.routes(f, limit) for f in fams}

    def stats(self) -> dict:
        st = dict(self.speaker.stats)
        st["peers_established"] = sum(1 for p in self.speaker.peers.values() if p.established is not None)
        st["peers"] = len(self.speaker.peers)
        st["routes"] = {str(f): self.speaker.rib.count(f) for f in self.settings.families}
        if self.dataplane is not None:
            st["dataplane"] = dict(getattr(self.dataplane, "stats", {}))
        return st
