"""Named counters that take no room until something is counted.

Every subsystem exposes a ``stats`` mapping for ``status()``, the metrics and
the dashboard. A ``dict.fromkeys(names, 0)`` of 20-30 names is 0.5-1 KB per
object, and a node carries a dozen of them whether it ever counts anything or
not: bench/dht runs a thousand nodes in one process, a simulator far more.
:class:`Counters` is a ``dict`` that stores only the counters that moved and
reads every other declared name as 0: ``c["x"] += 1``, ``c.get``, ``c.items()``,
``dict(c)``, ``{**c}`` and ``json.dumps(c)`` see every name, in the declared
order, exactly as the dict of zeros did. An undeclared name still raises
``KeyError`` on read (a typo stays a bug, not a new counter).
"""

from __future__ import annotations

from typing import Iterable, Iterator

__all__ = ["Counters"]


class Counters(dict):
    """``dict.fromkeys(names, 0)`` that stores only the non-default entries (module docstring)."""

    __slots__ = ("names",)

    def __init__(self, names: Iterable[str]):
        super().__init__()
        # A tuple literal at the call site is one constant shared by every instance.
        self.names: tuple[str, ...] = names if type(names) is tuple else tuple(names)

    def __missing__(self, key: str) -> int:
        if key in self.names:
            return 0
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self.names
        if dict.__len__(self):
            names = self.names
            for k in dict.__iter__(self):
                if k not in names:
                    yield k

    def keys(self):  # type: ignore[override]
        return list(self)

    def values(self):  # type: ignore[override]
        return [self[k] for k in self]

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in self]

    def __len__(self) -> int:
        n = len(self.names)
        if dict.__len__(self):
            names = self.names
            n += sum(1 for k in dict.__iter__(self) if k not in names)
        return n

    def __contains__(self, key: object) -> bool:
        return key in self.names or dict.__contains__(self, key)

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        return 0 if key in self.names else default

    def copy(self) -> dict:  # type: ignore[override]
        return dict(self.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):
            return dict(self.items()) == (dict(other.items()) if isinstance(other, Counters) else other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def __reduce__(self):
        return (_rebuild, (self.names, dict(dict.items(self))))


def _rebuild(names: tuple, stored: dict) -> Counters:
    c = Counters(names)
    dict.update(c, stored)
    return c
