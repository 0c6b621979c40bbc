"""A kill -9 of `dvc exp run` (issue #18): DVC has written the experiment's settings into
params.yaml and leaves them there, with its record of the unfinished run; the next plain
`dvc repro` refuses with one line saying how to restore params.yaml, and changes nothing
(the experiment's params.yaml is not lost either); restored as the line says, it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from test_dvc import DVC, SMALL, commit, copy_project, dvc, env, git_init, sh

from numerlab import stages

pytestmark = pytest.mark.slow  # real DVC and git

# DVC 3.x's record of the experiment running in the workspace; a kill -9 leaves it
EXP_RECORD = ".dvc/tmp/exps/run/workspace/workspace.run"


def wait_for(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_dvc_repro_after_a_killed_exp_run_refuses_its_params(tmp_path):
    repo = copy_project(tmp_path / "project")
    hold = tmp_path / "hold"  # outside the repo: the data stage waits while it exists
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    spec["stages"]["data"]["cmd"] = (
        f"{sys.executable} -c \"import os, time; [time.sleep(0.05) for _ in "
        f"iter(lambda: os.path.exists('{hold}'), False)]\" && "
        f"{spec['stages']['data']['cmd']}")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    sh(repo, sys.executable, "-m", "numerlab.stages", "params", *SMALL)
    git_init(repo)
    committed = (repo / "params.yaml").read_bytes()

    hold.touch()
    experiment = subprocess.Popen([str(DVC), "exp", "run", "-S", "seed=7"], cwd=repo,
                                  env=env(), start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (repo / EXP_RECORD).is_file()
                 and b"seed: 7" in (repo / "params.yaml").read_bytes(),
                 "the experiment's params.yaml")
        time.sleep(1)  # its data stage waits on `hold`
    finally:
        os.killpg(experiment.pid, signal.SIGKILL)
        experiment.wait()
    hold.unlink()
    left = (repo / "params.yaml").read_bytes()
    assert left != committed and b"seed: 7" in left  # what DVC leaves after a kill -9

    proc = dvc(repo, "repro", "data", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("error: params.yaml holds the settings of experiment ")
    assert "Traceback" not in proc.stderr
    assert (repo / "params.yaml").read_bytes() == left  # nothing of the user's lost
    assert not (repo / stages.DATA_MANIFEST).exists()

    restore = errors[0].split("restore yours with `", 1)[1].split("`", 1)[0]
    sh(repo, *restore.split())
    assert (repo / "params.yaml").read_bytes() == committed
    proc = dvc(repo, "repro", "data")
    assert (repo / stages.DATA_MANIFEST).is_file()
    commit(repo, "data")
