"""Deep tracing of one pair: class-level wrappers gated on the watched objects."""
import functools
from weftnet.core.session import transport as T
from weftnet.core.reach import engine as E
from weftnet.core.reach import paths as P

W = {"on": False, "buf": None, "t0": 0.0, "objs": {}}  # id(obj) -> (name, other node id)

def _log(*a):
    if W["buf"] is not None:
        W["buf"].append(a)

def _peer_nid(x):
    return getattr(x, "node_id", x)

def wrap(cls, name, fmt):
    orig = getattr(cls, name, None)
    if orig is None:
        return
    @functools.wraps(orig)
    def w(self, *a, **k):
        r = orig(self, *a, **k)
        if W["on"]:
            ent = W["objs"].get(id(self))
            if ent is not None:
                s = fmt(ent, a, k, r)
                if s:
                    _log(ent[0], name, s)
        return r
    setattr(cls, name, w)

def now_of(a, k, idx):
    return a[idx] if len(a) > idx else k.get("now")

def t(x):
    return round(x - W["t0"], 4) if isinstance(x, float) else x

def install():
    wrap(T.SecureTransport, "_switch", lambda e, a, k, r: (t(a[2]), str(a[1])) if _peer_nid(a[0]) == e[1] else None)
    wrap(T.SecureTransport, "path_dead", lambda e, a, k, r: (t(a[2]), str(a[1])) if a[0] == e[1] else None)
    wrap(T.SecureTransport, "_send_init", lambda e, a, k, r: (t(a[1]), "endpoint", str(a[0].endpoint), "cur", a[0].current is not None) if a[0].node_id == e[1] else None)
    wrap(T.SecureTransport, "confirm_path", lambda e, a, k, r: (t(a[3]), str(a[1])) if a[0] == e[1] else None)
    wrap(T.SecureTransport, "follow", lambda e, a, k, r: (t(a[2]), str(a[1]), r) if a[0] == e[1] else None)
    wrap(T.SecureTransport, "_rx_path", lambda e, a, k, r: (t(a[2]), str(a[1]), r) if a[0].node_id == e[1] else None)
    wrap(T.SecureTransport, "ping", lambda e, a, k, r: (t(a[1]),) if a[0] == e[1] else None)
    wrap(E.Reach, "_probe", lambda e, a, k, r: (t(a[3]), a[2], str(a[1])) if a[0] == e[1] else None)
    wrap(E.Reach, "_pay", lambda e, a, k, r: (t(a[3]), str(a[1]), a[2], k, r) if a[0] == e[1] else None)
    wrap(E.Reach, "on_path_changed", lambda e, a, k, r: (t(a[3]), str(a[1]), "prev", str(a[2])) if a[0] == e[1] else None)
    wrap(E.Reach, "on_path_quiet", lambda e, a, k, r: (t(a[2]), str(a[1])) if a[0] == e[1] else None)
    wrap(E.Reach, "_on_heard", lambda e, a, k, r: (t(a[2]), str(a[1])) if a[0] == e[1] else None)
    wrap(E.Reach, "_on_call_me_maybe", lambda e, a, k, r: (t(a[2]), a[1]) if a[0] == e[1] else None)
    wrap(E.Reach, "_send_call_me_maybe", lambda e, a, k, r: (t(a[1]),) if a[0].node_id == e[1] else None)
    wrap(E.Reach, "_on_probe_reply", lambda e, a, k, r: (t(a[3]), str(a[1]), a[2]) if a[0] == e[1] else None)
    wrap(E.Reach, "on_session_up", lambda e, a, k, r: (t(a[2]), str(a[1])) if a[0] == e[1] else None)
    wrap(E.Reach, "on_session_down", lambda e, a, k, r: (t(a[1]),) if a[0] == e[1] else None)
    wrap(E.Reach, "on_paths_wanted", lambda e, a, k, r: (t(a[3]), a[2]) if a[0] == e[1] else None)
    wrap(E.Reach, "on_message", lambda e, a, k, r: (t(a[3]), str(a[2]), a[1][:2].hex()) if a[0] == e[1] else None)

def peer_state(core, other_id, now):
    tr = core.transport
    p = tr._by_node.get(other_id)
    if p is None:
        return "no peer"
    s = p.current
    d = dict(endpoint=p.endpoint, verified=p.verified_endpoint, last_received=t(p.last_received), last_sent=t(p.last_sent),
             pending=p.pending is not None, bytes_in=p.bytes_in, packets_in=p.packets_in,
             cur=None if s is None else dict(created=t(s.created), heard=t(s.heard), initiator=s.initiator, answered=getattr(s, 'answered', None), opened=s.opened, counter=s.counter),
             older=len(p.older), budget=p.budget)
    d["paths"] = tr.path_table(other_id, now)
    pr = core.reach._peers.get(other_id)
    if pr is not None:
        d["reach"] = {k: getattr(pr, k) for k in pr.__slots__ if k != "node_id"}
    return repr(d)
