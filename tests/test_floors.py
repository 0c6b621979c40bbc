"""Every import in src/numerlab, those inside functions included, runs down the floors of
../shared/DESIGN.md (README "Where things live") or along one floor, and none closes a cycle."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "numerlab"

# module (or package prefix) -> floor; the longest matching prefix decides
FLOORS = {
    "numerlab.cli": 6, "numerlab.stages": 6, "numerlab.dashboard": 6, "numerlab.__main__": 6,
    "numerlab.tasks": 5,
    "numerlab.pipeline": 4, "numerlab.runs": 4, "numerlab.compare": 4, "numerlab.export": 4,
    "numerlab.images": 4, "numerlab.image_venv": 4,
    "numerlab.diagnostics": 4, "numerlab.tracking": 4, "numerlab.summary": 4,
    "numerlab.sweep_checks": 4, "numerlab.pareto": 4, "numerlab.loggers": 4,
    "numerlab.run_kinds": 4, "numerlab.coverage": 4, "numerlab.live_results": 4,
    "numerlab.live_round": 4,
    "numerlab.models": 3, "numerlab.postprocess": 3, "numerlab.staking": 3,
    "numerlab.backtest": 3, "numerlab.payout": 3, "numerlab.tournament": 3, "numerlab.cv": 3,
    "numerlab.parallel": 3, "numerlab.submission": 3, "numerlab.history": 3,
    "numerlab.notify": 3, "numerlab.schedules": 3,
    "numerlab.data": 2, "numerlab.scoring": 2,
    "numerlab.errors": 1, "numerlab.settings": 1, "numerlab.eras": 1,
    "numerlab.artifacts": 1, "numerlab.report": 1, "numerlab.registry": 1,
    "numerlab.phases": 1, "numerlab.locks": 1,
    "numerlab": 0,  # the package's empty __init__
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def floor(module: str) -> int:
    matches = [p for p in FLOORS if module == p or module.startswith(p + ".")]
    if not matches:
        raise AssertionError(f"{module} has no floor: add it to FLOORS and to DESIGN.md")
    return FLOORS[max(matches, key=len)]


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports() -> dict[str, set[str]]:
    """module -> the numerlab modules it imports anywhere in its code."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        edges = graph.setdefault(importer, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.split(".")[0] == "numerlab")
            elif isinstance(node, ast.ImportFrom):
                target = resolve(importer, path.name == "__init__.py", node)
                if target.split(".")[0] != "numerlab":
                    continue
                for alias in node.names:
                    child = f"{target}.{alias.name}"
                    edges.add(child if is_module(child) else target)
        edges.discard(importer)
    return graph


def test_every_module_has_a_floor():
    for module in imports():
        floor(module)


def test_no_import_runs_up_a_floor():
    upward = [f"{m} (floor {floor(m)}) imports {t} (floor {floor(t)})"
              for m, targets in imports().items() for t in sorted(targets)
              if t != "numerlab" and floor(t) > floor(m)]
    assert not upward, "\n".join(upward)


def test_imports_form_no_cycle():
    graph = imports()
    # a package's __init__ re-exporting its modules is not a dependency of those modules
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_walk_sees_imports_inside_functions(tmp_path):
    # the checker itself: an import inside a function counts as much as one at the top
    assert "numerlab.models.base" in imports()["numerlab.tasks.cv"]
    assert "numerlab.scoring" in imports()["numerlab.postprocess"]


@pytest.mark.slow  # a fresh interpreter: the imports must be the first
@pytest.mark.parametrize("module", ["numerlab.models.nn.model", "numerlab.models.gbdt",
                                    "numerlab.models.ensemble", "numerlab.pipeline"])
def test_importing_a_module_leaves_logging_alone(module):
    """Importing has no side effects: no handler added, removed or rewired, no filter."""
    code = (
        "import logging, sys\n"
        "names = ['', 'lightning', 'lightning.pytorch', 'lightning.fabric',\n"
        "         'lightning.pytorch.utilities.rank_zero']\n"
        "import lightning  # the library's own logging set-up is not ours\n"
        "def snap():\n"
        "    return [(n, tuple(logging.getLogger(n).handlers), logging.getLogger(n).propagate,\n"
        "             tuple(logging.getLogger(n).filters)) for n in names]\n"
        "before = snap()\n"
        f"import {module}\n"
        "sys.exit(0 if snap() == before else 1)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"importing {module} changed logging\n{proc.stderr[-2000:]}"
    assert logging.getLogger().handlers is not None
