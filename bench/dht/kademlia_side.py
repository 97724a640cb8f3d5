"""The workload of bench/dht/common.py on bmuller's `kademlia` (PyPI 2.2.3)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random

from common import GC_MODES, GcClock, cpu_now, emit, now, rss_bytes, set_collector, summarize, workload_plan


async def warm_up() -> None:
    """Two throwaway servers: one bootstraps from the other, sets a key and reads it back, then both
    stop (weftnet_side.warm_up does the same with two of its nodes)."""
    from kademlia.network import Server

    a, b = Server(), Server()
    try:
        await a.listen(0, interface="127.0.0.1")
        await b.listen(0, interface="127.0.0.1")
        await b.bootstrap([("127.0.0.1", a.transport.get_extra_info("sockname")[1])])
        if not await b.set("warm-up", b"warm-up") or await a.get("warm-up") != b"warm-up":
            raise SystemExit("warm-up failed")
    finally:
        a.stop()
        b.stop()
    await asyncio.sleep(0.05)
    gc.collect()


async def main(nodes: int, records: int, seed: int, warm: bool = False) -> None:
    from kademlia.network import Server
    from rpcudp.protocol import RPCProtocol

    logging.disable(logging.CRITICAL)
    if warm:
        await warm_up()
    random.seed(seed)  # kademlia draws node IDs from the global random module (after the warm-up's)
    received = [0]
    received_bytes = [0]
    orig = RPCProtocol.datagram_received

    def counting(self, data, addr):
        received[0] += 1
        received_bytes[0] += len(data)
        return orig(self, data, addr)

    RPCProtocol.datagram_received = counting

    joins, puts, gets = workload_plan(seed, nodes, records)
    rss0 = rss_bytes()
    servers: list[Server] = []
    gcc = GcClock()
    t0, c0, g0 = now(), cpu_now(), gcc.seconds
    for i in range(nodes):
        s = Server()
        await s.listen(0, interface="127.0.0.1")
        s.port = s.transport.get_extra_info("sockname")[1]
        if joins[i] is not None:
            await s.bootstrap([("127.0.0.1", servers[joins[i]].port)])
        servers.append(s)
    join_s, cpu = now() - t0, {"join": cpu_now() - c0}
    gcs = {"join": gcc.seconds - g0}
    msgs_join = received[0]
    bytes_join = received_bytes[0]
    c0, g0 = cpu_now(), gcc.seconds

    put_lat, put_ok = [], 0
    for key, value, who in puts:
        t = now()
        ok = await servers[who].set(key, value)
        put_lat.append(now() - t)
        put_ok += bool(ok)
    rss1 = rss_bytes()
    cpu["put"] = cpu_now() - c0
    gcs["put"] = gcc.seconds - g0
    c0, g0 = cpu_now(), gcc.seconds

    received[0] = 0
    get_lat, get_ok = [], 0
    for (key, value, _), who in zip(puts, gets):
        t = now()
        got = await servers[who].get(key)
        get_lat.append(now() - t)
        get_ok += got == value
    msgs = received[0]
    cpu["get"] = cpu_now() - c0
    gcs["get"] = gcc.seconds - g0
    for s in servers:
        s.stop()
    result = summarize("kademlia 2.2.3", nodes, records, join_s, put_lat, put_ok, get_lat, get_ok, msgs,
                       (rss1 - rss0) / nodes, cpu, msgs_join, gcs)
    result["bytes_per_join"] = round(bytes_join / max(1, nodes - 1))  # (UDP payload bytes received)
    emit(result)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gc", choices=GC_MODES, default="default",
                    help="the garbage collector's setting, the same on both sides (bench/dht/common.py)")
    ap.add_argument("--warm-up", action="store_true",
                    help="two throwaway servers bootstrap, set and get before the memory baseline (warm_up)")
    a = ap.parse_args()
    import kademlia.network  # noqa: F401  (imported before the collector is set, as weftnet's side is)
    import rpcudp.protocol  # noqa: F401

    set_collector(a.gc)
    asyncio.run(main(a.nodes, a.records, a.seed, a.warm_up))
