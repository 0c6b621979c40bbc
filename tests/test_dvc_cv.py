"""Walk-forward CV through the DVC door (pipelines/cv/dvc.yaml) gives the numbers
`python run.py task=cv` gives, with real DVC in a temporary git repo."""

from __future__ import annotations

import shutil
import sys

import pytest
from conftest import ROOT, SMALL_DATA
from test_dvc import assert_same_metrics, copy_project, dvc, git_init, metrics, sh

pytestmark = pytest.mark.slow  # real DVC and git

CV = ["cv.n_splits=3", "cv.embargo_eras=4", "model.num_boost_round=30"]


def test_dvc_cv_pipeline_equals_run_py(tmp_path):
    repo = copy_project(tmp_path / "project")
    (repo / "pipelines" / "cv").mkdir(parents=True)
    shutil.copy2(ROOT / "pipelines" / "cv" / "dvc.yaml", repo / "pipelines" / "cv" / "dvc.yaml")
    sh(repo, sys.executable, "-m", "numerlab.stages", "params", *SMALL_DATA)
    git_init(repo)

    sets = [arg for o in [*SMALL_DATA, *CV] for arg in ("-S", o)]
    proc = dvc(repo, "exp", "run", "pipelines/cv/dvc.yaml", *sets)
    assert "Running stage 'pipelines/cv/dvc.yaml:cv'" in proc.stdout + proc.stderr
    via_dvc = metrics(repo / "artifacts" / "cv" / "metrics.json")
    assert via_dvc["n_folds"] == 3
    for rel in ("folds.parquet", "per_era.parquet", "predictions/oof.parquet",
                "plots/cv_folds.png"):
        assert (repo / "artifacts" / "cv" / rel).is_file(), rel

    run_dir = tmp_path / "run"
    sh(repo, sys.executable, "run.py", "task=cv", *SMALL_DATA, *CV, f"hydra.run.dir={run_dir}")
    assert_same_metrics(via_dvc, metrics(run_dir / "metrics.json"))
