"""The cost of a window's barrier and of a cross-partition message here (step 1 of psim9).

    PYTHONPATH=src .venv/bin/python bench/results/psim9/ipc_cost.py

A batch of 300 messages (half FIND_NODE, half answers of 20 contacts) pickled with contacts as
node numbers (a reducer for Contact only, then reducers for Nodes and FindNode too, as
sim/parallel.py does), and a round trip of 64 B and 80 KB over a multiprocessing pipe between two
processes.
"""
import os, time, pickle, copyreg, io, multiprocessing as mp, random
from weftnet.core.contact import Contact
from weftnet.core.dht.messages import Nodes, FindNode

def child(c, n):
    for _ in range(n):
        b = c.recv_bytes(); c.send_bytes(b)
def barrier():
    a, b = mp.Pipe()
    n = 20000
    p = mp.Process(target=child, args=(b, n)); p.start()
    payload = b"x" * 64
    t = time.perf_counter()
    for _ in range(n):
        a.send_bytes(payload); a.recv_bytes()
    dt = time.perf_counter() - t
    p.join()
    print(f"pipe round trip (64 B): {dt / n * 1e6:.1f} us")
    p = mp.Process(target=child, args=(b, 2000)); p.start()
    payload = b"x" * 80000
    t = time.perf_counter()
    for _ in range(2000):
        a.send_bytes(payload); a.recv_bytes()
    print(f"pipe round trip (80 KB): {(time.perf_counter() - t) / 2000 * 1e6:.1f} us")
    p.join()

rng = random.Random(1)
contacts = [Contact(rng.randbytes(32), (f"10.{i>>16}.0.0", i & 0xffff)) for i in range(2000)]
index = {c.key: i for i, c in enumerate(contacts)}
def _contact(i): return contacts[i]
def red(c): return (_contact, (index[c.key],))
table = copyreg.dispatch_table.copy(); table[Contact] = red
def dumps(obj):
    f = io.BytesIO(); p = pickle.Pickler(f, protocol=5); p.dispatch_table = table; p.dump(obj); return f.getvalue()
msgs = []
for k in range(300):
    if k % 2:
        msgs.append((1.0 + k, 3, k, 7, 9, Nodes(rng.getrandbits(64), tuple(rng.sample(contacts, 20)))))
    else:
        msgs.append((1.0 + k, 3, k, 7, 9, FindNode(rng.getrandbits(64), rng.randbytes(32))))
t = time.perf_counter()
for _ in range(50): s = dumps(msgs)
d = (time.perf_counter() - t) / 50
t = time.perf_counter()
for _ in range(50): back = pickle.loads(s)
l = (time.perf_counter() - t) / 50
assert back[1][5].contacts[0] is msgs[1][5].contacts[0]
print(f"batch of 300 (half Nodes/20 contacts): {len(s)} B, dumps {d/300*1e6:.1f} us/msg, loads {l/300*1e6:.1f} us/msg")

def red_nodes(m): return (_mk_nodes, (m.rid, [index[c.key] for c in m.contacts]))
def _mk_nodes(rid, ix): return Nodes(rid, tuple([contacts[i] for i in ix]))
def red_fn(m): return (FindNode, (m.rid, m.target))
table2 = copyreg.dispatch_table.copy(); table2[Contact] = red; table2[Nodes] = red_nodes; table2[FindNode] = red_fn
def dumps2(obj):
    f = io.BytesIO(); p = pickle.Pickler(f, protocol=5); p.dispatch_table = table2; p.dump(obj); return f.getvalue()
t = time.perf_counter()
for _ in range(50): s = dumps2(msgs)
d = (time.perf_counter() - t) / 50
t = time.perf_counter()
for _ in range(50): back = pickle.loads(s)
l = (time.perf_counter() - t) / 50
assert back[1][5] == msgs[1][5] and back[1][5].contacts[0] is msgs[1][5].contacts[0]
print(f"per-type reducers: {len(s)} B, dumps {d/300*1e6:.1f} us/msg, loads {l/300*1e6:.1f} us/msg")

if __name__ == "__main__":
    barrier()
