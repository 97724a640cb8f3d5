"""A longest-prefix-match table for one VRF's forwarding entries.

Per address family, one dict per prefix length, keyed by the address's top
``length`` bits as an integer. A lookup tries the lengths present, longest
first: a handful of dict probes per packet, whatever the number of routes
(customer tables use few distinct lengths).
"""

from __future__ import annotations

import ipaddress
from typing import Generic, Iterator, TypeVar

__all__ = ["PrefixTable"]

V = TypeVar("V")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PrefixTable(Generic[V]):
    def __init__(self) -> None:
        self._tables: dict[int, dict[int, dict[int, V]]] = {4: {}, 6: {}}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}  # longest first
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def _key(net: IPNetwork) -> tuple[int, int, int]:
        bits = 32 if net.version == 4 else 128
        return net.version, net.prefixlen, int(net.network_address) >> (bits - net.prefixlen)

    def set(self, net: IPNetwork, value: V) -> None:
        version, plen, key = self._key(net)
        by_len = self._tables[version]
        table = by_len.get(plen)
        if table is None:
            table = by_len[plen] = {}
            self._lengths[version] = sorted(by_len, reverse=True)
        if key not in table:
            self._count += 1
        table[key] = value

    def remove(self, net: IPNetwork) -> V | None:
        version, plen, key = self._key(net)
        by_len = self._tables[version]
        table = by_len.get(plen)
        if table is None or key not in table:
            return None
        self._count -= 1
        value = table.pop(key)
        if not table:
            del by_len[plen]
            self._lengths[version] = sorted(by_len, reverse=True)
        return value

    def get(self, net: IPNetwork) -> V | None:
        version, plen, key = self._key(net)
        table = self._tables[version].get(plen)
        return None if table is None else table.get(key)

    def lookup(self, address: bytes) -> V | None:
        """The entry of the longest prefix holding ``address`` (4 or 16 packed octets)."""
        if len(address) == 4:
            version, bits = 4, 32
        else:
            version, bits = 6, 128
        tables = self._tables[version]
        a = int.from_bytes(address, "big")
        for plen in self._lengths[version]:
            v = tables[plen].get(a >> (bits - plen))
            if v is not None:
                return v
        return None

    def values(self) -> Iterator[V]:
        """Every value, in no particular order (no network objects built: cheap enough for a scrape)."""
        for by_len in self._tables.values():
            for table in by_len.values():
                yield from table.values()

    def items(self) -> Iterator[tuple[IPNetwork, V]]:
        for version, bits, cls in ((4, 32, ipaddress.IPv4Network), (6, 128, ipaddress.IPv6Network)):
            for plen in sorted(self._tables[version]):
                for key, v in sorted(self._tables[version][plen].items()):
                    yield cls((key << (bits - plen), plen)), v
