"""Staging dirs a killed run left (issue #18): the next staged write into the same dir
(DVC's artifacts/, a re-used run dir) and a task reading the run remove them; a running
job's, a fresh one of another host and anything not named as numerlab names them stay."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

from omegaconf import OmegaConf

from numerlab import artifacts, runs

DAY = 24 * 3600


def host() -> str:
    """This host as a staging dir's name spells it (`.staging-<pid>@<host>-<random>`)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())


def dead_pid() -> int:
    """A pid no process has: above the kernel's largest."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def staging(run_dir: Path, name: str, age_s: float = 0) -> Path:
    path = run_dir / name
    path.mkdir(parents=True)
    (path / "metrics.json").write_text("{}")
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def debris(run_dir: Path) -> dict[str, Path]:
    here = host()
    return {
        "killed here": staging(run_dir, f".staging-{dead_pid()}@{here}-k1ll3d_x"),
        "old, from before the pid": staging(run_dir, ".staging-abcd1234", age_s=2 * DAY),
        "old, another host": staging(run_dir, ".staging-12@elsewhere-zzzz9999", age_s=2 * DAY),
    }


def kept(run_dir: Path) -> dict[str, Path]:
    here = host()
    file = run_dir / ".staging-file0000"
    file.write_text("a file, not a staging dir")
    return {
        "running (this process)": staging(run_dir, f".staging-{os.getpid()}@{here}-running0"),
        "fresh, another host": staging(run_dir, f".staging-{dead_pid()}@elsewhere-fresh000"),
        "fresh, from before the pid": staging(run_dir, ".staging-fresh123"),
        "not numerlab's name": staging(run_dir, ".staging-my-notes", age_s=2 * DAY),
        "a file": file,
    }


def test_a_staged_write_removes_what_killed_runs_left_and_nothing_else(tmp_path):
    gone, stay = debris(tmp_path), kept(tmp_path)
    artifacts.write_record(tmp_path, "record.json", {"a": 1})
    assert {what: path.exists() for what, path in gone.items()} == dict.fromkeys(gone, False)
    assert {what: path.exists() for what, path in stay.items()} == dict.fromkeys(stay, True)
    assert (tmp_path / "record.json").is_file()


def test_the_staging_dir_of_a_running_job_names_its_pid_and_is_kept(tmp_path):
    with artifacts.staged(tmp_path) as stage:
        assert stage.name.startswith(f".staging-{os.getpid()}@{host()}-")
        artifacts.write_record(tmp_path, "other.json", {"a": 1})  # cleans stale ones only
        assert stage.is_dir()
    assert not stage.exists()


def test_a_task_reading_a_finished_run_removes_its_stale_staging_dirs(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    gone, stay = debris(run_dir), kept(run_dir)
    cfg = OmegaConf.create({"task": {"_target_": "numerlab.tasks.live.run"},
                            "run_dir": str(run_dir)})
    assert runs.finished_run(cfg, "model", tmp_path / "job") == run_dir
    assert not any(path.exists() for path in gone.values())
    assert all(path.exists() for path in stay.values())
