"""/metrics renders its text itself (runtime/metrics.py ``render_text``): it must say exactly what
prometheus_client's own ``generate_latest`` says for the same families, to any parser."""

from __future__ import annotations

import random

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from weftnet.core.histogram import LatencyHistogram
from weftnet.core.identity import Identity, NodeId
from weftnet.core.node import NodeConfig, NodeCore
from weftnet.runtime.metrics import Exposition, NodeCollector, exposition, make_registry, render_text


def parsed(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith(("process_", "python_")) or fam.name == "weftnet_metrics_collect_seconds":
            continue  # change between two scrapes by themselves
        out[fam.name] = (fam.type, fam.documentation,
                         sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in fam.samples))
    return out


def test_render_text_says_what_generate_latest_says():
    rng = random.Random(5)
    core = NodeCore(Identity.from_seed(bytes(32)), rng, 1000.0, NodeConfig())
    core.dht.latency = LatencyHistogram()
    for i in range(50):
        core.dht.latency.observe(("find_node", "get")[i % 2], ("ok", "timeout")[i % 3 == 0], rng.random() * 3)
    sessions = [(NodeId(rng.randbytes(32)), rng.randrange(10**12), rng.randrange(10**12), rng.randrange(10**6),
                 rng.randrange(10**6), None if i % 7 == 0 else rng.random() / 10) for i in range(300)]
    core.transport.session_counters = lambda: sessions
    col = NodeCollector(core, None, peer_series=120, clock=lambda: 2000.0)
    col.extra["odd"] = lambda: {'quote"back\\slash\nnewline': 3, "big": 2**70, "float": 1e-9}
    ours, theirs = parsed(Exposition(col)().decode()), parsed(exposition(make_registry(col)).decode())
    assert ours == theirs
    assert len(ours["weftnet_peer_bytes"][2]) == 240  # the busiest 120 peers, in and out
    assert len(ours["weftnet_dht_operation_duration_seconds"][2]) > 20
    # a second scrape reuses the cached label strings and still agrees
    sessions[0] = (sessions[0][0], 10**13, 0, 1, 1, 0.5)
    assert parsed(Exposition(col)().decode()) == parsed(exposition(make_registry(col)).decode())


def test_escaping_of_label_values_and_help():
    g = GaugeMetricFamily("x_info", 'help with \\ and\nnewline', labels=["v"])
    g.add_metric(['a"b\\c\nd'], 1.5)
    c = CounterMetricFamily("y", "a counter", labels=[])
    c.add_metric([], 2**64)
    from prometheus_client import CollectorRegistry

    class Fixed:
        def collect(self):
            return [g, c]

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Fixed())
    assert parsed(render_text([g, c])) == parsed(generate_latest(reg).decode())
