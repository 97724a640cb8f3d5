"""The simulator's NAT experiment (sim/nat.py, `weft sim` with a [nat] table): real nodes behind modelled NATs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from weftnet.cli.main import cli
from weftnet.errors import ConfigError
from weftnet.sim.nat import run_nat_scenario
from weftnet.sim.scenario import scenario_from_dict

SMALL = {"scenario": {"name": "nat-test", "nodes": 16, "seed": 3},
         "nat": {"public": 0.25, "port_restricted": 0.4, "symmetric": 0.25, "udp_blocked": 0.1, "pairs": 12,
                 "settle": 30}}


def test_every_pair_connects_direct_where_a_punch_can_work_and_through_a_relay_elsewhere():
    s = run_nat_scenario(scenario_from_dict(SMALL), None)
    assert s["overall"]["none"] == 0.0
    assert s["kinds"]["public"] == 4 and s["kinds"]["udp-blocked"] == 2
    for pair, row in s["by_pair"].items():
        a, b = pair.split(" <-> ")
        punchable = "public" in (a, b) and "udp-blocked" not in (a, b) or {a, b} == {"port-restricted"}
        assert row["direct" if punchable else "relay"] == 1.0, (pair, row)
    assert s["classified"]["symmetric"] == {"endpoint-dependent, reachable=False": s["kinds"]["symmetric"]}


def test_the_experiment_is_a_function_of_its_scenario_and_seed(tmp_path):
    outs = []
    for run in range(2):
        r = CliRunner().invoke(cli, ["sim", str(_write(tmp_path, SMALL)), "--out", str(tmp_path / f"o{run}"), "--quiet"])
        assert r.exit_code == 0, r.output
        assert "overall: direct" in r.output and "| NAT pair |" in r.output
        outs.append((tmp_path / f"o{run}" / "summary.json").read_text())
        assert (tmp_path / f"o{run}" / "connectivity.png").stat().st_size > 1000
    assert outs[0] == outs[1]
    assert json.loads(outs[0])["seed"] == 3


def test_a_nat_table_with_no_nodes_anywhere_is_refused():
    with pytest.raises(ConfigError, match=r"\[nat\] needs a share"):
        scenario_from_dict({"nat": {"pairs": 3}})
    with pytest.raises(ConfigError, match=r"unknown key \[nat\] cone"):
        scenario_from_dict({"nat": {"cone": 1}})


def _write(tmp_path, data) -> object:
    lines = []
    for table, values in data.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    p = tmp_path / "sc.toml"
    p.write_text("\n".join(lines) + "\n")
    return p
