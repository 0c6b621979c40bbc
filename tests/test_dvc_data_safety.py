"""A user's own files survive the DVC door: `dvc exp run -S data=v5` reads downloaded Numerai
files (inside or outside the repo) and never deletes or rewrites them; a failed experiment
leaves params.yaml as it was. Real DVC in a temporary git repo."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest
from conftest import FAST_GBDT, SMALL_DATA
from test_dvc import commit, copy_project, dvc, git_init, sh

pytestmark = pytest.mark.slow  # real DVC and git


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def numerai_files(tmp_path_factory) -> Path:
    """Numerai-layout files as a user downloads them (made by the synthetic generator)."""
    from numerlab.data import synthetic

    folder = tmp_path_factory.mktemp("numerai") / "v5"
    synthetic.generate(folder, {"n_train_eras": 40, "n_validation_eras": 14, "n_test_eras": 1,
                                "rows_per_era": 120, "n_features": 24, "n_live_rows": 80}, 3)
    (folder / "synthetic.json").unlink()  # a user's download has no generator manifest
    return folder


V5 = ["data=v5", "data.era_stride=1", "features=medium", *FAST_GBDT]


def new_repo(root: Path) -> Path:
    repo = copy_project(root)
    sh(repo, sys.executable, "-m", "numerlab.stages", "params", *SMALL_DATA, *FAST_GBDT)
    git_init(repo)
    return repo


def sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("-S", o)]


def test_exp_run_on_v5_files_in_the_repo_keeps_them(tmp_path, numerai_files):
    repo = new_repo(tmp_path / "project")
    dvc(repo, "repro")
    commit(repo, "repro")
    synthetic_before = digests(repo / "data" / "synthetic")
    shutil.copytree(numerai_files, repo / "data" / "v5.0")
    before = digests(repo / "data" / "v5.0")

    proc = dvc(repo, "exp", "run", *sets([*V5, "data.dir=data/v5.0"]))
    out = proc.stdout + proc.stderr
    assert "Removing" not in out, out[-3000:]
    assert digests(repo / "data" / "v5.0") == before
    assert digests(repo / "data" / "synthetic") == synthetic_before
    assert (repo / "artifacts" / "metrics.json").is_file()
    # and again, after DVC has switched experiments back and forth
    dvc(repo, "exp", "run", *sets([*V5, "data.dir=data/v5.0", "seed=5"]))
    assert digests(repo / "data" / "v5.0") == before


def test_exp_run_with_data_outside_the_repo(tmp_path, numerai_files):
    repo = new_repo(tmp_path / "project")
    outside = tmp_path / "numerai-downloads"
    shutil.copytree(numerai_files, outside)
    before = digests(outside)
    proc = dvc(repo, "exp", "run", *sets([*V5, f"data.dir={outside}"]), check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert digests(outside) == before
    assert (repo / "artifacts" / "metrics.json").is_file()


def test_failed_exp_run_leaves_params_yaml_as_it_was(tmp_path):
    repo = new_repo(tmp_path / "project")
    before = (repo / "params.yaml").read_bytes()
    proc = dvc(repo, "exp", "run", *sets(["model.params.learning_rate=abc"]), check=False)
    assert proc.returncode != 0
    assert (repo / "params.yaml").read_bytes() == before


def test_a_failed_experiment_restores_params_and_keeps_every_replaced_version(tmp_path,
                                                                               monkeypatch):
    """Under `dvc exp run` in the workspace a failing stage puts params.yaml back as the
    baseline commit has it; what it replaced is kept, and a later failure never overwrites
    the copy an earlier one kept."""
    import subprocess

    from numerlab.stages import restore_params_after_failed_experiment

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "params.yaml").write_text("seed: 42\n")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "baseline")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", git("rev-parse", "HEAD"))
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    for edit in ("seed: 1\n", "seed: 2\n"):
        (tmp_path / "params.yaml").write_text(edit)
        restore_params_after_failed_experiment()
        assert (tmp_path / "params.yaml").read_text() == "seed: 42\n"
    assert (tmp_path / "params.yaml.failed").read_text() == "seed: 1\n"
    assert (tmp_path / "params.yaml.failed.1").read_text() == "seed: 2\n"
