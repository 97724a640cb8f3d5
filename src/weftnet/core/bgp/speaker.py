"""The BGP speaker: configured peers, their sessions, the RIBs and the UPDATEs that follow from them. Sans-IO.

Theory of operation
-------------------
A :class:`Speaker` holds one :class:`Peer` per configured neighbour, each with
one :class:`~weftnet.core.bgp.session.PeerSession` (two for a moment while a
connection collision, RFC 4271 6.8, is being resolved). The driver owns the
TCP sockets and feeds the speaker:

    connection_made(peer, conn, local, remote, now)   our connect succeeded
    connect_failed(peer, now)
    connection_accepted(conn, local, remote, now)      inbound; False: close it
    data_received(conn, data, now) / connection_lost(conn, now)
    handle_timer(now)

and after each call performs :meth:`actions` (``Connect``, ``Send``,
``Close``) and re-arms one timer at :meth:`get_timer`. Routes come in from
peers (Adj-RIB-In, through the import policy) and from the application
(:meth:`originate` / :meth:`withdraw`); the Loc-RIB picks the best path per
key (``rib.py``); changed keys are marked and, at the end of every input,
:meth:`_flush` computes each peer's Adj-RIB-Out (export rules below plus the
export policy) and packs the differences into as few UPDATEs as fit in 4096
octets. Listeners (:meth:`add_listener`) hear every best-path change; that is
how the EVPN instance (``evpn.py``) and a future VRF layer see routes.

Export rules (RFC 4271 9.2, RFC 4456): a route never goes back to the peer it
came from; iBGP-learned routes go to iBGP peers only when reflected (from or
to a route-reflector client), with ORIGINATOR_ID and CLUSTER_LIST set; to
eBGP peers the local AS is prepended, LOCAL_PREF/ORIGINATOR_ID/CLUSTER_LIST
are removed, MED is kept only on routes we originate, and the next hop becomes
this end of the TCP connection except for EVPN (the VTEP address must survive,
as FRR and RFC 8365 expect); to iBGP peers LOCAL_PREF is set (100 unless a
policy said otherwise) and the next hop is kept (``next_hop_self`` overrides
it for unicast families). On receipt: routes with our AS in the AS_PATH from
eBGP, or our ORIGINATOR_ID / CLUSTER_ID, are dropped (loop prevention).

Graceful restart (RFC 4724, receiving speaker): when a session of a peer that
advertised the capability ends without a NOTIFICATION, its routes stay, marked
stale, for the peer's restart time; if it comes back they are kept until its
End-of-RIB (or ``stale_time``), then the stale ones left are removed; families
it no longer lists with the Forwarding State bit are flushed at once.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from weftnet.core.bgp import errors as E
from weftnet.core.bgp.attributes import (
    IGP, AsPath, Attributes, ClusterList, LocalPref, MpReach, MpUnreach, NextHop, Origin, OriginatorId,
)
from weftnet.core.bgp.family import IPV4_UNICAST, L2VPN_EVPN, SAFI_VPN, Family
from weftnet.core.bgp.fsm import State
from weftnet.core.bgp.message import MAX_LEN
from weftnet.core.bgp.nlri import Nlri
from weftnet.core.bgp.rib import LOCAL_SOURCE, LocRib, Path, PeerInfo
from weftnet.core.bgp.session import Close, PeerConfig, PeerSession
from weftnet.core.bgp.update import ParsedUpdate, Update, end_of_rib

__all__ = ["SpeakerConfig", "Speaker", "Peer", "PeerUp", "PeerDown", "ImportPolicy", "ExportPolicy"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: import(peer, path) -> path to keep (possibly changed) or None to reject
ImportPolicy = Callable[[PeerInfo, Path], "Path | None"]
#: export(peer, path, attrs) -> attributes to send or None to hold the route back
ExportPolicy = Callable[[PeerInfo, Path, Attributes], "Attributes | None"]
Listener = Callable[[Family, bytes, "Path | None", "Path | None", float], None]
#: path_listener(family, key, source key, path or None, nlri, now): every candidate path change, best or not
PathListener = Callable[[Family, bytes, str, "Path | None", Nlri, float], None]
MAX_UPDATE_BODY = MAX_LEN - 19


@dataclass(frozen=True)
class SpeakerConfig:
    asn: int
    router_id: ipaddress.IPv4Address
    families: tuple[Family, ...] = (IPV4_UNICAST,)
    cluster_id: ipaddress.IPv4Address | None = None  # default: the router ID (RFC 4456 7)
    graceful_restart_time: int = 120
    stale_time: float = 360.0  # how long stale routes wait for the End-of-RIB after a restart


@dataclass(frozen=True)
class PeerUp:
    peer: str
    families: tuple[str, ...]


@dataclass(frozen=True)
class PeerDown:
    peer: str
    reason: str
    graceful: bool


@dataclass
class Peer:
    cfg: PeerConfig
    sessions: list[PeerSession]
    info: PeerInfo | None = None
    adj_in: dict[Family, dict[bytes, Path]] = field(default_factory=dict)
    adj_out: dict[Family, dict[bytes, tuple[Attributes, IPAddress | None, Nlri]]] = field(default_factory=dict)
    restart_deadline: float | None = None  # graceful restart: the peer must be back by then
    stale_deadline: float | None = None  # after it is back: stale routes removed by then
    stale_families: set[Family] = field(default_factory=set)
    up_since: float | None = None
    prefixes_in: int = 0
    pending_refresh: set[Family] = field(default_factory=set)

    @property
    def session(self) -> PeerSession:
        return self.sessions[0]

    @property
    def established(self) -> PeerSession | None:
        for s in self.sessions:
            if s.state == State.ESTABLISHED:
                return s
        return None


class Speaker:
    def __init__(self, cfg: SpeakerConfig, rng: Any, now: float):
        self.cfg = cfg
        self.rng = rng
        self.cluster_id = cfg.cluster_id or cfg.router_id
        self.peers: dict[str, Peer] = {}
        self.rib = LocRib()
        self._conns: dict[int, PeerSession] = {}
        self._owner: dict[int, Peer] = {}  # id(session) -> peer
        self._events: deque = deque()
        self._notices: deque = deque(maxlen=1000)  # PeerUp / PeerDown for logs; bounded if nobody reads
        self._listeners: list[Listener] = []
        self._path_listeners: list[PathListener] = []
        self._dirty: dict[Family, dict[bytes, Nlri]] = {}
        self._seq = 0
        self._local: dict[Family, dict[bytes, Path]] = {}
        self.import_policy: ImportPolicy | None = None
        self.export_policy: ExportPolicy | None = None
        self.started = False
        self.stats = {"connections_rejected": 0, "updates_in": 0, "updates_out": 0, "routes_in": 0,
                      "withdrawals_in": 0, "treat_as_withdraw": 0, "loops_dropped": 0, "policy_rejected": 0,
                      "stale_removed": 0, "notifications_out": 0}

    # -- configuration ----------------------------------------------------------------
    def add_peer(self, cfg: PeerConfig, now: float) -> Peer:
        if cfg.key in self.peers:
            raise ValueError(f"peer {cfg.key} is configured twice")
        peer = Peer(cfg, [])
        self.peers[cfg.key] = peer
        peer.sessions.append(self._new_session(peer))
        if self.started:
            peer.session.start(now)
        return peer

    def remove_peer(self, key: str, now: float) -> None:
        peer = self.peers.get(key)
        if peer is None:
            return
        for s in peer.sessions:
            s.stop(now, E.PEER_DECONFIGURED)
        self._drop_routes(peer, now, set(peer.adj_in))
        self._collect(peer)
        del self.peers[key]
        self._flush(now)

    def _new_session(self, peer: Peer) -> PeerSession:
        s = PeerSession(peer.cfg, self.cfg.asn, self.cfg.router_id, self, self.rng,
                        graceful_restart_time=self.cfg.graceful_restart_time,
                        local_families=tuple(f for f in peer.cfg.families if f in self.cfg.families) or peer.cfg.families)
        self._owner[id(s)] = peer
        return s

    def start(self, now: float) -> None:
        self.started = True
        for p in self.peers.values():
            p.session.start(now)

    def stop(self, now: float) -> None:
        self.started = False
        for p in self.peers.values():
            for s in p.sessions:
                s.stop(now)
        self._flush(now)

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def add_path_listener(self, fn: PathListener) -> None:
        """Hear every path a source adds, replaces or withdraws, whether or not it is the best: a VRF
        layer learns a CE's routes this way even while a route it originated for that prefix wins."""
        self._path_listeners.append(fn)

    # -- driver inputs ---------------------------------------------------------------------
    def connection_made(self, peer_key: str, conn: int, local: str, remote: str, now: float) -> None:
        peer = self.peers.get(peer_key)
        if peer is None:
            self._events.append(Close(conn))
            return
        s = peer.session
        if s.conn is None and s.state in (State.CONNECT, State.ACTIVE):
            target = s
        elif len(peer.sessions) == 1 and s.state in (State.OPENSENT, State.OPENCONFIRM):
            target = self._second_session(peer, now)  # our late connect collides with an accepted one
        else:
            self._events.append(Close(conn))
            return
        self._conns[conn] = target
        target.connection_made(conn, True, local, remote, now)
        self._after(now)

    def connect_failed(self, peer_key: str, now: float) -> None:
        peer = self.peers.get(peer_key)
        if peer is not None:
            peer.session.connect_failed(now)
        self._after(now)

    def connection_accepted(self, conn: int, local: str, remote: str, now: float) -> bool:
        """An inbound connection from ``remote``: False means refuse it (not a configured peer, or busy)."""
        peer = self._peer_by_address(remote)
        if peer is None or not self.started:
            self.stats["connections_rejected"] += 1
            return False
        s = peer.session
        if s.state == State.IDLE and not s.stopped and s.conn is None:
            s.handle_idle_accept(now)
        if s.conn is None and s.state in (State.CONNECT, State.ACTIVE):
            target = s
        elif len(peer.sessions) == 1 and s.state in (State.OPENSENT, State.OPENCONFIRM):
            target = self._second_session(peer, now)
        else:
            self.stats["connections_rejected"] += 1
            return False
        self._conns[conn] = target
        target.connection_made(conn, False, local, remote, now)
        self._after(now)
        return True

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        s = self._conns.get(conn)
        if s is None:
            return
        s.data_received(data, now)
        self._after(now)

    def connection_lost(self, conn: int, now: float) -> None:
        s = self._conns.pop(conn, None)
        if s is None or s.conn != conn:
            return
        s.conn = None  # the socket is gone: nothing more to send on it
        s.connection_lost(now)
        self._after(now)

    def handle_timer(self, now: float) -> None:
        for peer in list(self.peers.values()):
            for s in list(peer.sessions):
                t = s.get_timer()
                if t is not None and t <= now:
                    s.handle_timer(now)
            if peer.restart_deadline is not None and peer.restart_deadline <= now:
                peer.restart_deadline = None
                self._remove_stale(peer, set(peer.stale_families), now)
            if peer.stale_deadline is not None and peer.stale_deadline <= now:
                peer.stale_deadline = None
                self._remove_stale(peer, set(peer.stale_families), now)
        self._after(now)

    def get_timer(self) -> float | None:
        ts = []
        for peer in self.peers.values():
            ts += [s.get_timer() for s in peer.sessions]
            ts += [peer.restart_deadline, peer.stale_deadline]
        ts = [t for t in ts if t is not None]
        return min(ts) if ts else None

    def actions(self) -> list:
        """What the driver must do now: Connect, Send and Close, in order."""
        out = list(self._events)
        self._events.clear()
        for peer in self.peers.values():
            for s in peer.sessions:
                self._collect_session(s, out)
        return out

    def _collect(self, peer: Peer) -> None:
        out: list = []
        for s in peer.sessions:
            self._collect_session(s, out)
        self._events.extend(out)

    def _collect_session(self, s: PeerSession, out: list) -> None:
        while s.actions:
            a = s.actions.popleft()
            if isinstance(a, Close):
                self._conns.pop(a.conn, None)
            out.append(a)

    def next_event(self) -> PeerUp | PeerDown | None:
        return self._notices.popleft() if self._notices else None

    def _notice(self, ev) -> None:
        self._notices.append(ev)

    # -- collisions --------------------------------------------------------------------------
    def _peer_by_address(self, remote: str) -> Peer | None:
        try:
            addr = ipaddress.ip_address(remote.split("%")[0])
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        for p in self.peers.values():
            try:
                if ipaddress.ip_address(p.cfg.address) == addr:
                    return p
            except ValueError:
                continue
        return None

    def _second_session(self, peer: Peer, now: float) -> PeerSession:
        s = self._new_session(peer)
        s.stopped = False
        s.state = State.ACTIVE  # as after a passive start: waiting for the connection we have
        peer.sessions.append(s)
        return s

    def session_open_received(self, s: PeerSession, now: float) -> None:
        """RFC 4271 6.8: with two connections, keep the one opened by the side with the higher BGP ID."""
        peer = self._owner[id(s)]
        others = [o for o in peer.sessions if o is not s and o.conn is not None]
        if not others:
            return
        o = others[0]
        if o.state == State.ESTABLISHED:
            s.dump_collision(now)
        elif o.state == State.OPENCONFIRM:
            assert s.neg is not None
            keep_outbound = int(self.cfg.router_id) > int(s.neg.peer_id)
            loser = o if (s.outbound == keep_outbound) else s
            loser.dump_collision(now)
        else:
            return
        self._collect(peer)
        self._prune(peer)

    def _prune(self, peer: Peer) -> None:
        """Forget a session that lost a collision; the survivor becomes the peer's session.

        A session without a connection is a loser, whatever its state: one whose connection the
        peer closed in OpenSent is back in Active (8.2.2) and would otherwise retry on its own next
        to the survivor, and take its place (and show its counters) when the survivor's session ends.
        With no connection left at all, the peer's own session stays."""
        if len(peer.sessions) < 2:
            return
        live = [s for s in peer.sessions if s.conn is not None] or peer.sessions[:1]
        dead = [s for s in peer.sessions if s not in live]
        for s in dead:
            s.idle_hold_at = s.retry_at = None
            self._owner.pop(id(s), None)
        peer.sessions = live

    # -- session callbacks (SessionOwner) -----------------------------------------------------------
    def session_established(self, s: PeerSession, now: float) -> None:
        peer = self._owner[id(s)]
        n = s.neg
        assert n is not None
        try:
            addr = ipaddress.ip_address((s.remote_address or peer.cfg.address).split("%")[0])
        except ValueError:
            addr = ipaddress.IPv4Address(0)
        peer.info = PeerInfo(peer.cfg.key, n.peer_as, n.peer_id, addr, n.peer_as == self.cfg.asn,
                             peer.cfg.route_reflector_client)
        peer.up_since = now
        if peer.sessions[0] is not s:  # the collision survivor is the peer's session from now on
            peer.sessions.remove(s)
            peer.sessions.insert(0, s)
        peer.restart_deadline = None
        if peer.stale_families:
            gr = n.graceful_restart
            keep = {f for f, fwd in (gr.families if gr else ()) if fwd}
            self._remove_stale(peer, peer.stale_families - keep, now)
            if peer.stale_families:
                peer.stale_deadline = now + self.cfg.stale_time
        peer.adj_out = {}
        self._notice(PeerUp(peer.cfg.key, tuple(sorted(str(f) for f in n.families))))
        for fam in sorted(n.families):
            self._send_table(peer, s, fam, now)
        self._flush(now)  # the whole table first, then End-of-RIB per family (RFC 4724 section 2)
        for fam in sorted(n.families):
            s.send_update_bytes(end_of_rib(fam).encode(n.asn4))
        self._collect(peer)

    def session_released(self, s: PeerSession, graceful: bool, now: float) -> None:
        peer = self._owner.get(id(s))
        if peer is None:
            return
        peer.up_since = None
        peer.adj_out = {}
        n = s.neg
        reason = s.last_error or "connection closed"
        if graceful and n is not None and n.graceful_restart is not None:
            gr_fams = {f for f, _ in n.graceful_restart.families}
            self._drop_routes(peer, now, set(peer.adj_in) - gr_fams)
            for fam in gr_fams & set(peer.adj_in):
                for p in peer.adj_in[fam].values():
                    p.stale = True
                peer.stale_families.add(fam)
            peer.restart_deadline = now + n.graceful_restart.restart_time if peer.stale_families else None
        else:
            self._drop_routes(peer, now, set(peer.adj_in))
        self._notice(PeerDown(peer.cfg.key, reason, graceful and bool(peer.stale_families)))
        self._flush(now)

    def session_update(self, s: PeerSession, upd: ParsedUpdate, now: float) -> None:
        peer = self._owner[id(s)]
        info = peer.info
        if info is None:
            return
        self.stats["updates_in"] += 1
        if upd.treat_as_withdraw:
            self.stats["treat_as_withdraw"] += 1
        if upd.end_of_rib is not None:
            if upd.end_of_rib in peer.stale_families:
                self._remove_stale(peer, {upd.end_of_rib}, now)
            return
        for fam, nlris in upd.withdrawn.items():
            table = peer.adj_in.get(fam)
            if not table:
                continue
            for n in nlris:
                k = n.key
                if table.pop(k, None) is not None:
                    peer.prefixes_in -= 1
                    self.stats["withdrawals_in"] += 1
                    self._loc_update(fam, k, info.key, None, n, now)
        if not upd.announced:
            return
        attrs = upd.attributes
        loop = ((not info.ibgp and attrs.as_path.contains(self.cfg.asn))
                or (attrs.originator_id is not None and attrs.originator_id.router_id == self.cfg.router_id)
                or (attrs.cluster_list is not None and self.cluster_id in attrs.cluster_list.ids))
        for fam, nlris in upd.announced.items():
            table = peer.adj_in.setdefault(fam, {})
            nh = upd.next_hops.get(fam)
            for n in nlris:
                k = n.key
                path: Path | None = None
                if loop:
                    self.stats["loops_dropped"] += 1
                else:
                    self._seq += 1
                    path = Path(n, attrs, nh, info, self._seq)
                    if self.import_policy is not None:
                        path = self.import_policy(info, path)
                        if path is None:
                            self.stats["policy_rejected"] += 1
                if path is None:
                    if table.pop(k, None) is not None:
                        peer.prefixes_in -= 1
                        self._loc_update(fam, k, info.key, None, n, now)
                    continue
                if k not in table:
                    peer.prefixes_in += 1
                table[k] = path
                self.stats["routes_in"] += 1
                self._loc_update(fam, k, info.key, path, n, now)
        if peer.prefixes_in > peer.cfg.max_prefixes:
            s.reset(now, E.CEASE, E.MAX_PREFIXES, f"more than {peer.cfg.max_prefixes} prefixes")
            self.stats["notifications_out"] += 1

    def session_refresh(self, s: PeerSession, family: Family, now: float) -> None:
        peer = self._owner[id(s)]
        peer.adj_out.pop(family, None)
        self._send_table(peer, s, family, now)

    # -- the application's routes ------------------------------------------------------------------
    def originate(self, nlri: Nlri, attrs: Attributes | None = None, next_hop: IPAddress | None = None,
                  now: float = 0.0, flush: bool = True) -> None:
        """Announce a route from this speaker (ORIGIN and AS_PATH default to IGP and empty).

        ``flush=False`` leaves the UPDATEs for a later :meth:`flush`, so a batch of routes is packed
        into as few messages as fit."""
        a = attrs or Attributes()
        if a.origin is None:
            a = a.replace(Origin(IGP))
        if AsPath.TYPE not in a:
            a = a.replace(AsPath())
        self._seq += 1
        path = Path(nlri, a, next_hop, LOCAL_SOURCE, self._seq)
        self._local.setdefault(nlri.family, {})[nlri.key] = path
        self._loc_update(nlri.family, nlri.key, LOCAL_SOURCE.key, path, nlri, now)
        if flush:
            self._flush(now)

    def withdraw(self, nlri: Nlri, now: float = 0.0, flush: bool = True) -> None:
        if self._local.get(nlri.family, {}).pop(nlri.key, None) is not None:
            self._loc_update(nlri.family, nlri.key, LOCAL_SOURCE.key, None, nlri, now)
            if flush:
                self._flush(now)

    def flush(self, now: float) -> None:
        """Send what :meth:`originate` / :meth:`withdraw` with ``flush=False`` left pending."""
        self._flush(now)

    def originated(self, family: Family) -> list[Path]:
        return list(self._local.get(family, {}).values())

    def request_refresh(self, peer_key: str, family: Family) -> bool:
        """Ask a peer to send its routes of ``family`` again (RFC 2918), e.g. after an import policy changed."""
        peer = self.peers.get(peer_key)
        s = peer.established if peer else None
        return bool(s and s.send_refresh(family))

    def reevaluate(self, now: float) -> None:
        """Run the import policy again over every Adj-RIB-In (after it changed), and re-export."""
        for peer in self.peers.values():
            if peer.info is None:
                continue
            for fam, table in peer.adj_in.items():
                for k, p in list(table.items()):
                    cand = self.import_policy(peer.info, p) if self.import_policy else p
                    self._loc_update(fam, k, peer.info.key, cand, p.nlri, now)
        self._flush(now)

    # -- RIB plumbing -----------------------------------------------------------------------------
    def _loc_update(self, fam: Family, key: bytes, source: str, path: Path | None, nlri: Nlri, now: float) -> None:
        for fn in self._path_listeners:
            fn(fam, key, source, path, nlri, now)
        old, new = self.rib.update(fam, key, source, path)
        if old is not new:
            self._dirty.setdefault(fam, {})[key] = nlri
            for fn in self._listeners:
                fn(fam, key, old, new, now)

    def _drop_routes(self, peer: Peer, now: float, families: set[Family]) -> None:
        for fam in families:
            table = peer.adj_in.pop(fam, {})
            peer.prefixes_in -= len(table)
            for k, p in table.items():
                self._loc_update(fam, k, peer.cfg.key, None, p.nlri, now)
            peer.stale_families.discard(fam)

    def _remove_stale(self, peer: Peer, families: set[Family], now: float) -> None:
        for fam in families:
            table = peer.adj_in.get(fam, {})
            for k, p in list(table.items()):
                if p.stale:
                    del table[k]
                    peer.prefixes_in -= 1
                    self.stats["stale_removed"] += 1
                    self._loc_update(fam, k, peer.cfg.key, None, p.nlri, now)
            peer.stale_families.discard(fam)
        if not peer.stale_families:
            peer.stale_deadline = None
            peer.restart_deadline = None

    def _after(self, now: float) -> None:
        for peer in self.peers.values():
            if len(peer.sessions) > 1:  # a collision loser (dumped, or closed by the other side) goes away
                self._collect(peer)
                self._prune(peer)
        self._flush(now)

    # -- export --------------------------------------------------------------------------------------
    def _export(self, peer: Peer, s: PeerSession, path: Path) -> tuple[Attributes, IPAddress | None] | None:
        info = peer.info
        if info is None or path.source.key == info.key:
            return None
        fam = path.family
        to_ibgp = info.ibgp
        reflect = False
        if not path.local and path.source.ibgp and to_ibgp:
            if not (path.source.rr_client or peer.cfg.route_reflector_client):
                return None
            reflect = True
        a = path.attrs
        nh = path.next_hop
        local_nh = _local_next_hop(s, fam)
        if to_ibgp:
            if a.local_pref is None:
                a = a.replace(LocalPref(100))
            if reflect:
                oid = a.originator_id or OriginatorId(path.source.router_id)
                cl = (self.cluster_id,) + (a.cluster_list.ids if a.cluster_list is not None else ())
                a = a.replace(oid, ClusterList(cl))
            elif peer.cfg.next_hop_self and fam != L2VPN_EVPN:
                nh = local_nh
            if nh is None:
                nh = local_nh
        else:
            a = a.without(5, 9, 10)
            if not path.local:
                a = a.without(4)
            a = a.replace(a.as_path.prepend(self.cfg.asn))
            if fam == L2VPN_EVPN:
                nh = nh if nh is not None else local_nh  # the VTEP address survives
            elif not (path.local and nh is not None):  # an originated route with an explicit next hop keeps it
                nh = local_nh
        if self.export_policy is not None:
            out = self.export_policy(info, path, a)
            if out is None:
                return None
            a = out
        return a, nh

    def _send_table(self, peer: Peer, s: PeerSession, fam: Family, now: float) -> None:
        keys = {p.nlri.key: p.nlri for p in self.rib.best_paths(fam)}
        if keys:
            self._dirty.setdefault(fam, {}).update(keys)
        # _flush sends them (only to peers whose Adj-RIB-Out differs: after a refresh, this one)

    def _flush(self, now: float) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        for peer in self.peers.values():
            s = peer.established
            if s is None or s.neg is None or peer.info is None:
                continue
            asn4 = s.neg.asn4
            for fam, keys in dirty.items():
                if fam not in s.neg.families:
                    continue
                out = peer.adj_out.setdefault(fam, {})
                groups: dict[tuple[Attributes, Any], list[Nlri]] = {}
                withdraw: list[Nlri] = []
                for k, nlri in keys.items():
                    best = self.rib.best(fam, k)
                    exp = self._export(peer, s, best) if best is not None else None
                    prev = out.get(k)
                    if exp is None:
                        if prev is not None:
                            del out[k]
                            withdraw.append(prev[2])
                        continue
                    attrs, nh = exp
                    if prev is not None and prev[0] == attrs and prev[1] == nh and prev[2] == best.nlri:
                        continue
                    out[k] = (attrs, nh, best.nlri)
                    groups.setdefault((attrs, nh), []).append(best.nlri)
                for msg, count in _pack(fam, withdraw, groups, asn4):
                    s.send_update_bytes(msg, 1)
                    self.stats["updates_out"] += 1
            self._collect(peer)

    # -- views for the CLI ------------------------------------------------------------------------------
    def summary(self, now: float) -> dict:
        peers = []
        for key, p in self.peers.items():
            s = p.established or p.session
            peers.append({
                "peer": key, "address": p.cfg.address, "remote_as": p.cfg.remote_as, "state": s.state.value,
                "uptime": None if p.up_since is None else round(now - p.up_since, 1),
                "families": sorted(str(f) for f in (s.neg.families if s.neg else ())),
                "prefixes_received": p.prefixes_in,
                "prefixes_sent": sum(len(t) for t in p.adj_out.values()),
                "stale": sum(1 for t in p.adj_in.values() for x in t.values() if x.stale),
                "hold_time": s.neg.hold_time if s.neg else p.cfg.hold_time,
                "last_error": s.last_error, **{k: v for k, v in s.stats.items()},
            })
        return {"asn": self.cfg.asn, "router_id": str(self.cfg.router_id),
                "families": [str(f) for f in self.cfg.families],
                "routes": {str(f): self.rib.count(f) for f in self.cfg.families}, "peers": peers,
                "stats": dict(self.stats)}

    def routes(self, family: Family, limit: int = 100_000) -> list[dict]:
        out = []
        for p, best in self.rib.all_paths(family):
            d = p.to_dict()
            d["best"] = best
            out.append(d)
            if len(out) >= limit:
                break
        return out


def _local_next_hop(s: PeerSession, fam: Family) -> IPAddress | None:
    try:
        a = ipaddress.ip_address((s.local_address or "").split("%")[0])
    except ValueError:
        return None
    if fam.afi == 2 and isinstance(a, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + a.packed)  # IPv4-mapped, as FRR does
    if fam.afi == 1 and fam.safi in (1, SAFI_VPN) and isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        return a.ipv4_mapped
    return a


def _pack(fam: Family, withdraw: list[Nlri], groups: dict, asn4: bool) -> Iterable[tuple[bytes, int]]:
    """UPDATE messages for one family: withdrawals first, then one run of messages per attribute set."""
    budget = MAX_UPDATE_BODY - 64
    if withdraw:
        chunk: list[Nlri] = []
        size = 0
        for n in withdraw:
            ln = len(n.encode())
            if chunk and size + ln > budget:
                yield _withdraw_msg(fam, chunk, asn4), len(chunk)
                chunk, size = [], 0
            chunk.append(n)
            size += ln
        if chunk:
            yield _withdraw_msg(fam, chunk, asn4), len(chunk)
    for (attrs, nh), nlris in groups.items():
        base = len(attrs.encode(asn4)) + 40
        chunk, size = [], 0
        for n in nlris:
            ln = len(n.encode())
            if chunk and base + size + ln > budget:
                yield _reach_msg(fam, attrs, nh, chunk, asn4), len(chunk)
                chunk, size = [], 0
            chunk.append(n)
            size += ln
        if chunk:
            yield _reach_msg(fam, attrs, nh, chunk, asn4), len(chunk)


def _withdraw_msg(fam: Family, nlris: list[Nlri], asn4: bool) -> bytes:
    if fam == IPV4_UNICAST:
        return Update(withdrawn=tuple(nlris)).encode(asn4)  # type: ignore[arg-type]
    return Update(attributes=Attributes([MpUnreach(fam, tuple(nlris))])).encode(asn4)


def _reach_msg(fam: Family, attrs: Attributes, nh: IPAddress | None, nlris: list[Nlri], asn4: bool) -> bytes:
    if fam == IPV4_UNICAST and (nh is None or nh.version == 4):
        a = attrs.replace(NextHop(nh)) if nh is not None else attrs
        return Update(attributes=a, nlri=tuple(nlris)).encode(asn4)  # type: ignore[arg-type]
    return Update(attributes=attrs.without(3).replace(MpReach(fam, nh, tuple(nlris)))).encode(asn4)
