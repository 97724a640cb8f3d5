"""A slice of the fuzzer (fuzz/weftfuzz.py) on every test run: 30,000 inputs, two seeds."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fuzz"))
import weftfuzz  # noqa: E402


@pytest.mark.parametrize("seed", [11, 12])
def test_fuzz_slice(seed, capsys):
    assert weftfuzz.run("all", 15_000, seed, quiet=True) == 0


def test_fuzzer_catches_a_broken_decoder(monkeypatch):
    """The fuzzer is not vacuous: a decoder that leaks an IndexError is caught."""
    real = weftfuzz.wire.decode

    def leaky(data):
        if len(data) > 40 and data[1] == 0x21:
            raise IndexError("boom")
        return real(data)

    monkeypatch.setattr(weftfuzz.wire, "decode", leaky)
    assert weftfuzz.run("wire", 20_000, 5, quiet=True) == 1


def test_dht_target_catches_the_hop_counter_overflow(monkeypatch):
    """The DHT target is not vacuous either: the hop counter that overflowed before
    the hardening (a Route at hops 255 with the trace flag) is found again if it returns."""
    from weftnet.core.dht import engine
    from weftnet.core.dht.messages import Route, RouteHop

    real = engine.Dht._on_route

    def old_on_route(self, sender, msg, now):
        if msg.flags & 1:
            self._out.append((sender, RouteHop(msg.msg_id, msg.hops + 1)))  # no check: 255 + 1
        if msg.hops < msg.hop_limit:
            real(self, sender, Route(msg.msg_id, msg.key, msg.origin, msg.hops, msg.hop_limit, 0, msg.payload), now)

    monkeypatch.setattr(engine.Dht, "_on_route", old_on_route)
    assert weftfuzz.run("dht", 60_000, 2, quiet=True) == 1


def test_fuzzer_catches_a_bgp_parser_that_leaks(monkeypatch):
    """The bgp target is not vacuous either: an UPDATE parser that leaks a KeyError is caught."""
    import weftnet.core.bgp.update as upd

    real = upd.parse_update

    def leaky(body, ctx=upd.UpdateContext()):
        if len(body) > 30 and body[-1] == 0x64:
            raise KeyError("boom")
        return real(body, ctx)

    monkeypatch.setattr(upd, "parse_update", leaky)
    assert weftfuzz.run("bgp", 5_000, 5, quiet=True) == 1
