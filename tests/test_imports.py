"""The import rules of docs/architecture.md, checked on the source (module-level and
function-level imports alike, found with ``ast``):

(a) no import circle between modules of ``src/shopml``;
(b) a part imports only ``common`` and ``formats`` (and itself), never another part, except
    ``rank -> jagged``; ``common`` imports nothing of shopml but itself, ``formats`` only
    ``common``; ``serve``, ``cli.py``, ``demo.py`` and ``report.py`` may import everything;
(c) ``import shopml`` imports none of triton, faiss, fastapi (checked in a fresh interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "shopml"
EVERYTHING = {"serve", "cli", "demo", "report", "__main__"}
ALLOWED = {
    "common": {"common"},
    "formats": {"formats", "common"},
    "world": {"world", "common", "formats"},
    "jagged": {"jagged", "common", "formats"},
    "rank": {"rank", "common", "formats", "jagged"},
    "forecast": {"forecast", "common", "formats"},
    "visual": {"visual", "common", "formats"},
    "__init__": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The shopml module ``name`` names (a module, or the package a name is taken from)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The shopml modules ``module`` imports, at any depth of its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from pkg import name": the submodule when name is one, else the package
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for n in names:
            if n == "shopml" or n.startswith("shopml."):
                target = _resolve(n)
                if target is not None and target != module:
                    out.add(target)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def part(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_function_level_imports():
    assert "shopml.visual.train" in GRAPH["shopml.visual.cli"]  # imported inside train()
    assert "shopml.common.io" in GRAPH["shopml.formats.readers"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    found = cycles(GRAPH)
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_parts_import_only_common_formats_and_rank_jagged():
    bad = []
    for module, targets in sorted(GRAPH.items()):
        p = part(module)
        if p in EVERYTHING:
            continue
        for t in sorted(targets):
            if t != "shopml" and part(t) not in ALLOWED[p]:  # the root holds only __version__
                bad.append(f"{module} -> {t}")
    assert not bad, "imports across parts: " + ", ".join(bad)


def test_every_part_is_under_a_rule():
    assert {part(m) for m in MODULES} <= set(ALLOWED) | EVERYTHING


def test_import_shopml_is_light():
    code = (
        "import sys, shopml, shopml.formats.readers\n"
        "print(sorted(m for m in ('triton', 'faiss', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
    )
    assert out.stdout.strip() == "[]", out.stdout
