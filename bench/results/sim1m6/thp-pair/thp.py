import ctypes, os
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MADV_HUGEPAGE, MADV_COLLAPSE = 14, 25
H = 2 << 20
def collapse(advice=MADV_COLLAPSE):
    done = failed = 0
    with open("/proc/self/maps") as f:
        lines = f.read().splitlines()
    for line in lines:
        parts = line.split()
        rng, perms = parts[0], parts[1]
        path = parts[5] if len(parts) > 5 else ""
        if perms != "rw-p" or (path and path != "[heap]"):
            continue
        lo, hi = (int(x, 16) for x in rng.split("-"))
        a = (lo + H - 1) & ~(H - 1)
        b = hi & ~(H - 1)
        if b <= a:
            continue
        r = _libc.madvise(a, b - a, advice)
        if r == 0:
            done += b - a
        else:
            failed += b - a
    return done, failed
