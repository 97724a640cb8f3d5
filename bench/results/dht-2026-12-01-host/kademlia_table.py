"""Contacts in a kademlia node's routing table (and replacement lists) and records it stores, after
bench/dht's workload, per node.

    PYTHONPATH=src .venv/bin/python bench/results/dht-2026-12-01-host/kademlia_table.py 500
"""
import asyncio, sys, contextlib, io
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "dht"))
import common, kademlia_side as s
from kademlia.network import Server
servers = []
orig_init = Server.__init__
def init(self, *a, **k):
    orig_init(self, *a, **k); servers.append(self)
Server.__init__ = init
with contextlib.redirect_stdout(io.StringIO()):
    asyncio.run(s.main(int(sys.argv[1]), 200, 1))
n = [sum(len(b.nodes) for b in srv.protocol.router.buckets) for srv in servers]
rep = [sum(len(b.replacement_nodes) for b in srv.protocol.router.buckets) for srv in servers]
st = [len(srv.storage.data) for srv in servers]
print(f"kademlia {len(servers)} nodes: table {sum(n)/len(n):.1f} contacts, replacements {sum(rep)/len(rep):.1f}, records {sum(st)/len(st):.1f} a node")
