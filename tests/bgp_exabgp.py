"""exabgp's UPDATE parser as an independent decoder: the same message, decoded by both, must give the same
NLRI (announced and withdrawn) and the same path attributes.

Used as the ``exabgp_crosscheck`` fixture: every UPDATE body that weftnet's
``Update.body`` encodes during a test is recorded and, at the end of the test,
decoded by exabgp (library level: ``Update.unpack_message`` with a Negotiated
built from two OPENs) and by weftnet's ``parse_update``, and compared.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from weftnet.core.bgp import update as U
from weftnet.core.bgp.attributes import PMSI_INGRESS_REPLICATION
from weftnet.core.bgp.capability import FourOctetAs, Multiprotocol
from weftnet.core.bgp.extcommunity import Encapsulation, MacMobility, RouteTarget
from weftnet.core.bgp.family import IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4, VPNV6
from weftnet.core.bgp.message import Open
from weftnet.core.bgp.nlri import EvpnInclusiveMulticast, EvpnIpPrefix, EvpnMacIp, Prefix, VpnPrefix

FAMILIES = (IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4, VPNV6)
exabgp = pytest.importorskip("exabgp", reason="exabgp (the test extra) is the independent decoder")


def _negotiated():
    from exabgp.bgp.message.open import Open as XOpen
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.logger import log

    log.disable()
    caps = tuple(Multiprotocol(f) for f in FAMILIES)
    a = Open(65001, 90, ipaddress.IPv4Address("192.0.2.1"), caps + (FourOctetAs(65001),))
    b = Open(65002, 90, ipaddress.IPv4Address("192.0.2.2"), caps + (FourOctetAs(65002),))
    neg = Negotiated({"capability": {"aigp": False}})
    neg.sent(XOpen.unpack_message(a.encode()[19:]))
    neg.received(XOpen.unpack_message(b.encode()[19:]))
    return neg


_NEG = None


def exabgp_view(body: bytes) -> tuple[set, set, dict]:
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update import Update as XUpdate
    from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN

    global _NEG
    if _NEG is None:
        _NEG = _negotiated()
    x = XUpdate.unpack_message(body, Direction.IN, _NEG)
    ann, wd = set(), set()
    for n in getattr(x, "nlris", []):
        kind = type(n).__name__
        if isinstance(n, EVPN):
            j = json.loads(n.json())
            code = j["code"]
            if code == 2:
                key = (2, j["rd"], j["ethernet-tag"], j["mac"].lower(), j.get("ip"))
            elif code == 3:
                key = (3, j["rd"], j["ethernet-tag"], j["ip"])
            else:
                key = (5, j["rd"], j["ethernet-tag"], f"{j['ip']}/{j['iplen']}", j["gateway"])
        elif kind == "IPVPN":
            key = ("vpn", str(n.rd).replace("rd", "").strip(), str(n.cidr))
        else:
            key = ("prefix", str(n.cidr))
        (ann if str(n.action).endswith("announce") or "ANNOUNCE" in str(n.action).upper() else wd).add(key)
        if key in ann:
            nh = str(ipaddress.ip_address(str(n.nexthop)))
            ann.discard(key)
            ann.add((key, nh))
    attrs = {}
    for _code, a in x.attributes.items():
        name = type(a).__name__
        if name == "Origin":
            attrs["origin"] = str(a)
        elif name == "ASPath":
            segs = [v["value"] for v in json.loads(a.json()).values()] if a.json().strip() not in ("", "[ ]") else []
            if segs:
                attrs["as_path"] = segs
        elif name == "LocalPreference":
            attrs["local_pref"] = int(str(a))
        elif name == "MED":
            attrs["med"] = int(str(a))
        elif name == "Communities":
            attrs["communities"] = sorted(int.from_bytes(c.community, "big") for c in a.communities)
        elif name == "OriginatorID":
            attrs["originator_id"] = str(a)
        elif name == "ClusterList":
            attrs["cluster_list"] = [str(c) for c in a.clusters]
        elif name == "ExtendedCommunities":
            attrs["ext"] = sorted(s for s in str(a).strip("[ ]").split() if s.split(":")[0] in
                                  ("target", "encap", "mac-mobility"))
        elif name.startswith("PMSI"):
            attrs["pmsi"] = (str(a.ip), a.label)
    return ann, wd, attrs


def weft_view(body: bytes) -> tuple[set, set, dict]:
    p = U.parse_update(body, U.UpdateContext(True, False, 0, frozenset(FAMILIES)))
    assert not p.treat_as_withdraw, p.errors

    def key(n):
        if isinstance(n, EvpnMacIp):
            return (2, str(n.rd), n.ethernet_tag, ":".join(f"{b:02x}" for b in n.mac), None if n.ip is None else str(n.ip))
        if isinstance(n, EvpnInclusiveMulticast):
            return (3, str(n.rd), n.ethernet_tag, str(n.originator))
        if isinstance(n, EvpnIpPrefix):
            width = 4 if n.prefix.version == 4 else 16
            gw = str(n.gateway) if n.gateway is not None else str(ipaddress.ip_address(bytes(width)))
            return (5, str(n.rd), n.ethernet_tag, str(n.prefix), gw)
        if isinstance(n, VpnPrefix):
            return ("vpn", str(n.rd), str(n.network))
        assert isinstance(n, Prefix)
        return ("prefix", str(n.network))

    ann = {(key(n), str(p.next_hops[f])) for f, ns in p.announced.items() for n in ns}
    wd = {key(n) for ns in p.withdrawn.values() for n in ns}
    a = p.attributes
    attrs: dict = {}
    if a.origin is not None:
        attrs["origin"] = str(a.origin)
    if a.get(2) is not None and a.as_path.segments:  # exabgp leaves an empty AS_PATH out
        attrs["as_path"] = [list(asns) for _, asns in a.as_path.segments]
    if a.local_pref is not None:
        attrs["local_pref"] = a.local_pref.value
    if a.med is not None:
        attrs["med"] = a.med.value
    if a.communities is not None:
        attrs["communities"] = sorted(a.communities.values)
    if a.originator_id is not None:
        attrs["originator_id"] = str(a.originator_id.router_id)
    if a.cluster_list is not None:
        attrs["cluster_list"] = [str(i) for i in a.cluster_list.ids]
    if a.get(16) is not None:
        ext = []
        for c in a.ext_communities:
            if isinstance(c, RouteTarget):
                ext.append(f"target:{c}")
            elif isinstance(c, Encapsulation):
                ext.append("encap:VXLAN" if c.tunnel_type == 8 else f"encap:{c.tunnel_type}")
            elif isinstance(c, MacMobility):
                ext.append(f"mac-mobility:{c.sequence}" + (":sticky" if c.sticky else ""))
        attrs["ext"] = sorted(ext)
    if a.pmsi is not None and a.pmsi.tunnel_type == PMSI_INGRESS_REPLICATION:
        attrs["pmsi"] = (str(a.pmsi.endpoint), a.pmsi.label >> 4)  # exabgp reads the field as an MPLS label
    return ann, wd, attrs


def crosscheck(bodies: list[bytes]) -> int:
    """Both decoders agree on every body; returns how many carried routes or attributes.

    exabgp 5.0 accepts only IPv4 next hops for EVPN (its family table says 4 octets), while RFC 7432
    section 7 allows either; UPDATEs with an IPv6 EVPN next hop (VTEPs on overlay addresses) are checked
    by weftnet's parser alone."""
    checked = 0
    for b in bodies:
        p = U.parse_update(b, U.UpdateContext(True, False, 0, frozenset(FAMILIES)))
        if p.end_of_rib is not None:
            continue  # End-of-RIB markers: nothing to compare
        if any(f == L2VPN_EVPN and nh.version == 6 for f, nh in p.next_hops.items()):
            continue
        theirs, ours = exabgp_view(b), weft_view(b)
        assert theirs == ours, f"exabgp and weftnet disagree on {b.hex()}:\nexabgp {theirs}\nweftnet {ours}"
        checked += 1
    return checked


@pytest.fixture
def exabgp_crosscheck(monkeypatch):
    """Record every UPDATE weftnet encodes in the test; at the end both decoders must agree on each."""
    seen: list[bytes] = []
    real = U.Update.body

    def body(self, asn4=True):
        b = real(self, asn4)
        if asn4:
            seen.append(b)
        return b

    monkeypatch.setattr(U.Update, "body", body)
    yield seen
    checked = crosscheck(list(seen))
    seen.append(checked.to_bytes(4, "big"))
