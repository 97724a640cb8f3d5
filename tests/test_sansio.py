"""The protocol core stays sans-IO: no sockets, tasks, clocks or OS randomness.

Checked two ways: statically (the source imports and calls), and dynamically
(importing every core module in a fresh interpreter must not pull in asyncio,
socket, selectors, threading or subprocess).
"""

import ast
import pathlib
import subprocess
import sys

CORE = pathlib.Path(__file__).resolve().parents[1] / "src" / "weftnet" / "core"
FORBIDDEN_MODULES = {"asyncio", "socket", "time", "random", "secrets", "selectors", "threading", "subprocess"}
FORBIDDEN_CALLS = {("os", "urandom"), ("os", "getrandom"), ("time", "time"), ("time", "monotonic")}


def core_files():
    files = sorted(CORE.rglob("*.py"))
    assert files, "no core modules found"
    return files


def test_core_source_imports_nothing_forbidden():
    problems = []
    for path in core_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
                if names[0] == "os" and any(a.name in ("urandom", "getrandom") for a in node.names):
                    problems.append(f"{path.name}:{node.lineno} imports os.urandom")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in FORBIDDEN_CALLS:
                    problems.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
                continue
            else:
                continue
            for n in names:
                if n in FORBIDDEN_MODULES:
                    problems.append(f"{path.name}:{node.lineno} imports {n}")
    assert not problems, "core is not sans-IO:\n" + "\n".join(problems)


def test_importing_core_pulls_in_no_io_modules():
    mods = sorted(
        "weftnet.core." + ".".join(p.relative_to(CORE).with_suffix("").parts)
        for p in core_files()
        if p.name != "__init__.py"
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in mods)
        + "bad = sorted(m for m in ('asyncio','socket','selectors','subprocess') if m in sys.modules)\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the core loaded: {out.stdout.strip()}"


def _imports(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_layers_import_downwards_only():
    """core imports neither runtime nor cli; runtime and sim do not import cli."""
    src = CORE.parent
    rules = {"core": ("weftnet.runtime", "weftnet.cli", "weftnet.sim"),
             "runtime": ("weftnet.cli",), "sim": ("weftnet.cli",)}
    problems = []
    for layer, banned in rules.items():
        for path in sorted((src / layer).rglob("*.py")):
            for mod in _imports(path):
                if mod.startswith(banned):
                    problems.append(f"{path.relative_to(src)} imports {mod}")
    assert not problems, "\n".join(problems)
