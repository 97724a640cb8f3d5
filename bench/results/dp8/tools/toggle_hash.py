# NodeId.__hash__: odd bursts dp8's (hash of the ID's bytes), even ones the cost of the dataclass's
# generated one (a tuple built and hashed per call) returning the same value, so the dicts that
# hold NodeIds stay valid (it also pays one more hash() of the cached bytes hash: an upper bound).
from weftnet.core.identity import NodeId
NEW = NodeId.__hash__
def OLD(self):
    hash((self.raw,))
    return hash(self.raw)
def toggle(on, da, db):
    NodeId.__hash__ = NEW if on else OLD
