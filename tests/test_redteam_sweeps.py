"""A multirun whose every job failed (issue #18) exits 2 as one failed run does: after each
job's own `error:` line, one line for the sweep; each job's error.txt and the sweep summary
are still written."""

from __future__ import annotations

from conftest import run_in_process


def test_a_sweep_whose_every_job_failed_exits_2_with_one_line(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_in_process(["-m", "task=live", "seed=1,2", "logger=none",
                           f"hydra.sweep.dir={sweep_dir}"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert lines[:2] == [lines[0]] * 2 and "run_dir is not set" in lines[0]  # each job's
    assert len(lines) == 3, lines
    line = lines[-1]
    assert line.startswith("error: every job of the sweep failed (2 of 2 in ")
    assert "run_dir is not set" in line
    errors = sorted(p.parent.name for p in sweep_dir.glob("*/error.txt"))
    assert errors == ["0-live", "1-live"]
    assert (sweep_dir / "summary.md").is_file()
