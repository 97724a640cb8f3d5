"""The VPN data plane inside a node: private networks over the node's sessions and DHT, sans-IO.

Theory of operation (docs/vpn.md, "Inside the node")
----------------------------------------------------
:class:`~weftnet.core.vpn.VpnSwitch` and :class:`~weftnet.core.vpn.VpnNetwork`
decide what happens to one packet; this class connects them to the rest of
the node:

* **Out** (:meth:`outbound`): packets the driver read from a network's TUN.
  A :class:`~weftnet.core.vpn.Send` goes to the member through the secure
  transport: over its session if there is one, else to its contact in the
  routing table (the transport queues and handshakes), else the payloads
  wait (bounded) while a DHT ``find_node`` locates the member by node ID.
  ICMP errors the network makes (packet too big) go back to the TUN.
* **In** (:meth:`on_payload`): VPN messages the transport authenticated;
  ``Deliver`` results queue for the TUN (:attr:`tun_out`).
* **Revocation**: :meth:`check_revocations` reads each network's revocation
  record from the DHT; a newer list signed by the authority is installed
  (revoked members are dropped at once, and if our own certificate is on it
  we stop sending), reported as :class:`VpnRevocations` so the runtime can
  store it, and republished with our directory records from then on.
* **Discovery**: a packet to an address with no known member raises a
  ``RouteMiss``; the plane reads that address's directory record from the
  DHT (``netcert.directory_key``), checks the certificate in it and installs
  it, and offers its own certificate to the member so the session comes up
  before the sender retries. Each member publishes its own directory records
  (:meth:`publish`), signed by the network authority. A layer-2 network
  floods to every member, so it must know them all before anyone asks for
  an address: :meth:`check_revocations` also reads the member records of
  certificate serials 1, 2, 3, ... (``netcert.member_key``) that it does not
  hold, up to 16 past the highest found (docs/l2.md, "Finding members").

The driver writes :attr:`tun_out` to the TUN devices after each input and
calls :meth:`handle_timer` at :meth:`get_timer` (through NodeCore).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from weftnet.core.dht import Dht
from weftnet.core.dht import events as dht_events
from weftnet.core.dht.records import MutableRecord
from weftnet.core.identity import NodeId
from weftnet.core.vpn.l2network import L2Network, LocalBinding, MemberScan
from weftnet.core.vpn.netcert import (
    CertificateError,
    RevocationList,
    cert_from_directory,
    cert_from_member_record,
    directory_key,
    member_key,
    revocation_key,
    revocations_from_record,
)
from weftnet.core.session.transport import SecureTransport
from weftnet.core.vpn.network import (
    Deliver,
    VpnChunk,
    VpnPacket,
    MemberAdded,
    MemberRemoved,
    RouteMiss,
    Send,
    VpnNetwork,
    VpnSwitch,
)

__all__ = ["VpnPlane", "VpnMemberEvent", "VpnRevocations", "VpnLocalBinding"]

_CHUNK, _PACKET = VpnChunk.TYPE, VpnPacket.TYPE


@dataclass(frozen=True)
class VpnMemberEvent:
    """A member joined or left this node's view of a network (for logs)."""

    kind: ClassVar[str] = "vpn_member"
    network: str
    node_id: NodeId
    change: str  # "added" | "removed"
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "network": self.network, "node_id": self.node_id.text(),
                "change": self.change, "detail": self.detail}


@dataclass(frozen=True)
class VpnRevocations:
    """A newer revocation list was installed for a network (the runtime stores it)."""

    kind: ClassVar[str] = "vpn_revocations"
    network: str
    revocations: RevocationList
    record: MutableRecord
    own_revoked: bool

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "network": self.network, "seq": self.revocations.seq,
                "serials": list(self.revocations.serials), "own_revoked": self.own_revoked}


@dataclass(frozen=True)
class VpnLocalBinding:
    """A layer-2 network snooped a host's MAC and IP behind our own bridge (for EVPN, docs/l2.md)."""

    kind: ClassVar[str] = "vpn_local_binding"
    network: str
    network_id: bytes
    mac: bytes
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "network": self.network, "mac": self.mac.hex(":"), "ip": str(self.ip)}


class VpnPlane:
    """All private networks of one node, wired to its transport and DHT."""

    #: Payloads held per member while it is being located, and members held at once.
    MAX_PENDING = 64
    MAX_PENDING_MEMBERS = 256
    #: Idle firewall flows are swept this often (seconds).
    SWEEP_INTERVAL = 30.0

    def __init__(self, transport: SecureTransport, dht: Dht, emit: Callable[[Any], None]):
        self.transport = transport
        self.dht = dht
        self.switch = VpnSwitch()
        #: (network ID, virtio_net_hdr or b"", IP packet) for the driver to write to that network's TUN.
        self.tun_out: list[tuple[bytes, bytes, bytes]] = []
        self._vnet: set[bytes] = set()
        self._emit = emit
        self._directory: dict[bytes, list[MutableRecord]] = {}
        self._revocation_records: dict[bytes, MutableRecord] = {}  # network ID -> newest held
        self._extra: list[MutableRecord] = []
        self._pending: dict[bytes, deque[bytes]] = {}
        self._sweep_at: float | None = None
        # dht op id -> ("locate", node) | ("resolve", net id, addr) | ("revocations", net id) | ("publish",)
        #              | ("member", net id, serial)
        self._lookups: dict[int, tuple] = {}
        self._scans: dict[bytes, MemberScan] = {}  # layer-2 network ID -> member records being read
        #: ``locate_fallback(node_id, now)``: a member no lookup named (set by NodeCore: reach reads its ID record).
        self.locate_fallback: Callable[[NodeId, float], Any] | None = None
        #: ``reach_node(public_key, now)``: a member a lookup named but never heard (behind a NAT):
        #: reach it through its own endpoint record (set by NodeCore: reach).
        self.reach_node: Callable[[bytes, float], Any] | None = None
        self.stats = dict.fromkeys(
            ("locate_started", "locate_failed", "pending_dropped", "resolve_started", "resolved",
             "resolve_failed", "published", "revocations_installed", "member_scans", "members_found"), 0)

    # -- networks ----------------------------------------------------------
    def add_network(self, network: VpnNetwork, directory: list[MutableRecord] = (), *, vnet: bool = False,
                    revocation_record: MutableRecord | None = None) -> None:
        """Join ``network``; ``directory`` are its signed records for our addresses, to publish.

        ``vnet``: packets from this network's TUN start with a virtio_net_hdr
        (a TUN with offload), and packets for it may carry one.
        """
        self.switch.add(network)
        if revocation_record is not None:
            self._revocation_records[network.network_id] = revocation_record
        if vnet:
            self._vnet.add(network.network_id)
        if self._sweep_at is None:
            self._sweep_at = 0.0  # sweep at the first timer, then every SWEEP_INTERVAL
        self._directory[network.network_id] = list(directory)

    def remove_network(self, network_id: bytes) -> None:
        """Leave a network (its TUN is gone): its traffic is dropped as for an unknown network."""
        self.switch.remove(network_id)
        self._vnet.discard(network_id)
        self._directory.pop(network_id, None)
        self._revocation_records.pop(network_id, None)
        self._scans.pop(network_id, None)

    def networks(self) -> list[VpnNetwork]:
        return list(self.switch.networks.values())

    def add_published(self, record: MutableRecord) -> None:
        """Publish ``record`` too (an owner's revocation record for a network it is no member of)."""
        self._extra.append(record)

    def publish(self, now: float) -> int:
        """Store our directory and revocation records in the DHT (after joining, then periodically)."""
        records = [r for rs in self._directory.values() for r in rs]
        records += self._revocation_records.values()
        records += self._extra
        for rec in records:
            self._lookups[self.dht.put(rec, now)] = ("publish",)
        self.stats["published"] += len(records)
        return len(records)

    def check_revocations(self, now: float) -> None:
        """Look for a newer revocation list of every network in the DHT (and members of layer-2 networks)."""
        for net in self.switch.networks.values():
            key = revocation_key(net.descriptor.authority_key)
            self._lookups[self.dht.get(key, now)] = ("revocations", net.network_id)
            if isinstance(net, L2Network):
                self._scans[net.network_id] = MemberScan(net)
                self._scan_more(net, now)

    def _scan_more(self, net: VpnNetwork, now: float) -> None:
        scan = self._scans.get(net.network_id)
        if scan is None:
            return
        for serial in scan.next_serials():
            key = member_key(net.descriptor.authority_key, serial)
            self._lookups[self.dht.get(key, now)] = ("member", net.network_id, serial)
            self.stats["member_scans"] += 1
        if scan.done():
            del self._scans[net.network_id]

    # -- data ------------------------------------------------------------
    def outbound(self, network_id: bytes, packets: list[bytes], now: float) -> None:
        """Packets read from the TUN of ``network_id`` (with their virtio_net_hdr if it has offload)."""
        net = self.switch.networks[network_id]
        vnet = network_id in self._vnet
        fast = net.outbound_fast if vnet and type(net) is VpnNetwork else None  # layer 3 (not layer 2)
        for packet in packets:
            if fast is not None:
                f = fast(packet, now)
                if f is not None:
                    self._send(f[0], f[1], now)
                    continue
            r = net.outbound_read(packet, now) if vnet else net.outbound(packet, now)
            if type(r) is Send:
                self._send(r.node_id, r.payloads, now)
            elif type(r) is Deliver:
                self.tun_out.append((network_id, r.vnet, r.packet))
            elif type(r) is list:  # a layer-2 flood: one Send per member
                for s in r:
                    self._send(s.node_id, s.payloads, now)
        if net._outgoing or net._events:  # (as on_payload: no call for the common nothing)
            self._after(net, now)

    def on_payload(self, sender: NodeId, payload: bytes, now: float) -> None:
        """A VPN message (``VpnSwitch.VPN_TYPES``) from an authenticated sender; the transport's sink."""
        net = self.switch.networks.get(payload[2:34])
        if net is None:
            self.switch.inbound(sender, payload, now)  # counts the drop
            return
        code = payload[1]
        if code == _CHUNK:
            f = net.inbound_fast(sender.raw, payload, now) if type(net) is VpnNetwork else None
            if f is not None:
                self.tun_out.append((net.network_id, f[0], f[1]))
                if net._outgoing or net._events:
                    self._after(net, now)
                return
            r = net._inbound_chunk(sender.raw, payload, now)
        elif code == _PACKET:
            f = net.inbound_packet_fast(sender.raw, payload, now) if type(net) is VpnNetwork else None
            if f is not None:  # (a ping, a lone small packet of a tracked flow)
                self.tun_out.append((net.network_id, b"", f))
                if net._outgoing or net._events:
                    self._after(net, now)
                return
            r = net._inbound_packet(sender.raw, payload, now)
        else:
            r = net.inbound(sender, payload, now)
        if type(r) is Deliver:
            self.tun_out.append((net.network_id, r.vnet, r.packet))
        if net._outgoing or net._events:
            self._after(net, now)

    def _after(self, net: VpnNetwork, now: float) -> None:
        for node_id, payload in net.messages_to_send():
            self._send(node_id, (payload,), now)
        while (ev := net.next_event()) is not None:
            if isinstance(ev, RouteMiss):
                self._resolve(net, ev.address, now)
            elif isinstance(ev, MemberAdded):
                self._emit(VpnMemberEvent(net.descriptor.name, ev.node_id, "added",
                                          ", ".join(str(a) for a in ev.certificate.addresses)))
            elif isinstance(ev, MemberRemoved):
                self._emit(VpnMemberEvent(net.descriptor.name, ev.node_id, "removed", ev.reason))
            elif isinstance(ev, LocalBinding):
                self._emit(VpnLocalBinding(net.descriptor.name, net.network_id, ev.mac, ipaddress.ip_address(ev.ip)))

    def send_to_node(self, node_id: NodeId, payloads: tuple[bytes, ...], now: float) -> None:
        """Send data-plane payloads to a node: over its session, to its known contact, or after
        locating it in the DHT (a bounded wait). The L3VPN plane sends through this too."""
        self._send(node_id, payloads, now)

    def _send(self, node_id: NodeId, payloads: tuple[bytes, ...], now: float) -> None:
        t = self.transport
        if t.send_to(node_id, payloads[0], now):
            for p in payloads[1:]:
                t.send_to(node_id, p, now)
            return
        contact = self.dht.contact_for(node_id)
        if contact is not None:
            for p in payloads:
                t.send(contact, p, now)
            return
        q = self._pending.get(node_id.raw)
        if q is None:
            if len(self._pending) >= self.MAX_PENDING_MEMBERS:
                self.stats["pending_dropped"] += len(payloads)
                return
            q = self._pending[node_id.raw] = deque()
            self._lookups[self.dht.find_node(node_id, now)] = ("locate", node_id)
            self.stats["locate_started"] += 1
        for p in payloads:
            if len(q) >= self.MAX_PENDING:
                q.popleft()
                self.stats["pending_dropped"] += 1
            q.append(p)

    def _resolve(self, net: VpnNetwork, address, now: float) -> None:
        key = directory_key(net.descriptor.authority_key, address)
        self._lookups[self.dht.get(key, now)] = ("resolve", net.network_id, address)
        self.stats["resolve_started"] += 1

    # -- DHT results -------------------------------------------------------
    def on_dht_event(self, ev: Any, now: float) -> bool:
        """Consume the completion of a lookup this plane started; False if it is not ours."""
        if not isinstance(ev, dht_events.LookupDone):
            return False
        entry = self._lookups.pop(ev.op_id, None)
        if entry is None:
            return False
        if entry[0] == "locate":
            node_id = entry[1]
            q = self._pending.pop(node_id.raw, None) or ()
            contact = next((c for c in ev.contacts if c.node_id == node_id), None)
            if contact is None:
                self.stats["locate_failed"] += 1
                self.stats["pending_dropped"] += len(q)
                named = next((c for c in ev.silent if c.node_id == node_id), None)
                if named is not None and self.reach_node is not None:
                    self.reach_node(named.public_key, now)  # named, silent: its record's paths (docs/reach.md)
                elif self.locate_fallback is not None:
                    self.locate_fallback(node_id, now)  # reach: a node without UDP no lookup names
                return True
            for p in q:
                self.transport.send(contact, p, now)
        elif entry[0] == "revocations":
            net = self.switch.networks.get(entry[1])
            if net is not None:
                self._install_revocations(net, ev.values, now)
        elif entry[0] == "member":
            net = self.switch.networks.get(entry[1])
            scan = self._scans.get(entry[1])
            if net is None:
                return True
            serial = entry[2]
            found = None
            for rec in ev.values:
                if not isinstance(rec, MutableRecord):
                    continue
                try:
                    cert = cert_from_member_record(rec, net.descriptor, serial)
                    if net.add_certificate(cert, now):
                        found = cert
                    elif scan is not None:
                        scan.found(serial)  # already held, or our own
                    break
                except CertificateError:
                    continue
            if found is not None:
                self.stats["members_found"] += 1
                if scan is not None:
                    scan.found(serial)
                net.offer_to(found.node_id, now, want_reply=False)
            if scan is not None:
                scan.answered(serial)
                self._scan_more(net, now)
            self._after(net, now)
        elif entry[0] == "resolve":
            net = self.switch.networks.get(entry[1])
            if net is None:
                return True
            address = ipaddress.ip_address(entry[2])
            installed = None
            for rec in ev.values:
                if not isinstance(rec, MutableRecord):
                    continue
                try:
                    cert = cert_from_directory(rec, net.descriptor, address)
                    net.add_certificate(cert, now)
                    installed = cert
                    break
                except CertificateError:
                    continue
            if installed is None:
                self.stats["resolve_failed"] += 1
            else:
                self.stats["resolved"] += 1
                # Introduce ourselves now, so the session is up when the sender retries.
                net.offer_to(installed.node_id, now, want_reply=False)
            self._after(net, now)
        return True

    def _install_revocations(self, net: VpnNetwork, values, now: float) -> None:
        best = None
        for rec in values:
            if not isinstance(rec, MutableRecord):
                continue
            try:
                rl = revocations_from_record(rec, net.descriptor)
            except CertificateError:
                continue
            if best is None or rl.seq > best[0].seq:
                best = (rl, rec)
        if best is None:
            return
        try:
            installed = net.update_revocations(best[0])
        except CertificateError:
            return
        if installed:
            self._revocation_records[net.network_id] = best[1]
            self.stats["revocations_installed"] += 1
            self._emit(VpnRevocations(net.descriptor.name, best[0], best[1], net.own_revoked))
            self._after(net, now)

    # -- timers and introspection -------------------------------------------
    def get_timer(self) -> float | None:
        """The next certificate expiry, or the next sweep of idle firewall flows."""
        networks = self.switch.networks
        if not networks:
            return None
        best = self._sweep_at
        for n in networks.values():  # (no list and generator per call: drivers ask after every pass)
            t = n.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def handle_timer(self, now: float) -> None:
        if self._sweep_at is None or now >= self._sweep_at:
            self._sweep_at = now + self.SWEEP_INTERVAL
        for net in self.switch.networks.values():
            net.handle_timer(now)
            self._after(net, now)

    def status(self) -> list[dict[str, Any]]:
        out = []
        for net in self.switch.networks.values():
            s = net.stats()
            s["addresses"] = [str(a) for a in net.own_cert.addresses]
            s["revocations_seq"] = net.revocations.seq if net.revocations is not None else 0
            s["own_revoked"] = net.own_revoked
            s["mtu"] = net.mtu
            out.append(s)
        return out
