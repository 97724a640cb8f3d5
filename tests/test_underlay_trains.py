"""A payload cut in fragments for an extra underlay link's endpoint leaves that link's socket as one
train in one UDP GSO send, byte for byte the datagrams the piece-by-piece path sends
(runtime/underlay.py, docs/paths.md); a link without GSO sends the same datagrams one by one."""

from __future__ import annotations

import socket

from test_transport import Pair, big, events, msg

from weftnet.core.reach.paths import LinkAddr
from weftnet.core.session.train import Train
from weftnet.runtime.driver import UDP_GRO, SOL_UDP
from weftnet.runtime.underlay import UnderlayLinks, _Link


def _read_all(sock: socket.socket) -> tuple[list[bytes], int]:
    """Every datagram waiting on ``sock`` (GRO runs cut at their segment size), and the reads."""
    out, reads = [], 0
    while True:
        try:
            data, anc, _f, _a = sock.recvmsg(70_000, socket.CMSG_SPACE(4))
        except BlockingIOError:
            return out, reads
        reads += 1
        seg = next((int.from_bytes(v[:4], "little") for lvl, k, v in anc if lvl == SOL_UDP and k == UDP_GRO), 0)
        out += [data[i:i + seg] for i in range(0, len(data), seg)] if 0 < seg < len(data) else [data]


def test_a_large_payload_to_a_link_endpoint_is_one_train_in_one_gso_send():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        rx.setsockopt(SOL_UDP, UDP_GRO, 1)
        tx.bind(("127.0.0.1", 0))
        dst = LinkAddr("127.0.0.1", rx.getsockname()[1], "isp2")
        peer = p.a._peers[p.ib.public_key]
        peer.endpoint = dst  # the session's path is the link's
        links = UnderlayLinks(driver=None)
        link = links.links["isp2"] = _Link("isp2", tx, tx.getsockname(), None, spec=None)

        p.a.trains = True
        p.a.send_to(p.b.node_id, big(1), p.now)
        out = p.a.datagrams_to_send(p.now)
        assert len(out) == 1 and type(out[0][0]) is Train and out[0][1] == dst
        train = out[0][0]
        p.a.trains = False
        p.a.send_to(p.b.node_id, big(2), p.now)
        pieces = p.a.datagrams_to_send(p.now)  # the piece-by-piece path, for the same shape

        links.send_run(out, 0, 1)
        got, reads = _read_all(rx)
        assert got == train.datagrams() and link.stats["gso_sends"] == 1
        assert link.stats["tx_packets"] == train.count and link.stats["tx_bytes"] == len(train.data)
        assert [len(d) for d in got] == [len(d) for d, _ in pieces]  # the same datagram sizes
        if reads == 1:  # (the kernel handed the run over whole)
            assert len(got) == train.count

        # Delivered to the peer as read, whole.
        p.b.receive_datagrams([(d, dst) for d in got], p.now)
        assert any(getattr(e, "payload", None) == big(1) for e in events(p.b))

        link.gso = False  # a link that refused GSO once: the same datagrams, one by one
        links.send_run(out, 0, 1)
        again, _ = _read_all(rx)
        assert again == train.datagrams() and link.stats["gso_sends"] == 1
    finally:
        rx.close()
        tx.close()
