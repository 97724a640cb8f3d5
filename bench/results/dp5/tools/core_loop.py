"""Hot-loop cost of the core's bulk path: A seals a superpacket, B opens the train. No I/O."""
import os, pathlib, random, socket, sys, tempfile, time
REPO = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/work/wt/dp5")
sys.path.insert(0, str(REPO / "tests")); sys.path.insert(0, str(REPO / "src"))
import asyncio

async def main():
    import test_dataplane_latency as harness
    from vpn_packets import tcp
    from weftnet.core.vpn.network import VNET_HDR
    from weftnet.core.session import ciphers as cph
    from weftnet.core.session.train import Train
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in socks: s.bind(("127.0.0.1", 0)); s.setblocking(False)
    (da, db), nid = harness._members(pathlib.Path(tempfile.mkdtemp()), socks)
    for d in (da, db):
        d.core.vpn._vnet.add(nid)
        for peer in d.core.transport._peers.values():
            for s in (peer.current, *peer.older):
                if s is not None:
                    s.cipher, s._aead, s.block_limit = 2, cph.AEADS[2], cph.BLOCK_LIMIT[2]; s._send = s._recv = None
    for d, o in ((da, db), (db, da)):
        d.core.transport.set_max_datagram(o.core.node_id, 1472)
    data = random.Random(1).randbytes(63784 - 40)
    sp = VNET_HDR.pack(1, 1, 40, 1368, 20, 16) + tcp("10.1.0.1", "10.1.0.2", 40000, 5201, flags=0x10, data=data)
    ca, cb = da.core, db.core
    now = time.time() + (da.driver.clock() - time.time())
    addr_a = socks[1].getsockname()
    N = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rbuf = bytearray(65535 + 8); rview = memoryview(rbuf)
    pc = time.process_time
    ta = tb = tb2 = 0.0
    import cProfile, os
    prof = cProfile.Profile() if os.environ.get("PROF") else None
    TOG = None
    if os.environ.get("TOGGLE"):
        ns = {}; exec(open(os.environ["TOGGLE"]).read(), ns); TOG = ns["toggle"]
    tt = [[0.0, 0.0], [0.0, 0.0]]
    SAMPLER = os.environ.get("SAMPLE")
    if SAMPLER:
        sys.path.insert(0, "/tmp/dp5"); import sampler
    for it in range(N + 200):
        if SAMPLER and it == 200: sampler.start()
        if TOG: TOG(it % 2, da, db)
        if it == 200 and prof: prof.enable()
        t0 = pc()
        ca.vpn_outbound(nid, [sp], now)
        out = ca.datagrams_to_send(now)
        t1 = pc()
        assert len(out) == 1 and type(out[0][0]) is Train, out
        tr = out[0][0]
        t2 = pc()
        n = len(tr.data); rbuf[:n] = tr.data
        t2 = pc()
        rt = Train.received(rview, n, tr.seg) if (hasattr(Train, "received") and not (os.environ.get("ALT") and it % 2)) else Train(bytes(rview[:n]), tr.seg)
        cb.receive_datagrams([(rt, addr_a)], now)
        got = cb.tun_out
        t3 = pc()
        assert len(got) == 1, got
        got.clear()
        cb.datagrams_to_send(now)
        if it >= 200:
            tt[it % 2][0] += t1 - t0; tt[it % 2][1] += t3 - t2
            ta += t1 - t0
            if it % 2: tb += t3 - t2
            else: tb2 += t3 - t2
    if SAMPLER:
        sampler.stop(); sampler.report(45, SAMPLER == "lines")
    if prof:
        prof.disable(); prof.dump_stats("/tmp/dp5/core.prof")
    if TOG:
        print(f"toggle on (odd): A {tt[1][0] / N * 2e6:.2f} B {tt[1][1] / N * 2e6:.2f}; off (even): A {tt[0][0] / N * 2e6:.2f} B {tt[0][1] / N * 2e6:.2f} µs")
    print(f"A seal {ta / N * 1e6:.1f} µs, B open {(tb + tb2) / N * 1e6:.1f} µs per superpacket (odd {tb / N * 2e6:.1f}, even {tb2 / N * 2e6:.1f})")
    for d in (da, db):
        d.driver.close()

asyncio.run(main())
