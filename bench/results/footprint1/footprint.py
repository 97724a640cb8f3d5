#!/usr/bin/env python3
"""What a cold pass of a ping touches, by C function and object file, under callgrind's cache model.

passcost.py's harness (two member daemons on loopback, SOCK_SEQPACKET pairs for the TUNs). After WARM
warm pings, PINGS pings whose three passes each run right after 8 MiB is streamed through the caches,
each pass called through ``sys.call_tracing`` (used by nothing else), so that callgrind, started with
``--collect-atstart=no --toggle-collect=sys_call_tracing``, collects the passes and nothing else. With
the simulated last-level cache at 8 MiB the streaming empties it, and its misses in a pass are the
lines of code and data the pass needs and did not find: the pass's footprint in memory.

    valgrind --tool=callgrind --cache-sim=yes --LL=8388608,16,64 --collect-atstart=no \
      --toggle-collect=sys_call_tracing --callgrind-out-file=OUT \
      .venv/bin/python bench/results/footprint1/footprint.py [--pings 20]
    python3 bench/results/footprint1/summarize.py OUT > summary.txt
    callgrind_annotate --show=Ir,I1mr,ILmr,Dr,Dw,D1mr,DLmr,D1mw,DLmw OUT
"""

from __future__ import annotations

import argparse
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench" / "dataplane"))

import passcost  # noqa: E402  (members, thrash, PING_DATA)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pings", type=int, default=20)
    p.add_argument("--warm", type=int, default=50)
    args = p.parse_args()
    from weftnet.runtime import evloop

    async def body():
        from vpn_packets import icmp_echo

        from weftnet.core.vpn.network import VNET_NONE

        a, b, nid, _socks = passcost.members()
        ta, tb = a._tuns[nid], b._tuns[nid]

        def one(fn, cold):
            if cold:
                passcost.thrash()
                sys.call_tracing(fn, ())
            else:
                fn()

        for seq in range(1, args.warm + args.pings + 1):
            cold = seq > args.warm
            ping = icmp_echo("10.1.0.1", "10.1.0.2", ident=7, seq=seq, data=passcost.PING_DATA)
            reply = icmp_echo("10.1.0.2", "10.1.0.1", ident=7, seq=seq, reply=True, data=passcost.PING_DATA)
            ta.kernel.send(VNET_NONE + ping)
            one(lambda: a._on_tun_readable(nid, ta), cold)
            tb.kernel.send(VNET_NONE + reply)
            one(b.driver._on_readable, cold)
            assert tb.kernel.recv(65_535)[10:] == ping
            one(a.driver._on_readable, cold)
            assert ta.kernel.recv(65_535)[10:] == reply
        print(f"{args.pings} cold pings after {args.warm} warm")

    evloop.run(body(), "auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
