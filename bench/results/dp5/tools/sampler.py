"""A tiny in-process sampling profiler: SIGPROF every 200 µs of CPU, innermost Python frame's (file, function, line) counted."""
import collections, signal, sys
counts = collections.Counter()
funcs = collections.Counter()
def _handler(sig, frame):
    if frame is None: return
    f = frame
    # skip this module
    code = f.f_code
    key = (code.co_filename.split("/weftnet/")[-1], code.co_name, f.f_lineno)
    counts[key] += 1
    funcs[(key[0], key[1])] += 1
def start(interval=0.0002):
    signal.signal(signal.SIGPROF, _handler)
    signal.setitimer(signal.ITIMER_PROF, interval, interval)
def stop():
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
def report(n=40, lines=False):
    tot = sum(funcs.values())
    print(f"{tot} samples")
    for k, v in (counts if lines else funcs).most_common(n):
        print(f"{100*v/tot:5.1f}% {k}")
