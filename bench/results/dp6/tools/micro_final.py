"""The functions alone, 64 KiB (63,834-byte payload, 1,472-byte datagrams): main's encrypt + cut and
Train.read of a receive buffer against SealBuffer.seal_cut and RunBuffer.read, interleaved."""
import importlib.util, os, sys, timeit
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from weftnet.core.session.train import RunBuffer, SealBuffer, cut
spec = importlib.util.spec_from_file_location("old_train", "/tmp/dp6snap/base/src/weftnet/core/session/train.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
a = AESGCM(os.urandom(32)); nonce = bytes(12)
payload = os.urandom(63_834); step = 1456; seg = 1472
head = b"\x01\x07" + bytes(range(12))
sb = SealBuffer(65_552)
run, count = sb.seal_cut(a, nonce, payload, head, step)
assert (run, count) == old.cut(head, a.encrypt(nonce, payload, None), step)
rx = RunBuffer(65_535); n = len(run); rx.view[:n] = run
oldbuf = memoryview(bytearray(65_535)); oldbuf[:n] = run
assert rx.read(n, seg, 64, 65_552).sealed == old.Train.read(oldbuf[:n], seg, 64, 65_552).sealed
def T(f, k=2000):
    return min(timeit.repeat(f, number=k, repeat=5)) / k * 1e6
for r in range(3):
    print(f"load {open('/proc/loadavg').read().split()[0]}: "
          f"seal+cut main {T(lambda: old.cut(head, a.encrypt(nonce, payload, None), step)):.1f} "
          f"dp6 {T(lambda: sb.seal_cut(a, nonce, payload, head, step)):.1f} µs; "
          f"cut alone main {T(lambda: old.cut(head, payload, step)):.1f}; "
          f"read+join main {T(lambda: old.Train.read(oldbuf[:n], seg, 64, 65_552)):.1f} "
          f"dp6 {T(lambda: rx.read(n, seg, 64, 65_552)):.1f} µs")
