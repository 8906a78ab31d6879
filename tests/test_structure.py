"""The shape of the code: no import cycles among toolchain modules, one place per concern, lint clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolchain"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(*, top_level_only: bool) -> dict[str, set[str]]:
    """{toolchain module: the toolchain modules it imports}. ``top_level_only``: only the imports that
    run when the module is imported (not those inside functions, which are how heavy or optional
    dependencies are deferred)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports are for annotations only: never run
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        found: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                # The deepest toolchain module the statement names ("from toolchain.trt import compat" -> trt.compat).
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("toolchain"):
                    found.add(target)
        graph[name] = found
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_toolchain_modules():
    """Module-level imports (a package importing its own submodules for re-export counts too)."""
    cycle = find_cycle(import_graph(top_level_only=True))
    assert cycle is None, " -> ".join(cycle)


def test_no_import_cycle_even_through_deferred_imports():
    """Deferred (function-level) imports must not close a cycle either: a package that needs itself
    back through a lazy import is two concerns tangled, whatever the import order hides."""
    cycle = find_cycle(import_graph(top_level_only=False))
    assert cycle is None, " -> ".join(cycle)


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or (Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install ruff, or the project's [test] extra)")
    proc = subprocess.run([str(ruff), "check", "toolchain", "tests", "benchmarks", "examples"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
