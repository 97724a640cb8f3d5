"""Regenerate tests/vectors/messages.json (run only when a layout changes on purpose).

    .venv/bin/python tests/vectors/make_vectors.py

Each vector is: the message type name, its fields in a JSON form (bytes as
hex, contacts as {public_key, endpoint}), and the hex of its encoding. The
test checks both directions: encode(fields) == hex and decode(hex) == fields.
"""

from __future__ import annotations

import ipaddress
import json
import pathlib

from weftnet.core.session.workers import WorkerSlots
from weftnet.core import wire
from weftnet.core.contact import Contact
from weftnet.core.dht.messages import (
    FindNear, FindNode, FindValue, Leave, NearNodes, Nodes, OfferItem, ReplicaOffer, ReplicaWant, Replicate, Route, RouteAck,
    RouteBack, RouteHop, Store, StoreAck, Value,
)
from weftnet.core.dht.records import ImmutableRecord, MutableRecord
from weftnet.core.dht.sessionless import DhtAnswer, DhtProof, DhtQuery
from weftnet.core.vpn.l2network import L2Frame
from weftnet.core.vpn.netcert import Binding, L2Grant, L2Mode, MacPrefix, NetCert, NetworkDescriptor, RevocationList
from weftnet.core.node import AppText, SignedText
from weftnet.core.session.packets import (
    CookieReply, EarlyData, HandshakeInit, HandshakeResponse, Hello, HelloReply, Ping, Pong, TransportData,
    TransportFragment,
)
from weftnet.core.identity import Identity
from weftnet.core.overlay.messages import LanBeacon, OverlayChunk, OverlayPacket
from weftnet.core.session.pmtu import MtuProbe
from weftnet.core.vpn.network import CertOffer, VpnChunk, VpnPacket
from weftnet.core.l3vpn.messages import MplsChunk, MplsPacket, label_entry
from weftnet.core.paths.messages import FLAG_TRANSIT, LinkInfo, PathAdvert, PathProbe, PathProbeReply
from weftnet.core.reach.messages import (
    CAND_LOCAL, CAND_REFLEXIVE, NAT_EIM, OP_REGISTER, CallMeMaybe, Candidate, EndpointRecord, Forward, Probe,
    ProbeReply, ReachTest, RelayRef, RelayReply, RelayRequest,
)

HERE = pathlib.Path(__file__).resolve().parent


def b(n: int, fill: int) -> bytes:
    return bytes([fill]) * n


C4 = Contact(b(32, 0xA1), ("192.0.2.10", 4500))
C6 = Contact(b(32, 0xB2), ("2001:db8::7", 65535))

# Signatures here are fill bytes: vectors pin layouts, not keys.
CERT = NetCert(
    "acme", b(32, 0x61), b(32, 0x62),
    (ipaddress.ip_address("10.20.0.5"), ipaddress.ip_address("fd00:ac::5")),
    ("db", "web"), 1_700_000_000, 1_731_536_000, 42, b(64, 0x63),
)

MESSAGES = [
    HandshakeInit(0x01020304, b(32, 0x11), b(48, 0x22), b(28, 0x33), b(20, 0x44), b(16, 0x55), b(16, 0)),
    HandshakeResponse(7, 0x01020304, b(32, 0x66), b(16, 0x77), b(16, 0x88), b(16, 0x99)),
    CookieReply(0x01020304, b(12, 0xAA), b(32, 0xBB)),
    TransportData(0xDEADBEEF, 2**40 + 5, b(32, 0xCC)),
    TransportFragment(0xDEADBEEF, 2**40 + 6, 1, 3, b(24, 0xCD)),
    Hello(0x0102030405060708, bytes(54)),
    HelloReply(0x0102030405060708, b(32, 0xDD)),
    Ping(99, b""),
    Pong(99),
    FindNode(1, b(32, 0xEE)),
    Nodes(2, (C4, C6)),
    FindValue(3, b(32, 0x0F)),
    Value(4, bytes.fromhex("01290003616263"), (C4,)),
    Store(5, bytes.fromhex("01290003616263")),
    StoreAck(6, 0, "store full"),
    Route(7, b(32, 0x12), C4, 1, 32, 1, b"payload"),
    RouteAck(7, 3, 1, ""),
    RouteHop(7, 2),
    ImmutableRecord(b"abc"),
    MutableRecord(b(32, 0x34), b"salt", 9, 3600, b"value", b(64, 0x56)),
    AppText("héllo"),
    SignedText("héllo", b(64, 0x41)),
    NetworkDescriptor(
        "acme", b(32, 0x64),
        (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd00:ac::/64")),
        1_700_000_000, b(64, 0x65),
    ),
    CERT,
    RevocationList(b(32, 0x61), 3, 1_700_000_100, (7, 42), (b(32, 0x66),), b(64, 0x67)),
    VpnPacket(b(32, 0x61), bytes.fromhex("4500001c000040004001") + b(18, 0x00)),
    CertOffer(b(32, 0x61), CERT, 1),
    VpnChunk(b(32, 0x61), 0x01020304, 1, 3, b(40, 0x68)),
    # Version 2 (layer-2 networks): the same types with a tail after the signature.
    NetworkDescriptor("acme-l2", b(32, 0x64), (ipaddress.ip_network("10.20.0.0/16"),), 1_700_000_000, b(64, 0x65),
                      L2Mode(2)),
    NetCert(
        "acme-l2", b(32, 0x61), b(32, 0x62), (ipaddress.ip_address("10.20.0.5"),), ("web",),
        1_700_000_000, 1_731_536_000, 43, b(64, 0x63),
        L2Grant((MacPrefix(bytes.fromhex("02aabb000000"), 24),), (ipaddress.ip_network("10.20.8.0/24"),),
                (Binding(bytes.fromhex("02aabb000001"), ipaddress.ip_address("10.20.8.1")),)),
    ),
    L2Frame(b(32, 0x61), bytes.fromhex("ffffffffffff02aabb0000010806") + b(28, 0x69)),
    OverlayPacket(bytes.fromhex("6000000000083a40fd776566") + b(12, 0x71) + bytes.fromhex("fd776566") + b(12, 0x72)
                  + bytes.fromhex("8000000000070001")),
    OverlayChunk(0x01020304, 1, 3, b(40, 0x73)),
    # A real signature (Ed25519 is deterministic): the vector pins the signing input too.
    LanBeacon.create(Identity.from_seed(b(32, 0x74)), 4500, 1_700_000_000_123),
    MtuProbe(0x01020304, 0, b(9, 0)),
    MtuProbe(0x01020304, 1),
    MplsPacket(label_entry(1000), bytes.fromhex("4500001c000040004001") + b(18, 0x00)),
    MplsChunk(label_entry(16, ttl=1, tc=5), 0x01020304, 0, 2, b(40, 0x69)),
    # Hardening (docs/security.md): reports back along the path, replication by inventory.
    RouteBack(7, 2, 1, C4, ""),
    ReplicaOffer(8, (OfferItem(b(32, 0x71), 0), OfferItem(b(32, 0x72), 9))),
    ReplicaWant(8, 0b10),
    Replicate(9, 3600, bytes.fromhex("01290003616263")),
    EarlyData(bytes.fromhex("012000000000000000") + b(32, 0x75)[:8], bytes(6)),
    # reach (docs/wire/reach.md): a Forward at its first relay (one hop left, nothing crossed yet)
    Forward((b(32, 0x71),), (), bytes.fromhex("0104") + b(28, 0x72)),
    Forward((), (b(32, 0x73), b(32, 0x74)), bytes.fromhex("0101") + b(20, 0x75)),
    Probe(0x0102030405060708, b""),
    ProbeReply(0x0102030405060708, ("198.51.100.7", 40001)),
    ProbeReply(9, None),
    CallMeMaybe((("198.51.100.7", 4500), ("2001:db8::7", 4500), ("10.0.0.2", 4500))),
    RelayRequest(OP_REGISTER, 600, 0),
    RelayReply(OP_REGISTER, 1, 600, 0, ("198.51.100.7", 4500), ("203.0.113.1", 4500), ""),
    ReachTest(0x0A0B0C0D0E0F1011),
    EndpointRecord(NAT_EIM, 2, (Candidate(CAND_REFLEXIVE, ("198.51.100.7", 4500)),
                                Candidate(CAND_LOCAL, ("10.0.0.2", 4500))),
                   (RelayRef(b(32, 0x76), ("203.0.113.1", 4500)),)),
    # paths (docs/wire/paths.md)
    PathProbe(0x0102030405060708, 17),
    PathProbeReply(0x0102030405060708, 17),
    PathAdvert(FLAG_TRANSIT, (LinkInfo("fiber", ("192.0.2.10", 4500), 1, 0),
                              LinkInfo("lte", ("2001:db8::10", 4600), 50, 1))),
    PathAdvert(0, ()),
    # Issue 16: a node going away says so.
    Leave(),
    # Issue 16: node lookups with the answerer's RTT to each contact (0xFFFF: never measured).
    FindNear(0x0102030405060708, b(32, 0x71)),
    NearNodes(3, (C4, C6), (412, 0xFFFF)),
    # Issue 16: a node with several data-plane workers tells the members of its networks (docs/dataplane.md).
    WorkerSlots(4),
    # Issue 16: sessionless DHT queries (docs/wire/dht.md); the sealed fields are fill bytes here,
    # real ciphertexts are pinned in dhtquery.json.
    DhtQuery(0x01020304, b(32, 0x81), b(16, 0x82), b(36, 0x83), b(16, 0x84), b(16, 0)),
    DhtAnswer(0x01020304, b(12, 0x85), b(40, 0x86)),
    # Issue 16: the proof of address after a DhtAnswer that says WANTED and PROOF (docs/wire/dht.md).
    DhtProof(b(32, 0x87), b(16, 0x88)),
]

NESTED = {c.__name__: c for c in (L2Mode, L2Grant, Binding, OfferItem, Candidate, RelayRef, LinkInfo)}


def to_json(v):
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return {"ip": str(v)}
    if isinstance(v, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return {"net": str(v)}
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, MacPrefix):
        return {"mac_prefix": str(v)}
    if isinstance(v, Contact):
        return {"contact": {"public_key": v.public_key.hex(), "endpoint": list(v.endpoint)}}
    if isinstance(v, wire.Message):
        return {"message": {"type": type(v).__name__, "fields": {n: to_json(getattr(v, n)) for n, _ in v.FIELDS}}}
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int):
        return {"endpoint": list(v)}
    if isinstance(v, tuple):
        return {"list": [to_json(x) for x in v]}
    return v


def from_json(v):
    if isinstance(v, dict):
        if "hex" in v:
            return bytes.fromhex(v["hex"])
        if "contact" in v:
            return Contact(bytes.fromhex(v["contact"]["public_key"]), tuple(v["contact"]["endpoint"]))
        if "endpoint" in v:
            return tuple(v["endpoint"])
        if "list" in v:
            return tuple(from_json(x) for x in v["list"])
        if "ip" in v:
            return ipaddress.ip_address(v["ip"])
        if "net" in v:
            return ipaddress.ip_network(v["net"])
        if "mac_prefix" in v:
            mac, length = v["mac_prefix"].split("/")
            return MacPrefix(bytes.fromhex(mac.replace(":", "")), int(length))
        if "message" in v:
            cls = {c.__name__: c for c in wire.registry().values()}.get(v["message"]["type"]) or NESTED[v["message"]["type"]]
            return cls(*[from_json(v["message"]["fields"][n]) for n, _ in cls.FIELDS])
    return v


def vector(msg) -> dict:
    return {
        "type": type(msg).__name__,
        "code": f"0x{msg.TYPE:02x}",
        "fields": {name: to_json(getattr(msg, name)) for name, _ in msg.FIELDS},
        "hex": wire.encode(msg).hex(),
    }


def dhtquery_vector() -> dict:
    """A sessionless query and its answer with fixed keys, nonces and tag (tests/test_sessionless.py)."""
    from weftnet.core.dht import sessionless as sl

    asker, answerer = Identity.from_seed(b(32, 0x01)), Identity.from_seed(b(32, 0x02))
    ss = sl.static_dh(asker, answerer.public_key)
    request = wire.encode(FindNode(0x1122334455667788, b(32, 0x42)))
    echo, cookie = b(16, 0x5A), b(16, 0x6B)
    query, keys = sl.seal_query(asker.public_key, answerer.public_key, ss, 0xA1B2C3D4, b(16, 0x10), request,
                                echo, pad_to=300)
    reply = wire.encode(Nodes(0x1122334455667788, (C4,)))
    answer = sl.seal_answer(keys, 0xA1B2C3D4, b(12, 0x20), sl.FLAG_LEARNED, cookie, reply)
    return {
        "description": "DhtQuery (FindNode, echo, padded to 300 bytes) from seed 01.. to seed 02.., and its "
                       "DhtAnswer (flags LEARNED, a cookie, Nodes of one contact); docs/wire/dht.md",
        "asker_seed": b(32, 0x01).hex(), "answerer_seed": b(32, 0x02).hex(),
        "tag": 0xA1B2C3D4, "query_nonce": b(16, 0x10).hex(), "answer_nonce": b(12, 0x20).hex(),
        "request": request.hex(), "echo": echo.hex(), "pad_to": 300,
        "flags": sl.FLAG_LEARNED, "cookie": cookie.hex(), "reply": reply.hex(),
        "static_dh": ss.hex(), "query_key": keys.query.hex(), "answer_key": keys.answer.hex(),
        "query_hex": query.hex(), "answer_hex": answer.hex(),
    }


if __name__ == "__main__":
    (HERE / "messages.json").write_text(json.dumps([vector(m) for m in MESSAGES], indent=1) + "\n")
    (HERE / "dhtquery.json").write_text(json.dumps(dhtquery_vector(), indent=1) + "\n")
    print(f"wrote {len(MESSAGES)} vectors and dhtquery.json")
