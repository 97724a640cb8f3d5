"""A legitimate node joining during the flood (bench/hostile/flood.py): time from connect to session.

    python newcomer.py HOST PORT --bind 127.0.5.1

Prints one JSON line: whether it connected, and how long it took (wall clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from weftnet.runtime.driver import start_node


async def run(host: str, port: int, bind: str) -> dict:
    d = await start_node(host=bind)
    try:
        t0 = time.perf_counter()
        ev = await d.request(lambda c, t: c.connect((host, port), t))
        took = time.perf_counter() - t0
        return {"connected": ev.ok, "seconds": took, "error": ev.error}
    finally:
        d.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--bind", default="127.0.5.1")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.host, a.port, a.bind))), flush=True)


if __name__ == "__main__":
    main()
