"""bench/hostinfo.py: the CPU line every run of record carries names the host precisely enough to
tell two hosts apart (docs/dataplane.md, "Figures": two "AMD EPYC" hosts, figures threefold apart)."""

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "hostinfo", Path(__file__).resolve().parent.parent / "bench" / "hostinfo.py")
hostinfo = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(hostinfo)


def _cpu(tmp: Path, text: str, caches: dict[str, tuple[str, str]]) -> tuple[str, str]:
    (tmp / "cpuinfo").write_text(text)
    for name, (level, size) in caches.items():
        (tmp / "cache" / name).mkdir(parents=True)
        (tmp / "cache" / name / "level").write_text(level + "\n")
        (tmp / "cache" / name / "size").write_text(size + "\n")
    return str(tmp / "cpuinfo"), str(tmp / "cache")


def test_family_model_and_last_level_cache(tmp_path):
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
            "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 99\nmodel name\t: other\n")
    caches = {"index0": ("1", "48K"), "index2": ("2", "1024K"), "index3": ("3", "32768K")}
    assert hostinfo.cpu_model(*_cpu(tmp_path, text, caches)) == "AMD EPYC (family 26, model 2, L3 32 MiB)"


def test_what_is_missing_is_left_out(tmp_path):
    cpuinfo, cache = _cpu(tmp_path, "model name\t: Some CPU\n", {"index0": ("1", "48K")})
    assert hostinfo.cpu_model(cpuinfo, cache) == "Some CPU (L1 48 KiB)"
    assert hostinfo.cpu_model(str(tmp_path / "absent"), str(tmp_path / "absent")) == "unknown CPU"


def test_the_cipher_rate_is_measured_with_the_daemons_interpreter(tmp_path):
    """bench/dataplane's report names the host's AES-256-GCM rate (both ends pay about 2 / rate seconds
    a GB for the cipher: 3.3 GB/s on a Zen 2 host without VAES), run by the interpreter the weft script names."""
    import sys

    weft = tmp_path / "weft"
    weft.write_text(f"#!{sys.executable}\nimport sys\n")
    assert hostinfo.interpreter_of(weft) == sys.executable
    line = hostinfo.aead_rate(hostinfo.interpreter_of(weft))
    assert line.startswith("AES-256-GCM seals 64 KB at ") and " GB/s on one core (cryptography " in line
    assert float(line.split(" at ")[1].split()[0]) > 0


def test_no_cipher_rate_without_an_interpreter_that_runs_it(tmp_path):
    (tmp_path / "binary").write_bytes(b"\x7fELF\x02\x01")
    (tmp_path / "shell").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "env").write_text("#!/usr/bin/env python3\n")
    assert hostinfo.interpreter_of(tmp_path / "env") == "python3"
    assert hostinfo.interpreter_of(tmp_path / "binary") is None
    assert hostinfo.interpreter_of(tmp_path / "shell") is None
    assert hostinfo.interpreter_of(tmp_path / "absent") is None
    assert hostinfo.aead_rate(None) is None
    assert hostinfo.aead_rate(str(tmp_path / "no-such-python")) is None
    assert hostinfo.aead_rate("/bin/false") is None
