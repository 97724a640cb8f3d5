"""`weft demo`: weftnet's main job on embedded defaults.

Starts a local overlay of N nodes on 127.0.0.1 (one asyncio loop, one real
UDP socket and one NodeCore per node, fresh keys, nothing written to disk),
joins them, and shows — in words a person can follow — secure sessions
coming up, a ping by overlay address, a message routed to a node ID with its
path, and a record put on one node and read on another. Exits non-zero if
any step fails.
"""

from __future__ import annotations

import asyncio
import random
import time

from rich.console import Console
from rich.table import Table

from weftnet.core.node import NodeConfig, TextReceived
from weftnet.runtime.driver import UdpDriver, start_node

__all__ = ["run_demo"]


async def _demo(n: int, console: Console, seed: int | None) -> bool:
    rng = random.Random(seed)
    pick = rng.sample(range(n), min(n, 8))
    ok = True
    drivers: list[UdpDriver] = []
    inbox: list[tuple[int, TextReceived]] = []

    def step(title: str) -> None:
        console.rule(f"[bold]{title}")

    def result(good: bool, text: str) -> None:
        nonlocal ok
        ok = ok and good
        console.print(("[green]✔[/] " if good else "[red]✘[/] ") + text)

    try:
        step(f"1. Starting {n} nodes on 127.0.0.1")
        for i in range(n):
            d = await start_node(config=NodeConfig.lab())  # 127.0.0.1 exempt from per-address limits
            d.listeners.append(lambda ev, i=i: inbox.append((i, ev)) if isinstance(ev, TextReceived) else None)
            drivers.append(d)
        table = Table("#", "node ID", "overlay address", "UDP endpoint")
        for i, d in enumerate(drivers):
            c = d.core
            table.add_row(str(i), c.node_id.text()[:20] + "…", str(c.address), f"{c.endpoint[0]}:{c.endpoint[1]}")
        console.print(table)

        step("2. Joining: each node opens a Noise IK session to a node already in, then looks itself up")
        t0 = time.perf_counter()
        for i in range(1, n):
            via = drivers[rng.randrange(i)]
            ev = await drivers[i].request(lambda c, t, ep=via.core.endpoint: c.connect(ep, t))
            if not ev.ok:
                result(False, f"node {i} could not join: {ev.error}")
                return False
            await drivers[i].request(lambda c, t: c.lookup(c.node_id, t))
        sessions = sum(len(d.core.transport.peers()) for d in drivers)
        tables = [len(d.core.dht.table) for d in drivers]
        result(True, f"{n} nodes joined in {time.perf_counter() - t0:.2f} s: {sessions // 2} encrypted sessions, "
                     f"routing tables of {min(tables)}–{max(tables)} contacts")

        a, b = drivers[pick[0]], drivers[pick[1]]
        step(f"3. Ping by overlay address: node {pick[0]} → {b.core.address} (node {pick[1]})")
        for _ in range(3):
            ev = await a.request(lambda c, t: c.ping(b.core.address, t))
            if ev.ok:
                result(True, f"reply from {ev.node_id.text()[:20]}… rtt={ev.rtt * 1000:.2f} ms (over the encrypted session)")
            else:
                result(False, f"ping failed: {ev.error}")

        src, dst = drivers[pick[2]], drivers[pick[3]]
        step(f"4. A message routed to a node ID: node {pick[2]} → node {pick[3]} ({dst.core.node_id.text()[:20]}…)")
        ev = await src.request(lambda c, t: c.send_text(dst.core.node_id, "hello from the demo", t))
        await asyncio.sleep(0.05)
        got = [m for i, m in inbox if i == pick[3]]
        result(ev.ok and bool(got), f"delivered in {ev.hops} overlay hop(s); node {pick[3]} received: "
                                    f"{got[0].text if got else '(nothing)'!r}")
        ev = await src.request(lambda c, t: c.trace(dst.core.node_id, t))
        if ev.ok:
            for h, hop in enumerate(ev.hops, 1):
                console.print(f"   hop {h}: {hop['node_id'].text()[:20]}… at {hop['endpoint'][0]}:{hop['endpoint'][1]}"
                              f"  {hop['rtt'] * 1000:.2f} ms")
        result(ev.ok, "trace complete" if ev.ok else f"trace failed: {ev.error}")

        w, r = drivers[pick[4]], drivers[pick[5]]
        value = b"weftnet demo record: hello, overlay"
        step(f"5. A record put on node {pick[4]} and read on node {pick[5]}")
        ev = await w.request(lambda c, t: c.put(value, t))
        result(ev.ok, f"put key {ev.key.hex()[:16]}… stored on {ev.stored_at} nodes" if ev.ok else f"put failed: {ev.error}")
        key = ev.key
        ev = await r.request(lambda c, t: c.get(key, t))
        result(ev.ok and ev.value == value, f"get returned {ev.value!r}" if ev.ok else f"get failed: {ev.error}")

        step("6. A signed mutable record, updated by its owner")
        ev1 = await w.request(lambda c, t: c.put(b"version 1", t, mutable_salt=b"demo"))
        ev2 = await w.request(lambda c, t: c.put(b"version 2", t, mutable_salt=b"demo"))
        ev = await r.request(lambda c, t: c.get(ev2.key, t))
        result(ev1.ok and ev2.ok and ev.value == b"version 2",
               f"owner published twice; node {pick[5]} reads {ev.value!r} (seq {ev.seq})")
    finally:
        for d in drivers:
            d.close()
    step("done: all steps passed" if ok else "done: some steps FAILED")
    return ok


def run_demo(nodes: int = 20, seed: int | None = None, console: Console | None = None) -> bool:
    console = console or Console()
    return asyncio.run(_demo(nodes, console, seed))
