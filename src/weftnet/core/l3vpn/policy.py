"""Which VPN routes a VRF imports and which route targets its exports carry (RFC 4364 section 4.3).

A VRF exports each of its own routes with its ``export`` route targets and
imports every VPN route that carries at least one of its ``import`` targets.
Two maps refine that, in the shape of the import/export maps operators know
from other PEs:

* ``export_map``: rules ``(prefixes, add_rts)``; a route inside any of the
  prefixes is exported with the extra targets too (an *extranet*: a few
  shared-services prefixes also reach a partner's VRF, RFC 4364 section
  4.3.5's "extranet").
* ``import_map``: rules ``(rts, prefixes, permit)``, first match wins; a rule
  matches a route that carries one of ``rts`` (any, if empty) and lies inside
  one of ``prefixes`` (any, if empty). With an import map, a route no rule
  matches is not imported.

Hub-and-spoke (RFC 4364 section 4.3.5) is plain targets: the hub VRF
imports the spokes' target and exports its own; a spoke imports only the
hub's target, so spokes reach the hub but never each other (a VRF never
re-exports what it imported).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from weftnet.core.l3vpn.ids import format_rt, parse_rt

__all__ = ["ExportRule", "ImportRule", "VrfPolicy"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_RULES = 256
MAX_RTS = 64


def _inside(prefix: IPNetwork, nets: tuple[IPNetwork, ...]) -> bool:
    return any(prefix.version == n.version and prefix.subnet_of(n) for n in nets)


@dataclass(frozen=True, slots=True)
class ExportRule:
    prefixes: tuple[IPNetwork, ...]
    add_rts: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class ImportRule:
    rts: frozenset[bytes]
    prefixes: tuple[IPNetwork, ...]
    permit: bool = True

    def matches(self, prefix: IPNetwork, rts: frozenset[bytes]) -> bool:
        if self.rts and not (self.rts & rts):
            return False
        return not self.prefixes or _inside(prefix, self.prefixes)


@dataclass(frozen=True, slots=True)
class VrfPolicy:
    import_rts: frozenset[bytes]
    export_rts: frozenset[bytes]
    import_map: tuple[ImportRule, ...] = ()
    export_map: tuple[ExportRule, ...] = ()

    @classmethod
    def from_config(cls, import_rts: Iterable[str], export_rts: Iterable[str],
                    import_map: Iterable[dict] = (), export_map: Iterable[dict] = ()) -> "VrfPolicy":
        """From text: ``import_map`` items are ``{rt = [...], prefixes = [...], action = "permit"|"deny"}``,
        ``export_map`` items ``{prefixes = [...], add_rt = [...]}``. ValueError names the bad item."""
        imp = frozenset(parse_rt(t) for t in _strings(import_rts, "import"))
        exp = frozenset(parse_rt(t) for t in _strings(export_rts, "export"))
        if len(imp) > MAX_RTS or len(exp) > MAX_RTS:
            raise ValueError(f"at most {MAX_RTS} import and {MAX_RTS} export route targets")
        imap, emap = list(import_map), list(export_map)
        if len(imap) > MAX_RULES or len(emap) > MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} rules in an import or export map")
        rules_in = []
        for i, r in enumerate(imap):
            _keys(r, {"rt", "prefixes", "action"}, f"import_map[{i}]")
            action = r.get("action", "permit")
            if action not in ("permit", "deny"):
                raise ValueError(f"import_map[{i}] action must be \"permit\" or \"deny\", not {action!r}")
            rules_in.append(ImportRule(frozenset(parse_rt(t) for t in _strings(r.get("rt", []), f"import_map[{i}] rt")),
                                       _prefixes(r.get("prefixes", []), f"import_map[{i}]"), action == "permit"))
        rules_out = []
        for i, r in enumerate(emap):
            _keys(r, {"prefixes", "add_rt"}, f"export_map[{i}]")
            add = frozenset(parse_rt(t) for t in _strings(r.get("add_rt", []), f"export_map[{i}] add_rt"))
            if not add:
                raise ValueError(f"export_map[{i}] needs add_rt (the targets to add)")
            rules_out.append(ExportRule(_prefixes(r.get("prefixes", []), f"export_map[{i}]"), add))
        return cls(imp, exp, tuple(rules_in), tuple(rules_out))

    def export_targets(self, prefix: IPNetwork) -> frozenset[bytes]:
        """The route targets an export of ``prefix`` carries."""
        rts = self.export_rts
        for rule in self.export_map:
            if not rule.prefixes or _inside(prefix, rule.prefixes):
                rts = rts | rule.add_rts
        return rts

    def imports(self, prefix: IPNetwork, rts: frozenset[bytes]) -> bool:
        """True if a VPN route for ``prefix`` carrying ``rts`` belongs in this VRF."""
        if not (self.import_rts & rts):
            return False
        if not self.import_map:
            return True
        for rule in self.import_map:
            if rule.matches(prefix, rts):
                return rule.permit
        return False

    def watched_targets(self) -> frozenset[bytes]:
        """Every target a route needs one of to be considered here (the plane's index)."""
        return self.import_rts

    def describe(self) -> dict:
        return {
            "import": sorted(format_rt(r) for r in self.import_rts),
            "export": sorted(format_rt(r) for r in self.export_rts),
            "import_map": [{"rt": sorted(format_rt(r) for r in x.rts), "prefixes": [str(p) for p in x.prefixes],
                            "action": "permit" if x.permit else "deny"} for x in self.import_map],
            "export_map": [{"prefixes": [str(p) for p in x.prefixes], "add_rt": sorted(format_rt(r) for r in x.add_rts)}
                           for x in self.export_map],
        }


def _strings(values, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple, frozenset, set)):
        raise ValueError(f"{what} must be a list of route targets like [\"65000:1\"], not {values!r}")
    return list(values)


def _keys(rule, allowed: set[str], what: str) -> None:
    if not isinstance(rule, dict):
        raise ValueError(f"{what} must be a table, not {rule!r}")
    extra = sorted(set(rule) - allowed)
    if extra:
        raise ValueError(f"{what}: unknown key {extra[0]!r} (known: {', '.join(sorted(allowed))})")


def _prefixes(values, what: str) -> tuple[IPNetwork, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ValueError(f"{what} prefixes must be a list like [\"10.0.0.0/8\"], not {values!r}")
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v, strict=True))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what} prefixes: {exc}") from None
    return tuple(out)
