"""Bytes tracemalloc counts per DHT message object (and per Contact), 20,000 of each built.

    PYTHONPATH=/tmp/before/src .venv/bin/python bench/results/slots9/objmem.py
    PYTHONPATH=src .venv/bin/python bench/results/slots9/objmem.py

Each figure includes the list slot that holds the object (8 B) and what the object alone owns
(a Contact: its NodeId and the ID's int; a Nodes: its tuple of 20 shared contacts).
"""
import tracemalloc, os, sys
from weftnet.core.contact import Contact
from weftnet.core.dht.messages import FindNode, Nodes, NearNodes, Store, Value
from weftnet.core.dht.records import MutableRecord, ImmutableRecord
keys=[os.urandom(32) for _ in range(20000)]
def per(make):
    tracemalloc.start(); s0=tracemalloc.get_traced_memory()[0]
    objs=[make(i) for i in range(20000)]
    s1=tracemalloc.get_traced_memory()[0]; tracemalloc.stop()
    return (s1-s0)/20000
c=[Contact(k, ("10.0.0.1", 4500)) for k in keys[:20]]
ep=("10.0.0.1", 4500)
rows={
 "Contact (key, endpoint, its NodeId)": per(lambda i: Contact(keys[i], ep)),
 "FindNode": per(lambda i: FindNode(i, keys[i])),
 "Nodes (20 shared contacts)": per(lambda i: Nodes(i, tuple(c))),
 "NearNodes": per(lambda i: NearNodes(i, tuple(c), (1,)*20)),
 "ImmutableRecord (3-byte value)": per(lambda i: ImmutableRecord(b"abc")),
}
print(sys.modules['weftnet'].__file__)
for k,v in rows.items(): print(f"  {k:40} {v:6.1f} B traced per object")
