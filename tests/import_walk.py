"""What numerlab code a command can run, read from the source alone (no import executed).

Every `import` and `from ... import` of src/numerlab is walked, those inside functions too,
so the answer holds for any path through the code. Config-driven imports (`_target_`,
`importlib.import_module`) and reads of conf/ are found too, since they are imports and
inputs the static walk cannot see. Used by the DVC deps check (test_dvc_deps.py); reusable
by any test about the import graph.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CONF = ROOT / "conf"
PACKAGE = "numerlab"
CONF_DIR_NAME = "CONF_DIR"   # registry.CONF_DIR: numerlab's conf/ folder
DYNAMIC_IMPORTS = {"import_module", "__import__"}  # a module named by a runtime string


def module_file(name: str) -> Path | None:
    """The source file of numerlab module `name` (a package's __init__.py), or None."""
    if name != PACKAGE and not name.startswith(f"{PACKAGE}."):
        return None
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    """`src/numerlab/data/__init__.py` -> `numerlab.data`."""
    parts = list(Path(path).resolve().relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> list[str]:
    return sorted(module_name(p) for p in (SRC / PACKAGE).rglob("*.py"))


@cache
def parse(name: str) -> ast.Module:
    path = module_file(name)
    if path is None:
        raise KeyError(name)
    return ast.parse(path.read_text(), filename=str(path))


def with_parents(name: str) -> list[str]:
    """Importing `a.b.c` runs `a`, `a.b` and `a.b.c` (each package's __init__.py)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _base(node: ast.ImportFrom, importer: str) -> str:
    if not node.level:
        return node.module or ""
    is_package = module_file(importer).name == "__init__.py"
    parts = importer.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def imports_in(node: ast.AST, importer: str) -> set[str]:
    """The numerlab modules the `import` statements anywhere under `node` (nested functions
    included) name, each with its parent packages."""
    found: set[str] = set()
    for item in ast.walk(node):
        names: list[str] = []
        if isinstance(item, ast.Import):
            names = [alias.name for alias in item.names]
        elif isinstance(item, ast.ImportFrom):
            base = _base(item, importer)
            names = [base]
            # `from numerlab import data`: data may be a module of its own
            names += [f"{base}.{a.name}" for a in item.names
                      if module_file(f"{base}.{a.name}") is not None]
        for name in names:
            found.update(m for m in with_parents(name) if module_file(m) is not None)
    return found


def dynamic_import_packages(name: str) -> set[str]:
    """A module that imports a module named by a runtime string (`importlib.import_module`,
    e.g. a saved model's class) may import any module of its own package: those modules.
    Hydra's `_target_` imports are not here (see `conf_targets`)."""
    for item in ast.walk(parse(name)):
        if isinstance(item, ast.Call):
            func = item.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in DYNAMIC_IMPORTS and not (
                    item.args and isinstance(item.args[0], ast.Constant)):
                package = name if module_file(name).name == "__init__.py" else \
                    name.rpartition(".")[0]
                return {m for m in all_modules() if m == package or m.startswith(f"{package}.")}
    return set()


def closure(roots: Iterable[str], known: dict[str, set[str]] | None = None
            ) -> dict[str, str | None]:
    """Every numerlab module `roots` can import, transitively: module -> the module that
    first imports it (None for a root), so `chain` can say how it is reached. `known` gives
    the imports of some modules instead of all their import statements (an entry module
    of which a command runs only some functions)."""
    known = known or {}
    reached: dict[str, str | None] = {}
    queue: deque[tuple[str, str | None]] = deque()
    for root in roots:
        queue.extend((m, None) for m in with_parents(root) if module_file(m) is not None)
    while queue:
        name, by = queue.popleft()
        if name in reached:
            continue
        reached[name] = by
        imported = known[name] if name in known else (
            imports_in(parse(name), name) | dynamic_import_packages(name))
        for found in sorted(imported):
            if found not in reached:
                queue.append((found, name))
    return reached


def chain(reached: dict[str, str | None], name: str) -> str:
    """`numerlab.stages -> numerlab.pipeline -> numerlab.submission`."""
    path = [name]
    while reached.get(path[-1]) is not None:
        path.append(reached[path[-1]])
    return " -> ".join(reversed(path))


def functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def reachable_functions(tree: ast.Module, start: Iterable[str]) -> set[str]:
    """The module-level functions `start` can call within the module: every function whose
    name the body of a reached one mentions (calls, references), transitively."""
    defs = functions(tree)
    seen: set[str] = set()
    todo = [s for s in start if s in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(n.id for n in ast.walk(defs[name])
                    if isinstance(n, ast.Name) and n.id in defs and n.id not in seen)
    return seen


def module_level_imports(name: str) -> set[str]:
    """What importing `name` imports itself: its import statements outside functions."""
    tree = parse(name)
    found: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found |= imports_in(node, name)
    return found


def conf_groups_read(name: str) -> set[str]:
    """conf/ folders module `name` reads at run time: in each function that refers to
    `CONF_DIR`, the string constants (or f-string prefixes) whose first path part is a conf/
    folder, e.g. `CONF_DIR / "staking"` or `compose(config_name=f"model/{name}")`."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    found: set[str] = set()
    for node in ast.walk(parse(name)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not any((isinstance(n, ast.Name) and n.id == CONF_DIR_NAME)
                   or (isinstance(n, ast.Attribute) and n.attr == CONF_DIR_NAME)
                   or (isinstance(n, ast.alias) and n.name == CONF_DIR_NAME)
                   for n in ast.walk(node)):
            continue
        for n in ast.walk(node):
            text = n.value if isinstance(n, ast.Constant) and isinstance(n.value, str) else (
                n.values[0].value if isinstance(n, ast.JoinedStr) and n.values
                and isinstance(n.values[0], ast.Constant) else None)
            if text:
                first = text.split("/")[0]
                if first in groups:
                    found.add(first)
    return found


def conf_targets(group: str) -> set[str]:
    """The numerlab modules the `_target_`s of every option in conf/<group>/ name (nested
    ones too, e.g. a neural model's network): what Hydra's `instantiate` or
    `registry.build` may import for that group."""
    import yaml

    folder = CONF / group
    if not folder.is_dir():
        return set()
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str):
                parts = target.split(".")
                # `pkg.module.Class` or `pkg.module.function`: the longest module prefix
                for i in range(len(parts), 0, -1):
                    if module_file(".".join(parts[:i])) is not None:
                        found.add(".".join(parts[:i]))
                        break
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted(folder.rglob("*.yaml")):
        walk(yaml.safe_load(path.read_text()))
    return found
