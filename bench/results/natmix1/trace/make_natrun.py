"""Writes natrun.py: sim/nat.py's run_connectivity with a Tracer call at each pair's start and end
(per-pair times to pairs.jsonl; the datagrams of a slow pair, and with DEEP_J the reach and
transport calls of the listed pairs, to slow-<j>.txt). Run from a checkout's root."""
src = open("src/weftnet/sim/nat.py").read()
fn = src[src.index("def run_connectivity("):src.index("def _drain(cores)")]
fn = fn.replace("""        t0 = net.now
        op = ca.ping(cb.node_id, net.now)""", """        TRACE.begin(j, a, b, kinds, addrs, net)
        t0 = net.now
        op = ca.ping(cb.node_id, net.now)""")
fn = fn.replace("""        results.append((kinds[a], kinds[b], path, None if path != "direct" else t_direct, t_reply))""",
                """        results.append((kinds[a], kinds[b], path, None if path != "direct" else t_direct, t_reply))
        TRACE.end(j, a, b, kinds, path, t_direct, t_reply)""")
hdr = """from __future__ import annotations
import heapq, random, sys, json
from typing import Any
from weftnet.sim.nat import *
from weftnet.sim.nat import _drain, _tables, NatNetwork, NatMix, NAT_KINDS, Addr
from weftnet.sim.harness import LinkModel
import trace_hooks
TRACE = trace_hooks.Tracer()
"""
open("natrun.py", "w").write(hdr + fn)
