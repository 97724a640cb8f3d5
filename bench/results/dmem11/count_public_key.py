# Contact.public_key reads per phase, and how many were slices of the encoding (this tree only; a tree
# whose Contact keeps the key in a slot has nothing to count). Run from the worktree root:
#   PYTHONPATH=src python bench/results/dmem11/count_public_key.py 500
import asyncio, collections, sys
sys.path.insert(0, "bench/dht")
import pernode
pernode.install()
import weftnet.core.contact as contact
import weftnet_side, common
N = collections.Counter()
prop = contact.Contact.public_key
def pk(self):
    N["public_key"] += 1
    if self._pk is None:
        N["sliced"] += 1
    return prop.fget(self)
contact.Contact.public_key = property(pk)
cpu = common.cpu_now
marks = []
def cpu_now():
    marks.append(dict(N))
    return cpu()
weftnet_side.cpu_now = cpu_now
asyncio.run(weftnet_side.main(int(sys.argv[1]), 200, 1))
print(marks, file=sys.stderr)
