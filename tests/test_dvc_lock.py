"""The committed dvc.lock (and pipelines/cv/dvc.lock) is what `dvc repro` of the committed
code writes, checked in a fresh `git clone` of HEAD (uncommitted edits are not seen): DVC finds
no code, config or params change there, a repro leaves the locks and metrics as committed,
and `dvc checkout` restores the outs. After an edit under src/numerlab or conf/model, run
`dvc repro && dvc repro pipelines/cv/dvc.yaml` and commit the locks."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from test_dvc import dvc, metrics, ran, sh

pytestmark = pytest.mark.slow

PIPELINES = ["dvc.yaml", "pipelines/cv/dvc.yaml"]
CV_STAGE = "pipelines/cv/dvc.yaml:cv"
# what a clone lacks: no outs in the workspace, nothing in its cache (no remote is configured)
MISSING = {"deleted", "not in cache"}


def fresh_clone(tmp_path: Path) -> Path:
    # the committed locks are what is tested: CI and developers run from a git checkout
    assert (ROOT / ".git").exists(), f"{ROOT} is not a git checkout"
    dest = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(ROOT), str(dest))
    return dest


def outs(repo: Path) -> set[str]:
    """Every out, metric and plot file the pipelines declare (paths from the repo root)."""
    found: set[str] = set()
    for name in PIPELINES:
        spec = yaml.safe_load((repo / name).read_text())
        for stage in spec["stages"].values():
            wdir = Path(name).parent / stage.get("wdir", ".")
            for key in ("outs", "metrics", "plots"):
                for item in stage.get(key) or []:
                    path = item if isinstance(item, str) else next(iter(item))
                    found.add(Path(os.path.normpath(wdir / path)).as_posix())
    return found


def unexpected(status: dict, missing_ok: set[str]) -> list[str]:
    """What `dvc status --json` reports beyond outs (and deps that are outs) a clone lacks:
    a code, conf or params dep that differs from the lock, a changed command, a stage never
    locked."""
    found = []
    for stage, entries in status.items():
        for entry in entries:
            if entry == "always changed":
                continue
            if isinstance(entry, str):
                found.append(f"{stage}: {entry}")
                continue
            for kind, changes in entry.items():
                for path, state in changes.items():
                    if isinstance(state, dict):  # a params file: {key: state}
                        found += [f"{stage}: {kind}: {path} {key} {s}"
                                  for key, s in state.items()]
                    elif state not in MISSING or path not in missing_ok:
                        found.append(f"{stage}: {kind}: {path} {state}")
    return found


def test_a_fresh_clone_finds_the_locks_matching_its_code(tmp_path):
    repo = fresh_clone(tmp_path)
    status = json.loads(dvc(repo, "status", "--json").stdout)
    assert set(status) >= {"features", "train", "predict", "evaluate", CV_STAGE}
    changed = unexpected(status, outs(repo))
    assert not changed, ("the committed locks do not match the committed code or params: "
                         "run `dvc repro && dvc repro pipelines/cv/dvc.yaml` and commit "
                         "the locks\n  " + "\n  ".join(changed))

    # what a repro would run, outs missing aside: the data stage (always runs), nothing else
    proc = dvc(repo, "repro", "--dry", "--allow-missing")
    assert ran(proc) == ["data"], proc.stdout
    proc = dvc(repo, "repro", "--dry", "--allow-missing", "pipelines/cv/dvc.yaml")
    assert f"Running stage '{CV_STAGE}'" not in proc.stdout, proc.stdout

    # no cache and no remote: plain `dvc checkout` fails by DVC's design ("Is your cache up
    # to date?"); --allow-missing is its switch for that, and nothing else may fail
    dvc(repo, "checkout", "--allow-missing")


def assert_same_values(dvc_metrics: dict, run_metrics: dict) -> None:
    common = sorted(dvc_metrics.keys() & run_metrics.keys())
    assert common
    for key in common:
        a, b = dvc_metrics[key], run_metrics[key]
        if isinstance(a, float) or isinstance(b, float):
            assert math.isclose(a, b, rel_tol=0, abs_tol=1e-12), (key, a, b)
        else:
            assert a == b, (key, a, b)


def test_repro_in_a_fresh_clone_leaves_the_locks_as_committed(tmp_path):
    repo = fresh_clone(tmp_path)
    dvc(repo, "repro")
    dvc(repo, "repro", "pipelines/cv/dvc.yaml")
    changed = sh(repo, "git", "status", "--porcelain").stdout
    assert changed == "", (
        f"`dvc repro` of the committed code changed committed files:\n{changed}"
        f"{sh(repo, 'git', 'diff').stdout[-3000:]}")

    # with the outs in the cache, checkout exits 0 and restores a deleted one
    dvc(repo, "checkout")
    model = repo / "artifacts/model"
    files = {p.name: p.read_bytes() for p in model.iterdir()}
    shutil.rmtree(model)
    dvc(repo, "checkout")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == files

    # the committed metrics are what the other door, `python run.py`, writes by default
    run_dir = tmp_path / "run"
    sh(repo, sys.executable, "run.py", f"hydra.run.dir={run_dir}")
    assert_same_values(metrics(repo / "artifacts/metrics.json"), metrics(run_dir / "metrics.json"))
