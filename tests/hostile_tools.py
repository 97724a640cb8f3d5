"""Scripted attackers for the hostile-peer tests (tests/test_hostile_*.py) and bench/hostile.

Built from the project's own classes, as an attacker would build them: real
handshake messages (handshake.py), real DHT messages, real identities. Nothing
here is used by weftnet itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore
from weftnet.core.session import handshake as hs
from weftnet.core.session.packets import CookieReply
from weftnet.core.wire import decode
from weftnet.sim.harness import SimNetwork

T0 = 1_700_000_000.0


class InitForge:
    """HandshakeInits towards one responder from many identities, re-MACed with any cookie.

    The expensive part (two X25519 and the AEADs) is done once per identity;
    an Init with a valid mac2 for a cookie costs one keyed hash after that, so
    a test can offer thousands per second of virtual time. Each identity's Init
    is reused with a later timestamp only when ``fresh`` (then it is rebuilt)."""

    def __init__(self, responder_public: bytes, identities: int, seed: int = 1, payload: bytes = b""):
        self.responder = responder_public
        self.rng = random.Random(seed)
        self.idents = [Identity.generate(self.rng) for _ in range(identities)]
        self.payload = payload
        self.bodies = [self._build(i, T0) for i in range(identities)]
        self.cookie: bytes | None = None
        self.n = 0

    def _build(self, i: int, now: float) -> bytes:
        raw, _state = hs.create_init(self.idents[i], self.responder, self.rng.getrandbits(32) or 1, now, self.rng,
                                     self.payload)
        return raw

    def next(self) -> bytes:
        """The next Init of the cycle, with mac2 for the cookie held (zeros without one)."""
        raw = self.bodies[self.n % len(self.bodies)]
        self.n += 1
        return self.with_cookie(raw)

    def with_cookie(self, raw: bytes) -> bytes:
        if self.cookie is None:
            return raw
        return raw[:-16] + hs.MAC(self.cookie, raw[:-16])

    def learn_cookie(self, reply: bytes, init: bytes) -> bool:
        """Decrypt a CookieReply to one of our Inits, as a real initiator does (echoing cookies)."""
        msg = decode(reply)
        if not isinstance(msg, CookieReply):
            return False
        self.cookie = ChaCha20Poly1305(hs.cookie_key(self.responder)).decrypt(
            msg.nonce, msg.encrypted_cookie, init[-32:-16])
        return True


@dataclass
class Sink:
    """An endpoint that only counts what reaches it (a victim, or a spoofed address)."""

    datagrams: int = 0
    bytes: int = 0
    seen: list = field(default_factory=list)

    def receive_datagram(self, data: bytes, addr, now: float) -> None:
        self.datagrams += 1
        self.bytes += len(data)
        if len(self.seen) < 1000:
            self.seen.append((addr, data))

    def handle_timer(self, now: float) -> None:
        pass

    def get_timer(self):
        return None

    def datagrams_to_send(self, now: float):
        return []


def overlay(n: int, seed: int, config_for=None, host=lambda i: (f"198.18.{i}.1", 4500),
            difficulty: int = 0) -> tuple[SimNetwork, list[NodeCore]]:
    """``n`` NodeCores on the deterministic hostile-network harness, one /24 each, joined."""
    net = SimNetwork(seed, start=T0)
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        cfg = config_for(i) if config_for else NodeConfig()
        if difficulty:
            from weftnet.core.puzzle import generate_identity

            ident = generate_identity(rng, difficulty)
        else:
            ident = Identity.generate(rng)
        core = NodeCore(ident, random.Random(seed * 1000 + i), net.now, cfg)
        core.set_local_endpoint(host(i))
        net.add(core.endpoint, core)
        nodes.append(core)
    for core in nodes[1:]:
        core.connect(nodes[0].endpoint, net.now)
        net.flush(core.endpoint)
        net.run_for(0.5)
    net.run_for(20.0)
    return net, nodes


def events(core: NodeCore) -> list:
    out = []
    while (e := core.next_event()) is not None:
        out.append(e)
    return out


def wait(net: SimNetwork, core: NodeCore, op_id: int, limit: float = 60.0):
    """Run the network until ``core`` reports the completion of ``op_id``."""
    box: list = []

    def done() -> bool:
        for e in events(core):
            if getattr(e, "op_id", None) == op_id:
                box.append(e)
        return bool(box)

    net.flush(core.endpoint)
    net.run_for(limit, until=done)
    assert box, f"operation {op_id} did not complete within {limit} s of virtual time"
    return box[0]


def contact(core: NodeCore) -> Contact:
    return Contact(core.identity.public_key, core.endpoint)
