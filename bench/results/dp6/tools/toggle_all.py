# Everything of dp6 on for odd bursts; main's code (c8e6337, /tmp/dp6snap/base) for even ones:
# RunBuffer/SealBuffer against Train.read of the buffer and encrypt-then-cut, and the transport's
# _open/_encrypt_and_send and the driver's _send_train of main (their module globals pointed at
# this process's Train, so a Train is one class).
import importlib.util, sys
import weftnet.runtime.driver as D
import weftnet.core.session.transport as TR
from weftnet.core.session.train import Train, SealBuffer, cut
def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
B = "/tmp/dp6snap/base/src/weftnet/"
btr = _load("base_transport", B + "core/session/transport.py")
bdr = _load("base_driver", B + "runtime/driver.py")
btr.Train = Train; btr.cut = cut; bdr.Train = Train
_new_rx = D._RX
class _OldRX:
    view = _new_rx.view
    into = _new_rx.into
    def read(self, n, seg, mf, ms):
        return Train.read(self.view[:n], seg, mf, ms)
_old_rx = _OldRX()
NEW = {"_open": TR.SecureTransport._open, "_encrypt_and_send": TR.SecureTransport._encrypt_and_send}
OLD = {"_open": btr.SecureTransport._open, "_encrypt_and_send": btr.SecureTransport._encrypt_and_send}
NSEND, OSEND = D.UdpDriver._send_train, bdr.UdpDriver._send_train
def toggle(on, da, db):
    D._RX = _new_rx if on else _old_rx
    for k in NEW:
        setattr(TR.SecureTransport, k, NEW[k] if on else OLD[k])
    D.UdpDriver._send_train = NSEND if on else OSEND
