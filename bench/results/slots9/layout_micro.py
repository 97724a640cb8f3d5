"""One process, two layouts of the same frozen dataclass of two fields (as FindNode): a base and a subclass
with an instance dict (main's Message and DHT messages), against __slots__ = () on the base and
dataclass(slots=True) (this branch). Interleaved over 20 rounds; medians of the best of 5.

    .venv/bin/python bench/results/slots9/layout_micro.py
"""
import timeit, statistics
from dataclasses import dataclass
from typing import ClassVar
class MA: pass
class MB: __slots__ = ()
@dataclass(frozen=True)
class FA(MA):
    rid: int
    target: bytes
@dataclass(frozen=True, slots=True)
class FB(MB):
    rid: int
    target: bytes
t = bytes(32)
def reader(x, n=range(10000)):
    for _ in n:
        x.rid; x.target; x.rid; x.target
def builder(F, n=range(10000)):
    for _ in n:
        F(7, t)
res = {}
for r in range(20):
    sides = [("dict", FA), ("slots", FB)]
    if r % 2: sides.reverse()
    for side, F in sides:
        x = F(1, t)
        res.setdefault(("read4", side), []).append(min(timeit.repeat(lambda: reader(x), number=3, repeat=5)) / 30000 * 1e9)
        res.setdefault(("build", side), []).append(min(timeit.repeat(lambda: builder(F), number=1, repeat=5)) / 10000 * 1e9)
for name in ("read4", "build"):
    d, s = statistics.median(res[(name, "dict")]), statistics.median(res[(name, "slots")])
    print(f"{name:6} dict {d:7.1f} ns  slots {s:7.1f} ns  x{s/d:.3f}")
