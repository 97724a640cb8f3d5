"""The workload of bench/dht/common.py on weftnet (real UDP, real Noise sessions)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys

from common import GC_MODES, GcClock, cpu_now, emit, now, rss_bytes, set_collector, summarize, workload_plan

from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig
from weftnet.runtime.driver import start_node


async def warm_up(sessionless: bool) -> None:
    """Two throwaway nodes: one joins the other, puts a record and reads it back, then both close.
    What the process sets up once at its first node (the crypto library's lazy set-up, the event
    loop's structures) is then made before the baseline, so the memory column counts only what each
    node adds (kademlia_side.warm_up does the same with two of its servers). Its own random source:
    the workload's nodes and keys are those of a run without it."""
    rng, config = random.Random(-1), _config(sessionless)
    a = await start_node(Identity.generate(rng), rng=random.SystemRandom(), config=config)
    b = await start_node(Identity.generate(rng), rng=random.SystemRandom(), config=config)
    try:
        ep = a.core.endpoint
        for step in (lambda c, t: c.connect(ep, t, join=True), lambda c, t: c.put(b"warm-up", t)):
            ev = await b.request(step)
            if not ev.ok:
                raise SystemExit(f"warm-up failed: {ev.error}")
        ev = await a.request(lambda c, t, k=ev.key: c.get(k, t))
        if not (ev.ok and ev.value == b"warm-up"):
            raise SystemExit(f"warm-up get failed: {ev.error}")
    finally:
        a.close()
        b.close()
    await asyncio.sleep(0.05)
    gc.collect()


async def main(nodes: int, records: int, seed: int, sessionless: bool = True, isolated: bool = False,
               warm: bool = False) -> None:
    joins, puts, gets = workload_plan(seed, nodes, records)
    rng = random.Random(seed)
    if warm:
        await warm_up(sessionless)
    rss0 = rss_bytes()
    drivers = []
    # One SystemRandom (os.urandom) for every node, as kademlia's nodes share the random
    # module: each instance would carry an unused 2.5 KB Mersenne Twister state.
    system_rng = random.SystemRandom()
    # One NodeConfig for every node, as kademlia's nodes share their defaults: no node changes its
    # config, and a DhtConfig alone (57 fields) is a 1.6 KB dict.
    config = _config(sessionless)
    gcc = GcClock()
    t0, c0, g0 = now(), cpu_now(), gcc.seconds
    for i in range(nodes):
        if isolated:  # each node its own, as alone in its process
            system_rng, config = random.SystemRandom(), _config(sessionless)
        d = await start_node(Identity.generate(rng), rng=system_rng, config=config)
        if joins[i] is not None:
            ep = drivers[joins[i]].core.endpoint
            # Joined = a session with the bootstrap peer and the lookup of our own ID
            # through it has ended (kademlia's bootstrap(): a ping, then the same lookup).
            ev = await d.request(lambda c, t, ep=ep: c.connect(ep, t, join=True))
            if not ev.ok:
                raise SystemExit(f"join of node {i} failed: {ev.error}")
        drivers.append(d)
    join_s, cpu = now() - t0, {"join": cpu_now() - c0}
    gcs = {"join": gcc.seconds - g0}
    msgs_join = sum(d.received for d in drivers)
    c0, g0 = cpu_now(), gcc.seconds

    put_lat, put_ok, keys = [], 0, []
    for key, value, who in puts:
        t = now()
        ev = await drivers[who].request(lambda c, t, v=value: c.put(v, t))
        put_lat.append(now() - t)
        put_ok += ev.ok
        if not ev.ok:
            print(f"put from node {who} failed: {ev.error}", file=sys.stderr)
        keys.append(ev.key)
    rss1 = rss_bytes()
    cpu["put"] = cpu_now() - c0
    gcs["put"] = gcc.seconds - g0
    c0, g0 = cpu_now(), gcc.seconds

    base = sum(d.received for d in drivers)
    get_lat, get_ok = [], 0
    for (key, value, _), rkey, who in zip(puts, keys, gets):
        t = now()
        ev = await drivers[who].request(lambda c, t, k=rkey: c.get(k, t))
        get_lat.append(now() - t)
        get_ok += ev.ok and ev.value == value
    msgs = sum(d.received for d in drivers) - base
    cpu["get"] = cpu_now() - c0
    gcs["get"] = gcc.seconds - g0
    for d in drivers:
        d.close()
    emit(summarize("weftnet", nodes, records, join_s, put_lat, put_ok, get_lat, get_ok, msgs,
                   (rss1 - rss0) / nodes, cpu, msgs_join, gcs))


def _isolate() -> None:
    """Turn off the process-wide caches of immutable values that let the bench's nodes share
    objects (decoded contacts, Ed25519-to-X25519 key maps, the drivers' endpoint tuples): each node
    then holds its own, as a node alone in its process would (kademlia's nodes share nothing of the kind)."""
    import weftnet.core.contact as contact
    import weftnet.core.dht.sessionless as sessionless
    import weftnet.core.identity as identity

    class _NoStore(dict):
        def __setitem__(self, key, value) -> None:
            pass

    contact._CACHE = _NoStore()
    import weftnet.runtime.driver as driver

    driver.SHARE_ENDPOINTS = False  # each driver its own endpoint tuples
    plain = getattr(identity.ed25519_public_to_x25519, "__wrapped__", identity.ed25519_public_to_x25519)
    import weftnet.core.session.handshake as handshake

    identity.ed25519_public_to_x25519 = sessionless.ed25519_public_to_x25519 = plain
    handshake.ed25519_public_to_x25519 = plain


def _config(sessionless: bool) -> NodeConfig:
    cfg = NodeConfig.lab()
    cfg.dht.sessionless = sessionless  # [dht] sessionless: lookup requests without a handshake (on by default)
    return cfg


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-sessionless", action="store_true", help="every request over a Noise session (before issue 16's fifth round)")
    ap.add_argument("--per-node-caches", action="store_true",
                    help="each node its own caches of contacts, node IDs and key conversions, as alone in its "
                    "process (bench/dht/pernode.py): the CPU a real node pays")
    ap.add_argument("--isolated", action="store_true",
                    help="no process-wide caches shared among the nodes (memory as if each ran alone)")
    ap.add_argument("--gc", choices=GC_MODES, default="default",
                    help="the garbage collector's setting, the same on both sides (bench/dht/common.py)")
    ap.add_argument("--warm-up", action="store_true",
                    help="two throwaway nodes join, put and get before the memory baseline (warm_up)")
    a = ap.parse_args()
    if a.isolated:
        _isolate()
    if a.per_node_caches:
        import pernode

        pernode.install()
    set_collector(a.gc)  # (after every import: what a daemon has built by then is frozen)
    asyncio.run(main(a.nodes, a.records, a.seed, not a.no_sessionless, a.isolated, a.warm_up))
