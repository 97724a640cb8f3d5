"""What a benchmark's report says of the CPU it ran on (stdlib only: bench/dataplane runs with the
system's python3).

"AMD EPYC" alone named two hosts whose figures differ threefold (docs/dataplane.md, "Figures"), so
the model name comes with the CPU's family, model and last-level cache when /proc and /sys show them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Run by the interpreter weftnet runs under (bench/dataplane runs with the system's python3, which
#: may not have `cryptography`): one core's rate of weftnet's bulk cipher on a 64 KB superpacket.
_AEAD_PROBE = """
import os, time, cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
c, data, nonce = AESGCM(os.urandom(32)), os.urandom(63784), bytes(12)
best = 0.0
for _ in range(5):
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < 0.04:
        c.encrypt(nonce, data, None)
        n += 1
    best = max(best, n * len(data) / (time.perf_counter() - t))
print(f"{best / 1e9:.2f} {cryptography.__version__}")
"""


def cpu_model(cpuinfo: str = "/proc/cpuinfo",
              cache: str = "/sys/devices/system/cpu/cpu0/cache") -> str:
    """E.g. ``AMD EPYC (family 26, model 2, L3 32 MiB)``; "unknown CPU" if /proc says nothing."""
    fields: dict[str, str] = {}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if not line.strip():
                break  # the first processor's block is enough
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name", "unknown CPU")
    extra = [f"{label} {fields[k]}" for k, label in (("cpu family", "family"), ("model", "model")) if fields.get(k)]
    levels = []
    try:
        for index in sorted(Path(cache).glob("index*")):
            levels.append((int((index / "level").read_text()), (index / "size").read_text().strip()))
    except (OSError, ValueError):
        levels = []
    if levels:
        level, size = max(levels)
        if size.endswith("K") and size[:-1].isdigit() and int(size[:-1]) % 1024 == 0:
            size = f"{int(size[:-1]) // 1024} MiB"
        elif size.endswith("K"):
            size = f"{size[:-1]} KiB"
        extra.append(f"L{level} {size}")
    return f"{name} ({', '.join(extra)})" if extra else name


def interpreter_of(script: str | Path) -> str | None:
    """The interpreter a console script names in its ``#!`` line (a venv's ``weft``), or None."""
    try:
        with open(script, "rb") as f:
            first = f.readline(512).decode("utf-8", "replace")
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if len(parts) > 1 and Path(parts[0]).name == "env":  # "#!/usr/bin/env python3"
        parts = parts[1:]
    return parts[0] if parts and "python" in Path(parts[0]).name else None


def aead_rate(python: str | None) -> str | None:
    """E.g. ``AES-256-GCM seals 64 KB at 3.29 GB/s on one core (cryptography 48.0.0)``, measured with
    ``python`` (about 0.2 s); None if that interpreter cannot run it. Each GB through a tunnel
    is sealed once and opened once, so the cipher costs both ends about 2 / rate seconds a GB: a quarter
    of weftnet's CPU per GB on a Zen 2 host without VAES, under a tenth on a Xeon with it (docs/dataplane.md,
    "Figures"). The line says how fast it is on this host."""
    if not python:
        return None
    try:
        out = subprocess.run([python, "-c", _AEAD_PROBE], capture_output=True, text=True, timeout=30)
        rate, version = out.stdout.split()
        return f"AES-256-GCM seals 64 KB at {float(rate):.2f} GB/s on one core (cryptography {version})"
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


if __name__ == "__main__":
    print(cpu_model())
