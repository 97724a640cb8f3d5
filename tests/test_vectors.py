"""Golden wire vectors (tests/vectors/messages.json), checked in both directions.

A layout change breaks these before it breaks a peer. Every registered type
except the test-reserved range has a vector.
"""

import json
import pathlib
import sys

import pytest

from weftnet.core import wire

HERE = pathlib.Path(__file__).resolve().parent / "vectors"
sys.path.insert(0, str(HERE))
from make_vectors import MESSAGES, from_json  # noqa: E402

VECTORS = json.loads((HERE / "messages.json").read_text())
CLASSES = {cls.__name__: cls for cls in wire.registry().values()}


@pytest.mark.parametrize("vec", VECTORS, ids=[v["type"] for v in VECTORS])
def test_vector_both_ways(vec):
    cls = CLASSES[vec["type"]]
    msg = cls(*[from_json(vec["fields"][name]) for name, _ in cls.FIELDS])
    assert wire.encode(msg).hex() == vec["hex"]
    assert wire.decode(bytes.fromhex(vec["hex"])) == msg
    assert vec["code"] == f"0x{cls.TYPE:02x}"


def test_every_registered_type_has_a_vector():
    for m in MESSAGES:  # importing the generator imported every message module
        pass
    have = {v["type"] for v in VECTORS}
    registered = {cls.__name__ for code, cls in wire.registry().items() if code < 0xF0}
    missing = registered - have
    assert not missing, f"no golden vector for {sorted(missing)}"
