"""Every DVC stage depends on all the numerlab code its command can run and the conf/ files
it reads, derived from the source (no DVC process): an edit anywhere a stage can reach
reruns it, so no cached feature matrix, model or submission.csv outlives the code that made
it. The code is walked, never listed here, so moving functions between modules is checked
too."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml
from import_walk import (
    ROOT,
    chain,
    closure,
    conf_groups_read,
    conf_targets,
    functions,
    imports_in,
    module_file,
    module_level_imports,
    parse,
    reachable_functions,
)

DVC_FILES = [ROOT / "dvc.yaml", *sorted((ROOT / "pipelines").rglob("dvc.yaml"))]
DISPATCH = "STAGES"  # the entry module's {stage name: function} table (numerlab.stages)


def stages() -> list[tuple[Path, str, dict]]:
    return [(path, name, spec) for path in DVC_FILES
            for name, spec in yaml.safe_load(path.read_text())["stages"].items()]


def stage_id(path: Path, name: str) -> str:
    return f"{path.relative_to(ROOT)}:{name}"


def entry(cmd: str | list[str]) -> tuple[str, list[str]]:
    """(module, arguments) of a `python -m <module> ...` command."""
    words = shlex.split(cmd if isinstance(cmd, str) else " && ".join(cmd))
    if "-m" not in words or not words[0].startswith("python"):
        raise AssertionError(f"cmd {cmd!r}: not `python -m <module> ...`, so this test cannot "
                             f"tell what code it runs; teach it")
    at = words.index("-m")
    return words[at + 1], words[at + 2:]


def dispatched(tree: ast.Module, argument: str | None) -> tuple[set[str], set[str]]:
    """(functions the dispatch table maps `argument` to, all functions it holds)."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [
            getattr(node, "target", None)]
        if (isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict)
                and DISPATCH in [t.id for t in targets if isinstance(t, ast.Name)]):
            table = {k.value: v.id for k, v in zip(node.value.keys, node.value.values,
                                                   strict=True)
                     if isinstance(k, ast.Constant) and isinstance(v, ast.Name)}
            return {table[argument]} if argument in table else set(), set(table.values())
    return set(), set()


def command_roots(module: str, args: list[str]) -> set[str]:
    """The numerlab modules the command imports itself: the entry module's own top-level
    imports, and those inside the functions the command can call there. With a dispatch
    table (`STAGES`), only the stage's function is followed, not the other stages'."""
    tree = parse(module)
    chosen, table = dispatched(tree, args[0] if args else None)
    defs = functions(tree)
    called_at_top = {n.id for stmt in tree.body
                     if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef)
                     for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id in defs}
    start = (called_at_top - table) | chosen if chosen else called_at_top
    roots = module_level_imports(module)
    for name in reachable_functions(tree, start):
        roots |= imports_in(defs[name], module)
    return roots - {module}


def param_groups(spec: dict) -> set[str]:
    """Top-level params.yaml keys a stage declares (`model.name` -> `model`)."""
    keys: list[str] = []
    for item in spec.get("params") or []:
        if isinstance(item, str):
            keys.append(item)
        else:  # {params-file: [keys]}
            keys += [k for ks in item.values() for k in ks or []]
    return {k.split(".")[0] for k in keys}


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == d or d in path.parents for d in deps)


def needs(dvc_file: Path, spec: dict) -> dict[Path, str]:
    """What a stage reads that must be among its deps: source file -> how it is reached."""
    module, args = entry(spec["cmd"])
    imported = command_roots(module, args)
    # what `_target_`s of the params groups it reads import (registry.build, instantiate)
    targets = {t for group in param_groups(spec) for t in conf_targets(group)}
    reached = closure([module, *sorted(targets)], known={module: imported})
    found = {module_file(m): f"{chain(reached, m)}"
             + (" (a _target_ in conf/)" if m in targets else "")
             for m in reached}
    for m in reached:
        for group in conf_groups_read(m):
            found.setdefault(ROOT / "conf" / group, f"read by {m}")
    return found


@pytest.mark.parametrize("dvc_file, name, spec",
                         [pytest.param(*s, id=stage_id(*s[:2])) for s in stages()])
def test_stage_depends_on_all_the_code_it_runs(dvc_file, name, spec):
    wdir = (dvc_file.parent / spec.get("wdir", ".")).resolve()
    deps = [(wdir / d).resolve() for d in spec.get("deps") or []]
    missing = [f"{path.relative_to(ROOT)} ({how})"
               for path, how in sorted(needs(dvc_file, spec).items())
               if not covered(path, deps)]
    assert not missing, (
        f"stage '{stage_id(dvc_file, name)}' runs or reads these but does not depend on "
        f"them (add each, or a folder holding it, to its deps):\n  " + "\n  ".join(missing))


@pytest.mark.parametrize("dvc_file, name, spec",
                         [pytest.param(*s, id=stage_id(*s[:2])) for s in stages()])
def test_stage_deps_exist(dvc_file, name, spec):
    """A dep that is gone (a module moved away) fails `dvc repro`."""
    wdir = (dvc_file.parent / spec.get("wdir", ".")).resolve()
    gone = [d for d in spec.get("deps") or []
            if not (wdir / d).exists() and not d.startswith("artifacts/")]
    assert not gone, f"stage '{stage_id(dvc_file, name)}' depends on missing {gone}"
