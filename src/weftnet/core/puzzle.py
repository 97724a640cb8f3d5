"""The node-ID crypto puzzle: what a routing-table entry costs (S/Kademlia's static puzzle).

Baumgart and Mies (S/Kademlia, ICPADS 2007, section 4.1) make node IDs
expensive: an ID is only accepted if a hash of it has ``c`` leading zero
bits. weftnet keeps the node ID as it is, SHA-256 of the Ed25519 public
key (so no wire format, address or golden vector changes), and asks of a
contact that::

    SHA-256("weftnet-id-puzzle-v1" || node ID)   starts with `difficulty` zero bits

Every candidate key costs a key generation and two hashes, and only one in
``2**difficulty`` passes, so an honest node pays ``2**difficulty`` key
generations once (``weft init``), while an attacker pays that for *every*
identity it wants in someone's routing table. Because the condition is on a
hash of the ID, not on the ID, it does not cluster IDs in one region, and
the attacker cannot steer where a passing ID lands: placing one among the
k nodes closest to a key in a network of N nodes takes about ``N / k``
passing IDs (bench/hostile/sybil_cost.py works the numbers out at 10^6 nodes).

The difficulty is a network parameter (``[dht] id_difficulty``; the DHT
checks it when a contact would enter the routing table, and drops lookup
candidates that fail it). Sans-IO: the caller passes the random source.
"""

from __future__ import annotations

import functools
import hashlib

from weftnet.core.identity import Identity, NodeId, RandomSource

__all__ = ["PUZZLE_TAG", "puzzle_bits", "meets_puzzle", "generate_identity"]

PUZZLE_TAG = b"weftnet-id-puzzle-v1"


def _bits(node_id_raw: bytes) -> int:
    h = int.from_bytes(hashlib.sha256(PUZZLE_TAG + node_id_raw).digest(), "big")
    return 256 - h.bit_length()


@functools.lru_cache(maxsize=65536)
def puzzle_bits(node_id_raw: bytes) -> int:
    """How many leading zero bits SHA-256(tag || node ID) has (0-256)."""
    return _bits(node_id_raw)


def meets_puzzle(node_id: NodeId | bytes, difficulty: int) -> bool:
    if difficulty <= 0:
        return True
    raw = node_id.raw if isinstance(node_id, NodeId) else node_id
    return puzzle_bits(raw) >= difficulty


def generate_identity(rng: RandomSource, difficulty: int, max_tries: int | None = None) -> Identity:
    """A fresh identity whose node ID meets ``difficulty`` (about ``2**difficulty`` tries)."""
    tries = 0
    while True:
        ident = Identity.generate(rng)
        tries += 1
        if difficulty <= 0 or _bits(ident.node_id.raw) >= difficulty:
            return ident
        if max_tries is not None and tries >= max_tries:
            raise RuntimeError(f"no identity of difficulty {difficulty} in {max_tries} tries")
