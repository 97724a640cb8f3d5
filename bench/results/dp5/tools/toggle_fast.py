from weftnet.core.vpn.network import VpnNetwork
of, inf = VpnNetwork.outbound_fast, VpnNetwork.inbound_fast
def _none(self, *a): return None
def toggle(on, da, db):
    VpnNetwork.outbound_fast = of if on else _none
    VpnNetwork.inbound_fast = inf if on else _none
