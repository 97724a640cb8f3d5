# Run from the worktree root: PYTHONPATH=src python bench/results/dmem10/count_made.py 500
# Count contacts constructed (decoded or made) per phase of bench/dht's weftnet side (per-node caches).
import asyncio, sys, collections
sys.path.insert(0, "bench/dht")
import pernode
pernode.install()
import weftnet.core.contact as contact
import weftnet_side, common
N = collections.Counter()
name = "node_key_for" if hasattr(contact, "node_key_for") else "node_id_for"
orig = getattr(contact, name)
def counted(pk):
    N["made"] += 1
    return orig(pk)
setattr(contact, name, counted)
cpu = common.cpu_now
marks = []
def cpu_now():
    marks.append(N["made"])
    return cpu()
weftnet_side.cpu_now = cpu_now
asyncio.run(weftnet_side.main(int(sys.argv[1]), 200, 1))
print("contacts made at cpu marks:", marks, file=sys.stderr)
