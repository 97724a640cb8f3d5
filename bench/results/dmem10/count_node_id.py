# Contacts made and Contact.node_id reads per phase (this tree only). Run from the worktree root: PYTHONPATH=src python bench/results/dmem10/count_node_id.py 500
import asyncio, sys, collections
sys.path.insert(0, "bench/dht")
import pernode
pernode.install()
import weftnet.core.contact as contact
import weftnet_side, common
N = collections.Counter()
prop = contact.Contact.node_id
def nid(self):
    N["node_id"] += 1
    return prop.fget(self)
contact.Contact.node_id = property(nid)
orig = contact.node_key_for
def counted(pk):
    N["made"] += 1
    return orig(pk)
contact.node_key_for = counted
cpu = common.cpu_now
marks = []
def cpu_now():
    marks.append(dict(N))
    return cpu()
weftnet_side.cpu_now = cpu_now
asyncio.run(weftnet_side.main(int(sys.argv[1]), 200, 1))
print(marks, file=sys.stderr)
