# The driver's GRO read with data-plane workers (a divert hook set, 2 slots, as WorkerPool.start
# sets it at both ends): odd bursts dp8's UdpDriver._on_readable, even ones the base's (1c89207,
# /tmp/dp8snap/1c89207), which cut every GRO read in pieces for Handoff.split.
import importlib.util, sys
import weftnet.runtime.driver as D
from weftnet.runtime.dpworkers import Handoff
def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
bdr = _load("base_driver", "/tmp/dp8snap/1c89207/src/weftnet/runtime/driver.py")
bdr._RX = D._RX; bdr._RECV_VIEW = D._RECV_VIEW; bdr._RECV_INTO = D._RECV_INTO  # one receive buffer
NEW, OLD = D.UdpDriver._on_readable, bdr.UdpDriver._on_readable
_handoff = Handoff(2)
_set = []
def toggle(on, da, db):
    if not _set:
        for d in (da, db):
            d.driver.divert = lambda data, seg, addr: _handoff.split(0, data, seg, addr)
            d.driver.divert_slots = 2
        _set.append(1)
    D.UdpDriver._on_readable = NEW if on else OLD
