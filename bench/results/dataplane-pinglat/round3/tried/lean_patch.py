"""A prototype measured with bench/dataplane/passcost.py --patch, not kept (docs/dataplane.md, "Third round").

A lone packet skips the layers between the kernel and the core's work: the TUN pass calls
VpnNetwork.outbound and the transport's _send_payload directly and sends at once; the UDP pass calls
the transport's _on_data directly and writes the TUN at once; bookkeeping (pump, timer) after.
For the loopback harness only (no GRO, no error handling, no layer-2 networks)."""
import os, time
import weftnet.runtime.daemon as dmod
from weftnet.runtime.daemon import Daemon
from weftnet.runtime.driver import UdpDriver
from weftnet.core.vpn.network import Send

VNET_NONE = bytes(10)
orig_tun = Daemon._on_tun_readable
def _on_tun_readable(self, network_id, tun):
    fd = tun.fileno()
    try:
        first = os.read(fd, 65545)
    except BlockingIOError:
        return
    now = time.time()
    core = self.core
    net = core.vpn.switch.networks[network_id]
    drv = self.driver
    if first[:10] == VNET_NONE:
        r = net.outbound(first[10:], now)
        if type(r) is Send and not net._outgoing and not net._events:
            t = core.transport
            peer = t._by_node.get(r.node_id)
            if peer is not None and peer.endpoint is not None:
                for p in r.payloads:
                    t._send_payload(peer, p, now)
                out, t._out = t._out, []
                if out:
                    drv._send_all(out)
        else:
            core.vpn.outbound  # general tail (prototype: ignore)
        core._pump(now)
        drv.transmit()
    else:
        core.vpn_outbound(network_id, [first], now); drv.transmit()
    # rest as before (batch)
    packets = []
    for _ in range(63):
        try:
            packets.append(os.read(fd, 65545))
        except BlockingIOError:
            break
    if packets:
        core.vpn_outbound(network_id, packets, time.time()); drv.transmit()
Daemon._on_tun_readable = _on_tun_readable

def _on_readable(self):
    sock = self.sock
    first = True
    while True:
        try:
            data, anc, _f, addr = sock.recvmsg(65535, 64)
        except BlockingIOError:
            break
        src = self._endpoints.get(addr) or self._endpoint(addr)
        now = self.clock()
        core = self.core
        if first and data[:2] == b"\x01\x04":
            core.transport._on_data(data, src, now)
            tun_out = core.vpn.tun_out
            if tun_out:
                w = self.tun_writer
                for nid, vnet, pkt in tun_out:
                    w(nid, vnet, pkt)
                tun_out.clear()
                self._depth += 1
                try:
                    self.after_tun_writes()
                finally:
                    self._depth -= 1
            core._pump(now)
            self.transmit()
        else:
            core.receive_datagrams([(data, src)], now); self.transmit()
        first = False
UdpDriver._on_readable = _on_readable
