"""bench/dht's weftnet side with Sessionless keys_max set to KEYS (argv[1]); the rest as weftnet_side.py."""
import asyncio, sys
sys.path.insert(0, "/work/main/bench/dht")
keys = int(sys.argv[1])
import weftnet.core.dht.sessionless as sl
init = sl.Sessionless.__init__
d = list(init.__defaults__)
import inspect
names = [p for p in inspect.signature(init).parameters][-len(d):]
d[names.index("keys")] = keys
init.__defaults__ = tuple(d)
import weftnet_side, pernode
from common import set_collector
pernode.install()
set_collector("default")
asyncio.run(weftnet_side.main(int(sys.argv[2]), 200, 1, True, False, True))
