#!/usr/bin/env python3
"""The attacks of the reach and paths audit (audit1), on the deterministic harness: bytes and datagrams
the attacker put on the wire, and what reached the third party it aimed at.

    PYTHONPATH=src python bench/results/audit1/attacks.py            # this tree
    PYTHONPATH=/work/main/src python bench/results/audit1/attacks.py # another tree, the same attacks

Virtual time and seeded randomness: the figures do not depend on the machine or its load.
"""

from __future__ import annotations

import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tests"))

from hostile_tools import Sink, overlay  # noqa: E402
from reach_lab import SimLab  # noqa: E402

from weftnet.core.dht.messages import FindNode  # noqa: E402
from weftnet.core.paths.messages import LinkInfo, PathAdvert, PathProbe  # noqa: E402
from weftnet.core.reach.messages import OP_DIALBACK, CallMeMaybe, Probe, RelayRequest  # noqa: E402
from weftnet.core.wire import encode  # noqa: E402

T = "192.0.2.77"


def spoof(net, x, v, src, only=None, mute_after=None):
    sent = {"b": 0, "d": 0}
    orig = net._transmit

    def transmit(s, d, data):
        if s == x.endpoint and d == v.endpoint:
            if mute_after is not None and sent["d"] >= mute_after:
                return
            sent["b"] += len(data)
            sent["d"] += 1
            if src is not None and (only is None or only(data)):
                s = src
        orig(s, d, data)

    net._transmit = transmit
    return sent


def call_me_maybe():
    lab = SimLab(seed=1)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    lab.behind("V", "port-restricted")
    lab.behind("X", "symmetric")
    lab.join_all()
    lab.ping("X", "V")
    lab.run(10)
    sink = Sink()
    for p in range(8):
        lab.net.add((T, 7000 + p), sink)
    xpub = lab.boxes["X"].ip
    sent = {"b": 0, "d": 0}

    def hook(src, dst, data):
        if src[0] == xpub:
            sent["b"] += len(data)
            sent["d"] += 1

    lab.net.on_deliver = hook
    x, v = lab.cores["X"], lab.cores["V"]
    for _ in range(10):
        x.transport.send_to(v.node_id, encode(CallMeMaybe(tuple((T, 7000 + p) for p in range(8)))), lab.net.now)
        lab.net.flush(lab.addrs["X"])
        lab.run(3.0)
    lab.run(5)
    return sent, sink


def call_me_maybe_new_sessions(rounds=10):
    """As above, but X closes its session and makes a new one before each call-me-maybe: each new
    session starts a new ledger, with its free allowance."""
    lab = SimLab(seed=1)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    lab.behind("V", "port-restricted")
    lab.behind("X", "symmetric")
    lab.join_all()
    lab.ping("X", "V")
    lab.run(10)
    sink = Sink()
    for p in range(8):
        lab.net.add((T, 7000 + p), sink)
    xpub = lab.boxes["X"].ip
    sent = {"b": 0, "d": 0}

    def hook(src, dst, data):
        if src[0] == xpub:
            sent["b"] += len(data)
            sent["d"] += 1

    lab.net.on_deliver = hook
    x, v = lab.cores["X"], lab.cores["V"]
    for _ in range(rounds):
        x.transport.close(v.node_id, lab.net.now)
        v.transport.close(x.node_id, lab.net.now)  # (V's side of it ends too: its ledger goes)
        lab.ping("X", "V")
        x.transport.send_to(v.node_id, encode(CallMeMaybe(tuple((T, 7000 + p) for p in range(8)))), lab.net.now)
        lab.net.flush(lab.addrs["X"])
        lab.run(4.0)
    lab.run(5)
    return sent, sink


def find_nodes(net, x, v, n=100):
    rng = random.Random(1)
    for _ in range(n):
        x.transport.send_to(v.node_id, encode(FindNode(rng.getrandbits(64), rng.randbytes(32))), net.now)
        net.flush(x.endpoint)
        net.run_for(0.05)
    net.run_for(5)


def roaming():
    net, nodes = overlay(12, seed=3)
    v, x = nodes[0], nodes[5]
    sink = Sink()
    net.add((T, 9999), sink)
    sent = spoof(net, x, v, (T, 9999))
    find_nodes(net, x, v)
    return sent, sink


def response():
    net, nodes = overlay(12, seed=3)
    v, x = nodes[0], nodes[5]
    for a, b in ((v, x), (x, v)):
        a.transport.close(b.node_id, net.now)
    net.run_for(1)
    sink = Sink()
    net.add((T, 9999), sink)
    sent = spoof(net, x, v, (T, 9999))
    v.ping(x.node_id, net.now)
    net.flush(v.endpoint)
    net.run_for(2)
    find_nodes(net, x, v)
    return sent, sink


def probes_and_dialbacks():
    net, nodes = overlay(6, seed=4)
    v, x = nodes[0], nodes[2]
    v.reach.alt_port = True
    sink = Sink()
    net.add((T, 9999), sink)
    net.add((T, 10000), sink)
    sent = spoof(net, x, v, (T, 9999))
    for i in range(200):
        msg = Probe(i, b"") if i % 2 else RelayRequest(OP_DIALBACK, 0, i)
        x.transport.send_to(v.node_id, encode(msg), net.now)
        net.flush(x.endpoint)
        net.run_for(0.01)
    net.run_for(3)
    return sent, sink


def path_probes():
    net, nodes = overlay(6, seed=4)
    v, x = nodes[0], nodes[2]
    sink = Sink()
    net.add((T, 9999), sink)
    sent = spoof(net, x, v, (T, 9999))
    for i in range(300):
        x.transport.send_to(v.node_id, encode(PathProbe(i, i)), net.now)
        net.flush(x.endpoint)
        net.run_for(0.01)
    net.run_for(3)
    return sent, sink


def advert(seconds, mute):
    net, nodes = overlay(12, seed=3)
    v, x = nodes[0], nodes[5]
    sink = Sink()
    for p in range(8):
        net.add((T, 7000 + p), sink)
    sent = spoof(net, x, v, None, mute_after=1 if mute else None)
    adv = PathAdvert(0, tuple(LinkInfo(f"l{p}", (T, 7000 + p), 1, 0) for p in range(8)))
    x.transport.send_to(v.node_id, encode(adv), net.now)
    net.flush(x.endpoint)
    for _ in range(seconds):
        v.paths.track(x.node_id, net.now)
        net.flush(v.endpoint)
        net.run_for(1.0)
    return sent, sink


ATTACKS = [
    ("call-me-maybe naming 8 ports of T, 10 times 3 s apart (relayed session)", call_me_maybe),
    ("the same, a new session before each call-me-maybe (a new ledger each)", call_me_maybe_new_sessions),
    ("100 FIND_NODEs from a spoofed source T (roaming)", roaming),
    ("V opens a session; X's Response and FIND_NODEs from a spoofed source T", response),
    ("200 Probes and dial-back requests from a spoofed source T", probes_and_dialbacks),
    ("300 PathProbes from a spoofed source T", path_probes),
    ("one PathAdvert naming 8 links at T, then silence; V tracks X 300 s", lambda: advert(300, True)),
    ("the same advert, X answering V's probes as usual; 60 s", lambda: advert(60, False)),
]

if __name__ == "__main__":
    print("| attack | attacker sent | T received | ratio (bytes) |")
    print("|---|---|---|---|")
    for name, fn in ATTACKS:
        sent, sink = fn()
        print(f"| {name} | {sent['b']:,} B in {sent['d']:,} datagrams | {sink.bytes:,} B in {sink.datagrams:,} "
              f"datagrams | {sink.bytes / max(1, sent['b']):.2f} |")
