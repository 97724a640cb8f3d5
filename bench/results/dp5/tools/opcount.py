"""Bytecodes per superpacket through the daemon callbacks (bulkcost's harness): A's TUN read pass, B's UDP read pass."""
import pathlib, random, socket, sys, tempfile, time, collections
REPO = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/work/wt/dp5")
BURST = int(sys.argv[2]) if len(sys.argv) > 2 else 4
ACKS = int(sys.argv[3]) if len(sys.argv) > 3 else 0
sys.path.insert(0, str(REPO / "tests")); sys.path.insert(0, str(REPO / "src"))
import asyncio
counts = collections.Counter()
def tracer(frame, event, arg):
    frame.f_trace_opcodes = True
    if event == "opcode":
        counts[(frame.f_code.co_filename.split("/weftnet/")[-1], frame.f_code.co_name)] += 1
    return tracer

async def main():
    import test_dataplane_latency as harness
    from vpn_packets import tcp
    from weftnet.core.vpn.network import VNET_HDR
    from weftnet.core.session import ciphers as cph
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    from weftnet.runtime.driver import set_buffers
    for s in socks: s.bind(("127.0.0.1", 0)); s.setblocking(False); set_buffers(s, 16 << 20)
    (da, db), nid = harness._members(pathlib.Path(tempfile.mkdtemp()), socks)
    for d in (da, db):
        d.core.vpn._vnet.add(nid)
        for peer in d.core.transport._peers.values():
            for s in (peer.current, *peer.older):
                if s is not None:
                    s.cipher, s._aead, s.block_limit = 2, cph.AEADS[2], cph.BLOCK_LIMIT[2]; s._send = s._recv = None
        tun = d._tuns[nid]
        for s in (tun._end, tun.kernel):
            s.setsockopt(socket.SOL_SOCKET, 32, 32 << 20); s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)
    for d, o in ((da, db), (db, da)):
        d.core.transport.set_max_datagram(o.core.node_id, 1472)
    ta, tb = da._tuns[nid], db._tuns[nid]
    data = random.Random(1).randbytes(63784 - 40)
    sp = VNET_HDR.pack(1, 1, 40, 1368, 20, 16) + tcp("10.1.0.1", "10.1.0.2", 40000, 5201, flags=0x10, data=data)
    ack = VNET_HDR.pack(1, 0, 0, 0, 20, 16) + tcp("10.1.0.2", "10.1.0.1", 5201, 40000, flags=0x10)
    res = {}
    for it in range(12):
        trace = it == 10
        for _ in range(BURST): ta.kernel.send(sp)
        counts.clear()
        if trace: sys.settrace(tracer)
        da._on_tun_readable(nid, ta)
        if trace: sys.settrace(None); res["A out"] = counts.copy()
        for _ in range(BURST * ACKS): tb.kernel.send(ack)
        counts.clear()
        if trace: sys.settrace(tracer)
        db.driver._on_readable()
        if trace: sys.settrace(None); res["B in"] = counts.copy()
        counts.clear()
        if trace: sys.settrace(tracer)
        da.driver._on_readable()
        if trace: sys.settrace(None); res["A acks in"] = counts.copy()
        got = 0
        while True:
            try: m = tb.kernel.recv(70000)
            except BlockingIOError: break
            assert m == sp; got += 1
        assert got == BURST, got
        while True:
            try: ta.kernel.recv(70000)
            except BlockingIOError: break
    for k, c in res.items():
        print(f"== {k}: {sum(c.values()) / BURST:.0f} bytecodes per superpacket (burst {BURST}, acks {ACKS})")
        for (f, fn), v in c.most_common(int(sys.argv[4]) if len(sys.argv) > 4 else 12):
            print(f"   {v / BURST:7.1f} {f}:{fn}")
    for d in (da, db):
        d.driver.close()
asyncio.run(main())
