"""bench/dht's joins over NodeCores wired in memory: the core's work alone, countable exactly.

    .venv/bin/python bench/dht/join_core.py [--nodes 200] [--fill N] [--set NAME=VALUE ...] [--account] [--per-node-caches]
    .venv/bin/python bench/dht/join_core.py --unit-costs
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=cg.out .venv/bin/python bench/dht/join_core.py

The same joins as ``join_phase.py`` (and ``weftnet_side.py``): node i joins through node ``joins[i]`` with
``connect(join=True)``, one after the other, then the fills run out. But no sockets and no event loop: each
datagram goes straight to the NodeCore it is addressed to (first in, first out, 50 µs of virtual time each),
and timers fire in virtual time. Every random source is seeded, so a run does the same work every time: under
callgrind its instruction count does not depend on what else the machine runs (CPU seconds on a shared
machine move by ±10% between identical runs; bench/results/djoin6). What it leaves out is what both DHTs of
bench/dht pay per datagram: system calls and the event loop.

Prints the CPU seconds of the joins (not comparable with bench/dht's, which include the above), datagrams
per join, contacts per table, the sessionless counters per join, and the DHT's requests per join by the
kind of lookup that sent them (``bootstrap``: the own-ID lookup; ``fill``: the table fill after it, also by
the depth of the bucket it fills, 0 = the farther half of the ID space, and by where the fill heard of the node
it asks). ``--account``: every crypto operation of the joins by kind (X25519, Ed25519 -> X25519 conversions as
paid in this process and as nodes alone in their processes would pay them, Ed25519, AEADs, MACs, query KDFs),
datagrams and bytes by message type, each kind's CPU alone, and what the caches computed.
``--per-node-caches``: each node its own caches (bench/dht/pernode.py). ``--unit-costs``: only time each kind
of operation alone (CPU time, best of 5). bench/results/djoin9.
"""

from __future__ import annotations

import argparse
import collections
import gc
import heapq
import random
import time

from weftnet.core.dht import engine
from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore

DELAY = 50e-6  # virtual seconds a datagram takes
T0 = 1_000_000.0


BY_KIND: collections.Counter = collections.Counter()
_ASKED: set = set()
_HEARD: dict = {}


def _count_requests() -> None:
    """Count the DHT's requests by the kind of operation that sent them (``bootstrap`` = the own-ID
    lookup, ``fill`` = the table fill after it), and the fill's by the depth of the bucket it fills."""
    send = engine.Dht._request

    def counted(self, contact, msg, op_id, now, kind, hint=None, data=None):
        op = self._ops.get(op_id)
        what = op.kind if op is not None else kind
        BY_KIND["requests_" + what] += 1
        if what == "fill" and op.lookup is not None:
            BY_KIND[f"fill_depth_{self.table.bucket_for(op.lookup.target).depth}"] += 1
            # Fill requests to a contact the table holds (its ss kept: no X25519), and to a peer
            # this node asked before in its join (what batching requests to one peer could merge).
            if contact.key in self.table.by_key:
                BY_KIND["fill_to_table_contact"] += 1
            elif contact.key in _HEARD.get(id(self), ()):
                BY_KIND["fill_to_join_hearsay"] += 1  # named in the own-ID lookup's answers
            else:
                BY_KIND["fill_to_fill_hearsay"] += 1  # named only in an answer to the fill itself
        if what in ("fill", "bootstrap"):
            pair = (id(self), contact.key)
            if pair in _ASKED:
                BY_KIND[f"{what}_to_peer_asked_before"] += 1
            _ASKED.add(pair)
        return send(self, contact, msg, op_id, now, kind, hint, data)

    engine.Dht._request = counted
    fill = engine.Dht._fill_after_join

    def fill_after_join(self, now, heard=None):
        _HEARD[id(self)] = {c.key for c in heard or ()}
        return fill(self, now, heard)

    engine.Dht._fill_after_join = fill_after_join


OPS: collections.Counter = collections.Counter()  # crypto operations by kind (--account)
SIZES: collections.Counter = collections.Counter()  # datagrams and bytes by message type (--account)
_PAIRS: set = set()  # (node key, peer key): the conversions a node alone in its process would make
_PLAIN_CONV: list = [None]
_TYPES = {0x32: "DhtQuery", 0x33: "DhtAnswer", 0x34: "DhtProof"}


class _CountingAead:
    """ChaCha20Poly1305 that counts seals and opens, and the bytes they cover."""

    def __init__(self, key, _cls=None):
        self._a = self._cls(key)

    def encrypt(self, nonce, data, ad):
        OPS["aead_seal"] += 1
        OPS["aead_seal_bytes"] += len(data)
        return self._a.encrypt(nonce, data, ad)

    def decrypt(self, nonce, data, ad):
        OPS["aead_open"] += 1
        OPS["aead_open_bytes"] += len(data)
        return self._a.decrypt(nonce, data, ad)


def _count_crypto() -> None:
    """Count every public-key operation, Ed25519 -> X25519 conversion, AEAD, MAC and KDF of the joins
    (wrapping the library's own entry points to them; same results)."""
    import weftnet.core.dht.sessionless as sl
    import weftnet.core.identity as ident
    import weftnet.core.session.handshake as hs
    import weftnet.core.session.transport as tr
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    conv = ident.ed25519_public_to_x25519  # the process-wide lru_cache (or bench/dht/pernode's)
    _PLAIN_CONV[0] = getattr(conv, "__wrapped__", conv)

    def counted_conv(pk):
        OPS["conversion_calls"] += 1
        info = getattr(conv, "cache_info", None)
        before = info().misses if info else None
        out = conv(pk)
        if info and info().misses != before:
            OPS["conversion_computed_process_wide"] += 1
        return out

    for mod in (ident, sl, hs):
        mod.ed25519_public_to_x25519 = counted_conv
    static = sl.static_dh

    def static_dh(identity, peer_public):
        OPS["x25519_sessionless_ss"] += 1
        pair = (identity.public_key, peer_public)
        if pair not in _PAIRS:
            _PAIRS.add(pair)
            OPS["conversion_per_node"] += 1
        return static(identity, peer_public)

    sl.static_dh = static_dh
    dh = hs.DH

    def DH(private, public):
        OPS["x25519_handshake_dh"] += 1
        return dh(private, public)

    hs.DH = DH
    make = hs.X25519PrivateKey.from_private_bytes

    class _Ephemeral:  # the handshake's ephemeral keys (each: one base-point multiplication for its public key)
        @staticmethod
        def from_private_bytes(data):
            OPS["x25519_keygen_ephemeral"] += 1
            return make(data)

    hs.X25519PrivateKey = _Ephemeral
    mac = hs.MAC

    def MAC(key, data):
        OPS["blake2s_mac"] += 1
        return mac(key, data)

    hs.MAC = MAC
    qk = sl.query_keys

    def query_keys(*a):
        OPS["query_kdf (7 BLAKE2s)"] += 1
        return qk(*a)

    sl.query_keys = query_keys
    aead = type("Aead", (_CountingAead,), {"_cls": ChaCha20Poly1305})
    for mod in (sl, hs, tr):
        mod.ChaCha20Poly1305 = aead
    sign = ident.Identity.sign

    def counted_sign(self, message):
        OPS["ed25519_sign"] += 1
        return sign(self, message)

    ident.Identity.sign = counted_sign
    verify = ident.verify_signature

    def counted_verify(*a):
        OPS["ed25519_verify"] += 1
        return verify(*a)

    for mod in list(__import__("sys").modules.values()):
        if getattr(mod, "__name__", "").startswith("weftnet") and getattr(mod, "verify_signature", None) is verify:
            mod.verify_signature = counted_verify
    generate = ident.Identity.generate.__func__

    def counted_generate(cls, rng):
        OPS["ed25519_keygen (identities)"] += 1
        return generate(cls, rng)

    ident.Identity.generate = classmethod(counted_generate)


class _NoStore(dict):
    def __setitem__(self, key, value) -> None:
        pass


def _unit_costs() -> dict[str, float]:
    """Microseconds of CPU per operation, each timed alone in this process (best of 5, CPU time)."""
    import timeit

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    import weftnet.core.dht.sessionless as sl
    import weftnet.core.identity as ident
    import weftnet.core.session.handshake as hs

    r = random.Random(7)
    me = Identity.generate(r)
    peers = [Identity.generate(r).public_key for _ in range(256)]
    plain_conv = _PLAIN_CONV[0]
    xs = [plain_conv(p) for p in peers]
    priv = me.x25519_private
    key32, n12, n16 = bytes(32), bytes(12), bytes(16)
    q900, a900 = bytes(880), ChaCha20Poly1305(key32).encrypt(n12, bytes(880), b"h" * 54)
    it = iter(range(10**9))

    def best(fn, n):  # CPU time, not wall: the other jobs of a shared machine preempt us
        return min(timeit.repeat(fn, number=n, repeat=5, timer=time.process_time)) / n * 1e6

    import weftnet.core.contact as contact_mod
    from weftnet.core.contact import Contact

    raws = []
    for i, p in enumerate(peers * 40):  # 10,240 distinct encodings, each decoded once per repeat
        buf = bytearray()
        Contact(p, ("127.0.0.1", 10_000 + i))._pack_body(buf)
        raws.append(bytes(buf))
    plain_id = getattr(ident.node_id_for, "__wrapped__", ident.node_id_for)

    def decode_uncached():  # what a node pays for a contact it has not decoded before
        # (A tree whose contact keeps the integer only has no node_id_for in contact: nothing cached there.)
        saved, saved_id = contact_mod._CACHE, getattr(contact_mod, "node_id_for", None)
        contact_mod._CACHE = _NoStore()
        if saved_id is not None:
            contact_mod.node_id_for = plain_id
        try:
            for r in raws[:2000]:
                Contact._unpack_body(r, 0)
        finally:
            contact_mod._CACHE = saved
            if saved_id is not None:
                contact_mod.node_id_for = saved_id

    costs = {
        "contact_decode (incl. node ID)": best(decode_uncached, 1) / 2000,
        "node_id (SHA-256)": best(lambda: plain_id(peers[next(it) & 255]), 20000),
    }
    return costs | {
        "x25519": best(lambda: priv.exchange(X25519PublicKey.from_public_bytes(xs[next(it) & 255])), 2000),
        "x25519_keygen": best(lambda: X25519PrivateKey.generate().public_key().public_bytes_raw(), 2000),
        "conversion": best(lambda: plain_conv(peers[next(it) & 255]), 5000),
        "ed25519_keygen": best(lambda: Identity.generate(r), 2000),
        "query_kdf": best(lambda: sl.query_keys(key32, key32, key32, n16), 20000),
        "blake2s_mac": best(lambda: hs.MAC(n16, q900), 20000),
        "aead_seal_880B": best(lambda: ChaCha20Poly1305(key32).encrypt(n12, q900, b"h" * 54), 20000),
        "aead_open_880B": best(lambda: ChaCha20Poly1305(key32).decrypt(n12, a900, b"h" * 54), 20000),
    }


def main(nodes: int, seed: int, settings: dict, account: bool = False) -> None:
    _count_requests()
    if account:
        _count_crypto()
    rng = random.Random(seed)
    joins = [rng.randrange(i) if i else None for i in range(nodes)]  # as common.workload_plan draws them
    node_rng = random.Random(seed + 1)  # (bench/dht's nodes share one SystemRandom: here a seeded one)
    cfg = NodeConfig.lab()
    for name, value in settings.items():
        if not hasattr(cfg.dht, name):
            raise SystemExit(f"join_core: no DHT setting {name!r}")
        setattr(cfg.dht, name, value)
    cores: list[NodeCore] = []
    by_endpoint: dict = {}
    queue: collections.deque = collections.deque()
    timers: list = []
    clock = [T0]
    sent = [0]

    def flush(core: NodeCore) -> None:
        for data, dst in core.datagrams_to_send(clock[0]):
            sent[0] += 1
            if account:
                kind = _TYPES.get(data[1], f"type 0x{data[1]:02x}") if len(data) > 1 else "short"
                SIZES[kind + " datagrams"] += 1
                SIZES[kind + " bytes"] += len(data)
            queue.append((core.endpoint, dst, data))
        t = core.get_timer()
        if t is not None:
            heapq.heappush(timers, (t, id(core), core))

    def run(done, until: float | None = None) -> None:
        """Deliver and fire timers until ``done()`` (checked when nothing is in flight), or until
        nothing is left before ``until``."""
        while True:
            while queue:
                src, dst, data = queue.popleft()
                clock[0] += DELAY
                core = by_endpoint.get(dst)
                if core is not None:
                    core.receive_datagram(data, src, clock[0])
                    flush(core)
            if done():
                return
            while timers:
                t, _, core = heapq.heappop(timers)
                due = core.get_timer()
                if due is None:
                    continue
                if due > t:
                    heapq.heappush(timers, (due, id(core), core))
                    continue
                if until is not None and t > until:
                    heapq.heappush(timers, (t, id(core), core))
                    return
                clock[0] = max(clock[0], t)
                core.handle_timer(clock[0])
                flush(core)
                break
            else:
                return

    gc_cpu = [0.0, 0.0]  # CPU seconds in the garbage collector (it traverses every node's objects: one process)

    def on_gc(phase, info):
        if phase == "start":
            gc_cpu[1] = time.process_time()
        else:
            gc_cpu[0] += time.process_time() - gc_cpu[1]

    gc.callbacks.append(on_gc)
    c0 = time.process_time()
    for i in range(nodes):
        core = NodeCore(Identity.generate(rng), node_rng, clock[0], cfg)
        endpoint = ("127.0.0.1", 10_000 + i)
        core.set_local_endpoint(endpoint)
        cores.append(core)
        by_endpoint[endpoint] = core
        if joins[i] is None:
            continue
        op = core.connect(cores[joins[i]].endpoint, clock[0], join=True)
        flush(core)
        result: list = []

        def joined(core=core, op=op, result=result) -> bool:
            while (ev := core.next_event()) is not None:
                if getattr(ev, "op_id", None) == op:
                    result.append(ev)
            return bool(result)

        run(joined)
        if not result or not result[0].ok:
            raise SystemExit(f"join of node {i} failed: {result[0].error if result else 'no answer'}")
    end = clock[0] + 1.0  # the last fills (their requests and fallbacks end well within a second)
    run(lambda: False, until=end)
    cpu = time.process_time() - c0
    gc.callbacks.remove(on_gc)
    n = max(1, nodes - 1)
    table = sum(len(c.dht.table) for c in cores) / nodes
    per = collections.Counter()
    for c in cores:
        for k, v in c.sessionless.stats.items():
            per[k] += v
    print(f"{nodes} nodes: core CPU {cpu:.2f} s (garbage collector {gc_cpu[0]:.2f} s), {sent[0] / n:.1f} datagrams per join, "
          f"{table:.1f} contacts per table")
    print("per join:", {k: round(v / n, 1) for k, v in sorted(per.items()) if v})
    print("requests per join:", {k: round(v / n, 2) for k, v in sorted(BY_KIND.items())})
    if account:
        print("crypto per join:", {k: round(v / n, 2) for k, v in sorted(OPS.items())})
        print("datagrams and bytes per join:", {k: round(v / n, 1) for k, v in sorted(SIZES.items())})
        ops = collections.Counter(OPS)  # (before the timings below add to it)
        unit = _unit_costs()
        print("µs per operation (alone):", {k: round(v, 2) for k, v in unit.items()})
        ms = {
            "X25519 (ss, handshake DH)": (ops["x25519_sessionless_ss"] + ops["x25519_handshake_dh"]) * unit["x25519"],
            "X25519 keygen (handshake ephemerals)": ops["x25519_keygen_ephemeral"] * unit["x25519_keygen"],
            "conversions paid here (process-wide cache)": ops["conversion_computed_process_wide"] * unit["conversion"],
            "conversions a node alone would pay": ops["conversion_per_node"] * unit["conversion"],
            "Ed25519 keygen": ops["ed25519_keygen (identities)"] * unit["ed25519_keygen"],
            "query KDFs": ops["query_kdf (7 BLAKE2s)"] * unit["query_kdf"],
            "MACs": ops["blake2s_mac"] * unit["blake2s_mac"],
            "AEADs (at 880 B)": (ops["aead_seal"] * unit["aead_seal_880B"] + ops["aead_open"] * unit["aead_open_880B"]),
        }
        print("crypto µs per join (count x unit cost):", {k: round(v / n, 1) for k, v in ms.items()})
        print(f"core CPU per join {cpu / n * 1e6:.0f} µs")
        import sys as _sys

        pn = _sys.modules.get("pernode")
        if pn is not None and pn._STATE["contacts_module"] is not None:
            print("per-node caches, computed per join:", {k: round(v / n, 1) for k, v in sorted(pn.misses().items())})
        else:
            import weftnet.core.contact as contact
            import weftnet.core.identity as ident
            import weftnet.core.puzzle as puzzle

            print("process-wide caches, computed per join:",
                  {"node_id_for": (round(ident.node_id_for.cache_info().misses / n, 1)
                                   if hasattr(ident.node_id_for, "cache_info") else "not cached"),
                   "puzzle_bits": round(puzzle.puzzle_bits.cache_info().misses / n, 1)},
                  "contacts in the shared cache:", round(len(contact._CACHE) / n, 1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fill", type=int, help="join_fill for this run")
    ap.add_argument("--account", action="store_true",
                    help="count the crypto operations and bytes of the joins, and time each kind alone")
    ap.add_argument("--unit-costs", action="store_true", help="only time each kind of crypto operation alone")
    ap.add_argument("--per-node-caches", action="store_true",
                    help="each node its own caches of contacts, node IDs and key conversions (bench/dht/pernode.py)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a DHT setting for this run (a number, true or false); may be repeated")
    a = ap.parse_args()
    settings: dict = {}
    if a.fill is not None:
        settings["join_fill"] = a.fill
    for item in a.set:
        name, _, value = item.partition("=")
        low = value.lower()
        settings[name] = (low == "true") if low in ("true", "false") else float(value) if "." in value else int(value)
    if a.unit_costs:
        import weftnet.core.identity as _ident

        _PLAIN_CONV[0] = getattr(_ident.ed25519_public_to_x25519, "__wrapped__", _ident.ed25519_public_to_x25519)
        print("µs per operation (alone, best of 5):", {k: round(v, 2) for k, v in _unit_costs().items()})
        raise SystemExit(0)
    if a.per_node_caches:
        import pernode

        pernode.install()
    main(a.nodes, a.seed, settings, a.account)
