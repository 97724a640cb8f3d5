"""Issue 9's defects as figures, on the deterministic harness, for whichever tree is on the path.

    PYTHONPATH=/path/to/tree/src .venv/bin/python bench/hostile/harness.py   # prints one JSON object

Each scenario is an attack from the issue, scripted with weftnet's own
classes (tests/hostile_tools.py) and using only APIs both the tree before
the hardening and after it have, so run.py can put the two side by side.
Figures are bytes and counts on a virtual clock: they do not depend on the
machine. A scenario that crashes the tree reports the exception.
"""

from __future__ import annotations

import heapq
import json
import random
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from hostile_tools import T0, InitForge, Sink, contact, overlay, wait  # noqa: E402

from weftnet.core import wire  # noqa: E402
from weftnet.core.contact import Contact  # noqa: E402
from weftnet.core.dht import Dht, DhtConfig, ImmutableRecord, MemoryStore, MutableRecord  # noqa: E402
from weftnet.core.dht.messages import FindNode, FindValue, Nodes, Route, Store  # noqa: E402
from weftnet.core.identity import Identity  # noqa: E402
from weftnet.core.node import NodeConfig  # noqa: E402
from weftnet.core.session.packets import Hello  # noqa: E402
from weftnet.core.session.transport import SecureTransport  # noqa: E402
from weftnet.core.wire import encode  # noqa: E402


def traffic(net, src_addr, exclude=()) -> dict:
    """Count bytes a node sends, by destination, from now on."""
    out: dict = {}
    prev = net.on_deliver

    def hook(src, dst, data):
        if src == src_addr and dst not in exclude:
            out[dst] = out.get(dst, 0) + len(data)
        if prev:
            prev(src, dst, data)

    net.on_deliver = hook
    return out


def early_data() -> dict:
    """Item 5: a spoofed Init carrying FindNode / FindValue / Route; bytes back and to third parties."""
    res = {}
    for name in ("FindNode", "FindValue", "Route"):
        outs = []
        for inject in (False, True):  # the same deterministic run without and with the attack
            net, nodes = overlay(10, seed=5)
            v = nodes[0]
            big = ImmutableRecord(bytes(range(256)) * 3 + b"x" * 200)
            v.dht._store_local(big.key, big, net.now, True)
            spoofed = ("192.0.2.99", 4444)
            sink = net.add(spoofed, Sink())
            attacker = Identity.generate(random.Random(2))
            payload = {"FindNode": encode(FindNode(1, random.Random(1).randbytes(32))),
                       "FindValue": encode(FindValue(2, big.key)),
                       "Route": encode(Route(3, nodes[7].node_id.raw, Contact(attacker.public_key, spoofed), 0, 32, 1,
                                             b"y" * 600))}[name]
            init = InitForge(v.identity.public_key, identities=1, seed=10, payload=payload).next()
            third = traffic(net, v.endpoint, exclude=(spoofed,))
            if inject:
                net.inject(spoofed, v.endpoint, init)
            net.run_for(10.0)
            outs.append((sink.bytes, sum(third.values()), len(init)))
        (_, base3, _), (back, third, size) = outs
        res[name] = {"init_bytes": size, "bytes_to_spoofed_source": back,
                     "bytes_to_third_parties": max(0, third - base3),
                     "amplification_back": round(back / size, 2),
                     "amplification_third_party": round(max(0, third - base3) / size, 2)}
    return res


def spoofed_in_table() -> dict:
    """Item 5: does the spoofed sender of early data enter the routing table?"""
    net, nodes = overlay(6, seed=8)
    v = nodes[0]
    forge = InitForge(v.identity.public_key, identities=1, seed=3, payload=encode(FindNode(1, bytes(32))))
    net.inject(("192.0.2.98", 1), v.endpoint, forge.next())
    net.run_for(5.0)
    return {"spoofed_sender_in_table": forge.idents[0].node_id.int in v.dht.table}


def invented_contacts(count: int = 20) -> dict:
    """Item 6: an attacker answers FIND_NODE with ``count`` invented contacts at a victim address."""
    net, nodes = overlay(12, seed=6)
    v, a = nodes[0], nodes[1]
    victim = ("192.0.2.66", 53)
    sink = net.add(victim, Sink())
    rng = random.Random(3)
    invented = tuple(Contact(Identity.generate(rng).public_key, victim) for _ in range(count))

    def poisoned(sender, rid, target, near=False):  # (_nodes_reply: every node-list reply, in a session or not)
        return Nodes(rid, invented)

    a.dht._nodes_reply = poisoned
    from_attacker = traffic(net, a.endpoint)
    from weftnet.core.identity import NodeId

    near = NodeId(a.node_id.raw[:31] + bytes([a.node_id.raw[31] ^ 1]))  # a's neighbourhood (a lookup of a
    wait(net, v, v.lookup(near, net.now))                                   # node's own ID stops at it)
    net.run_for(15.0)
    sent = from_attacker.get(v.endpoint, 0)
    return {"bytes_from_attacker": sent, "bytes_to_victim": sink.bytes, "datagrams_to_victim": sink.datagrams,
            "amplification": round(sink.bytes / sent, 2)}


def invented_contact() -> dict:
    """Item 6, the smallest poisoned reply: one invented contact at a victim address."""
    return invented_contacts(1)


def record_reflection(relays: bool = False, newcomer: bool = False) -> dict:
    """Item 19: a key's own endpoint record names 8 victims (or 4, as its relays); one reply names
    that key at a ninth. ``newcomer``: the node has no credit for the attacker (never heard it)."""
    from weftnet.core.reach.engine import ENDPOINT_SALT, ReachConfig
    from weftnet.core.reach.messages import NAT_EIM, NAT_PUBLIC, Candidate, EndpointRecord, RelayRef

    net, nodes = overlay(12, seed=6, config_for=lambda i: NodeConfig(reach=ReachConfig(enabled=True)))
    v, a = nodes[0], nodes[1]
    named = [(f"192.0.2.{70 + i}", 53) for i in range(8)]
    sinks = [net.add(x, Sink()) for x in named]
    hinted = ("192.0.2.66", 53)
    hint_sink = net.add(hinted, Sink())
    k = Identity.generate(random.Random(99))
    if relays:
        value = encode(EndpointRecord(NAT_EIM, 2, (), tuple(
            RelayRef(Identity.generate(random.Random(500 + i)).public_key, x) for i, x in enumerate(named[:4]))))
    else:
        value = encode(EndpointRecord(NAT_PUBLIC, 1, tuple(Candidate(1, x) for x in named), ()))
    a.dht.put(MutableRecord.create(k, ENDPOINT_SALT, 1, 3600, value), net.now)
    net.flush(a.endpoint)
    net.run_for(5.0)
    a.dht._nodes_reply = lambda sender, rid, target, near=False: Nodes(rid, (Contact(k.public_key, hinted),))
    from weftnet.core.identity import NodeId

    near = NodeId(a.node_id.raw[:31] + bytes([a.node_id.raw[31] ^ 1]))
    if newcomer:
        v.dht._rtt.forget(a.node_id.int)
    wait(net, v, v.lookup(near, net.now))
    net.run_for(60.0)
    return {"reply_contacts": 1, "bytes_to_hinted_address": hint_sink.bytes, "datagrams_to_hinted_address": hint_sink.datagrams,
            "bytes_to_record_addresses": sum(s.bytes for s in sinks),
            "datagrams_to_record_addresses": sum(s.datagrams for s in sinks)}


def record_relay_reflection() -> dict:
    return record_reflection(relays=True)


def record_reflection_newcomer() -> dict:
    return record_reflection(newcomer=True)


def record_relay_reflection_newcomer() -> dict:
    return record_reflection(relays=True, newcomer=True)


def route_origin() -> dict:
    """Item 4: 30 routed messages naming 10 honest nodes at a bogus endpoint, with the trace flag."""
    net, nodes = overlay(14, seed=7)
    a = nodes[1]
    bogus = ("192.0.2.250", 9)
    sink = net.add(bogus, Sink())
    honest = nodes[2:12]
    before = {c.node_id: sum(c.node_id.int in n.dht.table for n in nodes) for c in honest}
    sent = 0
    for i in range(30):
        h = honest[i % 10]
        target = nodes[(i * 5) % 14]
        msg = encode(Route(1000 + i, target.node_id.raw, Contact(h.identity.public_key, bogus), 0, 32, 1, b"z" * 100))
        sent += len(msg) + 30
        a.transport.send(contact(nodes[0]), msg, net.now)
        net.flush(a.endpoint)
        net.run_for(1.0)
    net.run_for(60.0)
    lost = sum(1 for c in honest if sum(c.node_id.int in n.dht.table for n in nodes) < before[c.node_id])
    return {"attacker_bytes": sent, "bytes_to_bogus_endpoint": sink.bytes,
            "reflection": round(sink.bytes / sent, 2), "honest_contacts_lost_from_some_table": lost,
            "evictions": sum(n.dht.table.evictions for n in nodes)}


def store_quota() -> dict:
    """Item 3: one peer sends 100,000 STOREs (150 a second, under the request rate limit)."""
    me = Contact(Identity.generate(random.Random(1)).public_key, ("198.51.100.1", 4500))
    d = Dht(me, random.Random(2), T0, DhtConfig(), MemoryStore())
    attacker = Contact(Identity.generate(random.Random(3)).public_key, ("203.0.113.5", 4000))
    for i in range(100_000):
        d.on_message(attacker, Store(i + 1, ImmutableRecord(i.to_bytes(4, "big")).encode()), T0 + i / 150)
        if i % 1000 == 999:
            d.messages_to_send()
            while d.next_event() is not None:
                pass
    owner = Identity.generate(random.Random(4))
    forever = MutableRecord.create(owner, b"s", 1, 2**32 - 1, b"v")
    now = T0 + 100_000 / 150
    d.on_message(Contact(owner.public_key, ("198.51.100.77", 4000)), Store(7, forever.encode()), now)
    held = d.store.get(forever.key)
    return {"stores_offered": 100_000, "records_held": len(d.store),
            "ttl_asked_s": 2**32 - 1, "ttl_kept_s": round(held.expires - now) if held else None}


class _Net:
    """Dht instances exchanging encoded messages with seeded latency; bytes counted by type."""

    def __init__(self, n: int, seed: int, **cfg):
        self.rng = random.Random(seed)
        self.now = T0
        self.heap: list = []
        self.seq = 0
        self.nodes, self.contacts, self.dead = {}, [], set()
        self.bytes_by_type: dict = {}
        self.events: dict = {}
        for i in range(n):
            ident = Identity.generate(random.Random(seed * 100_000 + i))
            c = Contact(ident.public_key, (f"10.{i // 250}.{i % 250}.1", 4000))
            self.nodes[c.node_id.int] = Dht(c, random.Random(seed * 7 + i), self.now,
                                            DhtConfig(per_prefix=None, **cfg), MemoryStore(), ident)
            self.contacts.append(c)

    def dht(self, i):
        return self.nodes[self.contacts[i].node_id.int]

    def flush(self, d):
        for dst, msg in d.messages_to_send():
            data = wire.encode(msg)
            name = type(msg).__name__
            self.bytes_by_type[name] = self.bytes_by_type.get(name, 0) + len(data) + 30
            self.seq += 1
            heapq.heappush(self.heap, (self.now + self.rng.uniform(0.005, 0.05), self.seq, d.contact, dst, data))
        ev = self.events.setdefault(d.key, [])
        while (e := d.next_event()) is not None:
            ev.append(e)
        t = d.get_timer()
        if t is not None:
            self.seq += 1
            heapq.heappush(self.heap, (t, self.seq, None, d.contact, None))

    def run(self, until):
        while self.heap and self.heap[0][0] <= until:
            t, _, src, dst, data = heapq.heappop(self.heap)
            self.now = max(self.now, t)
            d = self.nodes.get(dst.node_id.int)
            if d is None or dst.node_id.int in self.dead:
                continue
            if data is None:
                if d.get_timer() is not None and d.get_timer() <= self.now:
                    d.handle_timer(self.now)
                    self.flush(d)
                continue
            d.on_message(src, wire.decode(data), self.now)
            self.flush(d)
        self.now = max(self.now, until)

    def call(self, i, fn):
        d = self.dht(i)
        op = fn(d)
        self.flush(d)
        deadline = self.now + 60
        while self.now < deadline:
            for e in self.events.get(d.key, []):
                if getattr(e, "op_id", None) == op:
                    self.events[d.key].remove(e)
                    return e
            self.run(min(deadline, self.heap[0][0] if self.heap else deadline))
        raise AssertionError("operation never completed")


def replication() -> dict:
    """Item 7: a publisher stores a record and goes away; how long it lives, what replication costs."""
    net = _Net(24, seed=22, k=5, refresh_interval=1e9)
    for i in range(1, 24):
        via = net.contacts[net.rng.randrange(i)]
        net.call(i, lambda d, via=via: d.bootstrap([via], net.now))
    rec = ImmutableRecord(b"R" * 900)
    e = net.call(3, lambda d: d.put(rec, net.now))
    published = net.now
    net.dead.add(net.contacts[3].node_id.int)
    alive = [i for i in range(24) if i != 3]
    net.run(published + 3.5 * 3600)
    net.bytes_by_type.clear()
    net.run(published + 12.5 * 3600)
    carrying = sum(v for k, v in net.bytes_by_type.items() if k in ("Store", "Replicate"))
    inventory = net.bytes_by_type.get("ReplicaOffer", 0) + net.bytes_by_type.get("ReplicaWant", 0)
    lived = None
    for h in range(13, 97):
        net.run(published + h * 3600)
        if not any(net.dht(i).store.get(rec.key) is not None for i in alive):
            lived = h
            break
    return {"stored_on": e.stored, "record_bytes": len(rec.encode()),
            "steady_state_bytes_per_hour_carrying_the_record": round(carrying / 9),
            "steady_state_bytes_per_hour_inventory": round(inventory / 9),
            "per_stored_byte_per_hour": round((carrying + inventory) / 9 / len(rec.encode()), 2),
            "hours_until_gone_after_publisher_left": lived if lived is not None else ">96"}


def revocations() -> dict:
    """Item 2: members hold list #1; the owner publishes #2; each member checks once."""
    from weftnet.core.vpn.firewall import Firewall
    from weftnet.core.vpn.netcert import NetworkAuthority
    from weftnet.core.vpn.network import VpnNetwork

    net, nodes = overlay(24, seed=23, config_for=lambda i: NodeConfig(dht=DhtConfig(k=4)))
    rng = random.Random(23)
    lab = NetworkAuthority.create("lab", ["10.1.0.0/24"], rng, net.now)
    rl1 = lab.revocation_list(seq=1, issued_at=int(net.now), serials=[90])
    rec1 = lab.revocation_record(rl1)
    allow = {"inbound": [{"proto": "any", "port": "any", "host": "any"}],
             "outbound": [{"proto": "any", "port": "any", "host": "any"}]}
    members = []
    for i, core in enumerate(nodes[1:6]):
        cert = lab.sign_member(core.node_id, [f"10.1.0.{i + 1}"], not_before=int(net.now) - 10,
                               not_after=int(net.now) + 86400, serial=i + 1)
        vnet = VpnNetwork(lab.descriptor, cert, net.now, revocations=rl1, firewall=Firewall.from_config(allow))
        core.vpn.add_network(vnet, lab.directory_records(cert), revocation_record=rec1)
        members.append(vnet)
        core.vpn_publish(net.now)
        net.flush(core.endpoint)
    net.run_for(20.0)
    owner = nodes[10]
    owner.vpn.add_published(lab.revocation_record(lab.revocation_list(seq=2, issued_at=int(net.now),
                                                                       serials=[90, 3])))
    owner.vpn_publish(net.now)
    net.flush(owner.endpoint)
    net.run_for(20.0)
    for core in nodes[1:6]:
        core.vpn_check_revocations(net.now)
        net.flush(core.endpoint)
    net.run_for(30.0)
    return {"members": 5, "members_on_list_2_after_one_check": sum(v.revocations.seq == 2 for v in members)}


def rollback() -> dict:
    """Item 11: an older signed record replayed to a node near the key that held none."""
    net, nodes = overlay(30, seed=24, config_for=lambda i: NodeConfig(dht=DhtConfig(k=4)))
    owner = nodes[2]
    r1 = MutableRecord.create(owner.identity, b"s", 1, 3600, b"old")
    wait(net, owner, owner.put(b"new", net.now, mutable_salt=b"s"))
    target = int.from_bytes(r1.key, "big")
    ranked = sorted((n for n in nodes if n is not owner), key=lambda n: n.node_id.int ^ target)
    x = next(n for n in ranked[4:] if n.dht.store.get(r1.key) is None)
    x.dht.on_message(contact(nodes[-1]), Store(77, r1.encode()), net.now)
    ev = wait(net, x, x.get(r1.key, net.now))
    return {"value_read_by_the_node": ev.value.decode() if ev.value else None}


def ping_after_expiry() -> dict:
    """Item 12: pings to a peer whose session is fresh, 200 s old, 900 s old."""
    net, (a, b) = overlay(2, seed=41)
    out = {}
    for gap in (0.0, 200.0, 700.0):
        net.run_for(gap)
        out[f"after_{int(net.now - T0)}s"] = wait(net, a, a.ping(b.node_id, net.now)).ok
    return out


def hello() -> dict:
    """Item 9: 40 addresses of one /24 send 5 hellos a second each for 10 s; a joiner elsewhere too."""
    b = SecureTransport(Identity.generate(random.Random(31)), random.Random(32), T0)
    h = encode(Hello(7, bytes(60)))
    joiner, block, now = 0, 0, T0
    for tick in range(50):
        for i in range(40):
            b.receive_datagram(h, (f"203.0.113.{i + 1}", 7000), now)
        block += len(b.datagrams_to_send(now))
        if tick % 5 == 2:  # once a second, mid-second, after the block's hellos
            b.receive_datagram(encode(Hello(tick, bytes(60))), ("192.0.2.8", 4500), now)
            joiner += len(b.datagrams_to_send(now))
        now += 0.2
    return {"block_hellos": 2000, "block_answered": block, "joiner_hellos": 10, "joiner_answered": joiner,
            "hello_bytes": len(h), "reply_bytes": 42}


def hop_255() -> dict:
    """Item 14: a route at hop 255 with the trace flag, then a ping, in one receive batch."""
    net, (a, b) = overlay(2, seed=25)
    a.transport.send(contact(b), encode(Route(5, bytes(32), contact(a), 255, 255, 1, b"")), net.now)
    op = a.ping(b.node_id, net.now)
    batch = [(d, a.endpoint) for d, _ in a.datagrams_to_send(net.now)]
    try:
        b.receive_datagrams(batch, net.now)
        raised = None
    except Exception as exc:  # noqa: BLE001 - the defect
        raised = type(exc).__name__
    for d, _ in b.datagrams_to_send(net.now):
        a.receive_datagram(d, b.endpoint, net.now)
    got = []
    while (e := a.next_event()) is not None:
        got.append(e)
    return {"raised": raised, "ping_in_same_batch_answered": any(getattr(e, "op_id", None) == op and e.ok
                                                                 for e in got)}


SCENARIOS = [early_data, spoofed_in_table, invented_contacts, invented_contact, record_reflection, record_relay_reflection,
             record_reflection_newcomer, record_relay_reflection_newcomer, route_origin, store_quota, replication, revocations,
             rollback, ping_after_expiry, hello, hop_255]


def main() -> None:
    import weftnet

    out = {"tree": str(Path(weftnet.__file__).resolve().parents[2])}
    for fn in SCENARIOS:
        try:
            out[fn.__name__] = fn()
        except Exception as exc:  # noqa: BLE001 - a defect of the tree under test is a result too
            out[fn.__name__] = {"error": f"{type(exc).__name__}: {exc}"[:300],
                                "where": traceback.format_exc().splitlines()[-3][:200]}
        print(f"{fn.__name__}: {json.dumps(out[fn.__name__])}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
