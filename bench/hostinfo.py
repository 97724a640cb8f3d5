"""What a benchmark's report says of the CPU it ran on (stdlib only: bench/dataplane runs with the
system's python3).

"AMD EPYC" alone named two hosts whose figures differ threefold (docs/dataplane.md, "Figures"), so
the model name comes with the CPU's family, model and last-level cache when /proc and /sys show them.
"""

from __future__ import annotations

from pathlib import Path


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


if __name__ == "__main__":
    print(cpu_model())
