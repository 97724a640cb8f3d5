"""Split a bench/dht side's RSS growth (join+put) into pymalloc's live blocks, pymalloc's free
blocks and overhead, and the rest (malloc: Python objects > 512 B and C libraries).

    PYTHONPATH=src .venv/bin/python bench/results/dht-2026-12-01-host/heap_split.py weftnet|kademlia 500
"""
import asyncio, ctypes, io, os, re, sys, contextlib
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "dht"))
import common

libc = ctypes.CDLL("libc.so.6")
class MI2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena","ordblks","smblks","hblks","hblkhd","usmblks","fsmblks","uordblks","fordblks","keepcost")]
libc.mallinfo2.restype = MI2

def pym():
    buf = io.StringIO()
    # _debugmallocstats writes to C stderr: capture via a pipe
    r, w = os.pipe(); saved = os.dup(2); os.dup2(w, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2); os.close(w)
    out = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk: break
        out += chunk
    os.close(r)
    text = out.decode()
    def num(label):
        m = re.search(r"# " + re.escape(label) + r"\s*=\s*([\d,]+)", text)
        return int(m.group(1).replace(",", "")) if m else 0
    alloc = num("bytes in allocated blocks"); avail = num("bytes in available blocks")
    m = re.search(r"Total\s*=\s*([\d,]+)", text)
    total = int(m.group(1).replace(",", "")) if m else 0
    return alloc, avail, total

snaps = []
orig = common.rss_bytes
def rb():
    mi = libc.mallinfo2()
    a, v, t = pym()
    snaps.append(dict(rss=orig(), pym_alloc=a, pym_free=v, pym_total=t, malloc_used=mi.uordblks + mi.hblkhd, malloc_free=mi.fordblks))
    return snaps[-1]["rss"]
common.rss_bytes = rb

side, nodes = sys.argv[1], int(sys.argv[2])
if side == "weftnet":
    import weftnet_side as s
    import pernode; pernode.install()
    common.set_collector("default")
    with contextlib.redirect_stdout(io.StringIO()):
        asyncio.run(s.main(nodes, 200, 1))
else:
    import kademlia.network, rpcudp.protocol, kademlia_side as s
    common.set_collector("default")
    with contextlib.redirect_stdout(io.StringIO()):
        asyncio.run(s.main(nodes, 200, 1))
a, b = snaps[0], snaps[-1]
print(side, nodes, " ".join(f"{k}={(b[k]-a[k])/nodes/1024:.1f}" for k in a), "KiB/node")
