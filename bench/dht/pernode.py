"""Per-node caches for benches that run many weftnet nodes in one process.

weftnet keeps a few process-wide caches of pure functions of a peer's key or address: the decoded and
encoded contacts (``contact._CACHE`` / ``_WIRE``), ``node_id_for`` (SHA-256 of a key), the Ed25519 ->
X25519 conversion (a modular inverse in Python), the ID puzzle's bits, address blocks. A real node runs
alone in its process, so it pays each of these once per peer *it* meets; in bench/dht's one process of
1,000 nodes it pays once per peer *any node* met, and a join's first contacts mostly hit entries another
node made. kademlia's nodes share nothing of the kind, so that sharing is CPU (and memory) the bench
does not charge to weftnet.

``install()`` gives every NodeCore its own copy of each of these caches (functools LRU caches of the
library's sizes, and its own contact dicts): the NodeCore entry points the drivers call, and its
constructor, make the node's caches the ones the library's modules hold before they run. Same results,
same bytes; a node's own hits stay hits, as in its own process. What the harness itself adds, charged to
weftnet: a Python call per NodeCore entry and ~15 attribute stores per switch of node (about 1% of a
join), and each node's set of cache objects (empty LRU caches, the dicts that hold them: ~1.3 KiB a node,
bench/results/dmem12).
"""

from __future__ import annotations

import collections
import functools
import os
import sys

_CURRENT: list = [None]  # the caches of the node running now
_PATCH: list = []  # (module, attribute, function name): where the library holds a cached function
_PLAIN: dict = {}  # function name -> the function without its cache
_MAXSIZE: dict = {}
_BY_CORE: dict = {}  # id(NodeCore) -> its caches
_STATE = {"contacts_module": None, "swap_contacts": True, "wire": False}
_lru = functools._lru_cache_wrapper  # (what functools.lru_cache builds, without its decorations)


class _Caches:
    """One node's caches."""

    __slots__ = ("contacts", "wire", "fns")

    def __init__(self) -> None:
        self.contacts: dict = {}
        self.wire: dict | None = {} if _STATE["wire"] else None
        # The LRU caches themselves (functools' C wrapper: the same cache, hits and misses), not what
        # ``functools.lru_cache`` adds around each for introspection (the function's name, doc and
        # ``__wrapped__`` copied into a dict, a ``cache_parameters`` closure; ~560 bytes a function):
        # a node alone in its process has those once per process, made at import, not per node, as
        # kademlia's module-level objects are not counted either (bench/results/dmem12).
        self.fns = {name: _lru(plain, _MAXSIZE[name], False, functools._CacheInfo) for name, plain in _PLAIN.items()}


def _select(caches: _Caches) -> None:
    """Make ``caches`` the ones the library reads (module attributes, read at each call)."""
    if _CURRENT[0] is not caches:
        _CURRENT[0] = caches
        if _STATE["swap_contacts"]:
            mod = _STATE["contacts_module"]
            mod._CACHE = caches.contacts
            if _STATE["wire"]:  # (a tree before dmem9: the encodings in a dict of their own)
                mod._WIRE = caches.wire
        fns = caches.fns
        for mod, attr, name in _PATCH:
            setattr(mod, attr, fns[name])


def install() -> None:
    """Give each NodeCore made from now on its own caches (call before any node exists).
    ``PERNODE_ONLY=name,...`` (environment): only these (``contacts`` for the contact dicts), to
    attribute the cost."""
    import weftnet.core.contact as contact
    import weftnet.core.dht.routing as routing
    import weftnet.core.identity as identity
    import weftnet.core.limits as limits
    import weftnet.core.node as node
    import weftnet.core.puzzle as puzzle
    import weftnet.runtime.driver  # noqa: F401  (the rest of the library first: every holder is patched)

    if _STATE["contacts_module"] is not None:
        return
    only = set(filter(None, os.environ.get("PERNODE_ONLY", "").split(",")))
    targets = {
        "node_id_for": identity.node_id_for,
        "ed25519_public_to_x25519": identity.ed25519_public_to_x25519,
        "puzzle_bits": puzzle.puzzle_bits,
        "address_key": limits.address_key,
        "prefix_key": limits.prefix_key,
        "_block_of": routing._block_of,
    }
    by_id = {}
    for name, fn in targets.items():
        if only and name not in only or not hasattr(fn, "cache_info"):
            continue  # (not cached in this tree: nothing to give each node)
        _PLAIN[name] = fn.__wrapped__
        _MAXSIZE[name] = fn.cache_info().maxsize
        by_id[id(fn)] = (fn, name)
    for mod in list(sys.modules.values()):
        if mod is None or not getattr(mod, "__name__", "").startswith("weftnet"):
            continue
        for attr, value in list(vars(mod).items()):
            hit = by_id.get(id(value))
            if hit is not None and hit[0] is value:
                _PATCH.append((mod, attr, hit[1]))
    _STATE["contacts_module"] = contact
    _STATE["wire"] = hasattr(contact, "_WIRE")
    _STATE["swap_contacts"] = not only or "contacts" in only
    _select(_Caches())  # the caches of code that runs outside any node (the bench's set-up)

    core = node.NodeCore
    init = core.__init__

    @functools.wraps(init)
    def __init__(self, *a, **kw):
        caches = _Caches()
        _BY_CORE[id(self)] = caches
        _select(caches)
        init(self, *a, **kw)

    core.__init__ = __init__
    for name in ("receive_datagram", "receive_datagrams", "handle_timer", "datagrams_to_send", "connect",
                 "put", "get", "get_timer", "next_event", "set_local_endpoint"):
        fn = getattr(core, name, None)
        if fn is None:
            continue

        def entered(self, *a, _fn=fn, **kw):
            _select(_BY_CORE[id(self)])
            return _fn(self, *a, **kw)

        functools.update_wrapper(entered, fn)
        setattr(core, name, entered)


def misses() -> dict:
    """What the nodes computed themselves, by function (summed over the nodes), and the contacts
    they decoded or made."""
    out: collections.Counter = collections.Counter()
    for c in _BY_CORE.values():
        for name, fn in c.fns.items():
            out[name] += fn.cache_info().misses
        out["contacts"] += len(c.contacts)
    return dict(out)


def stats() -> dict:
    """Per cache, summed over the nodes: (entries, hits, misses); hits and misses are unknown (0)
    for the contact dicts."""
    out: dict = {}
    for c in _BY_CORE.values():
        rows = {name: (fn.cache_info().currsize, fn.cache_info().hits, fn.cache_info().misses)
                for name, fn in c.fns.items()}
        rows["contacts (_CACHE)"] = (len(c.contacts), 0, 0)
        if _STATE["wire"]:
            rows["contacts (_WIRE)"] = (len(c.wire), 0, 0)
        for name, row in rows.items():
            old = out.get(name, (0, 0, 0))
            out[name] = tuple(a + b for a, b in zip(old, row))
    return out
