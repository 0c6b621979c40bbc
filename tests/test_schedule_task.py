"""task=schedule in this process (no command runs): show is the default and writes nothing,
the next runs in UTC and local time, the keys never in what it shows, one-line errors."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import croniter  # noqa: F401  (imported here: its import runs `file` on the interpreter)
import pytest
import time_machine
from conftest import ROOT, error_line, run_in_process

KEYS = {"NUMERAI_PUBLIC_ID": "PUBLICID7Q2W3E4R5T", "NUMERAI_SECRET_KEY": "SECRETKEY9Z8X7C6V5B4N"}


@pytest.fixture
def home(tmp_path) -> Path:
    """A HOME of the test's own, an env file outside the repo (mode 600), an empty PATH dir:
    no systemd-analyze, crontab or systemctl of this machine is found."""
    home = tmp_path / "home"
    (home / ".numerai").mkdir(parents=True)
    keys = home / ".numerai" / "keys.env"
    keys.write_text("".join(f"{k}={v}\n" for k, v in KEYS.items()))
    keys.chmod(0o600)
    (tmp_path / "bin").mkdir()
    return home


def env_for(home: Path, **more) -> dict:
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "PATH": str(home.parent / "bin"), "TZ": "UTC", **more}


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def schedule(home: Path, *args: str, env: dict | None = None):
    run_dir = home.parent / "run"
    return run_in_process(["task=schedule", f"hydra.run.dir={run_dir}",
                           f"schedule.env_file={home}/.numerai/keys.env", *args],
                          env=env or env_for(home), cwd=ROOT)


@pytest.mark.parametrize("kind", ["systemd", "launchd", "cron"])
def test_show_is_the_default_and_writes_nothing(home, kind):
    before = files_under(home)
    proc = schedule(home, f"schedule.kind={kind}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "would write" in proc.stdout
    assert "nothing written" in proc.stdout
    assert files_under(home) == before
    run_dir = home.parent / "run"
    assert not (run_dir / "schedule.json").exists()
    assert "next 5 runs" in proc.stdout


def test_show_prints_what_it_would_write_and_where(home):
    proc = schedule(home, "schedule.kind=systemd", "schedule.name=nightly",
                    "schedule.delay_minutes=20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"--- {home}/.config/systemd/user/numerlab-nightly.service" in proc.stdout
    assert f"--- {home}/.config/systemd/user/numerlab-nightly.timer" in proc.stdout
    assert "OnCalendar=Tue..Sat *-*-* 12:20:00 UTC" in proc.stdout
    assert f"EnvironmentFile={home}/.numerai/keys.env" in proc.stdout
    assert "systemd-analyze not found" in proc.stdout  # this PATH has none


@pytest.mark.parametrize("kind", ["systemd", "launchd", "cron"])
def test_next_five_runs_in_utc_and_new_york_time_across_the_dst_change(home, kind):
    with time_machine.travel(datetime(2026, 3, 6, 1, 0, tzinfo=UTC), tick=False):
        proc = schedule(home, f"schedule.kind={kind}",
                        env=env_for(home, TZ="America/New_York"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if " UTC " in line and "│" in line]
    cells = [[c.strip() for c in row.strip("│ ").split("│")] for row in rows]
    assert cells == [
        ["Fri 2026-03-06 12:15 UTC", "Fri 2026-03-06 07:15 EST"],
        ["Sat 2026-03-07 12:15 UTC", "Sat 2026-03-07 07:15 EST"],
        ["Tue 2026-03-10 12:15 UTC", "Tue 2026-03-10 08:15 EDT"],  # US DST from Sun 03-08
        ["Wed 2026-03-11 12:15 UTC", "Wed 2026-03-11 08:15 EDT"],
        ["Thu 2026-03-12 12:15 UTC", "Thu 2026-03-12 08:15 EDT"]]
    assert "local (America/New_York)" in proc.stdout


def test_schedule_timezone_names_the_local_zone(home):
    with time_machine.travel(datetime(2026, 3, 27, 1, 0, tzinfo=UTC), tick=False):
        proc = schedule(home, "schedule.kind=cron", "schedule.timezone=Europe/London")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Fri 2026-03-27 12:15 UTC │ Fri 2026-03-27 12:15 GMT" in proc.stdout
    assert "Mon" not in proc.stdout.split("next 5 runs")[1]
    assert "Tue 2026-03-31 12:15 UTC │ Tue 2026-03-31 13:15 BST" in proc.stdout
    assert "15 12 * * 2-6 " in proc.stdout and "15 13 * * 2-6 " in proc.stdout


@pytest.mark.parametrize("kind", ["systemd", "launchd", "cron"])
def test_the_keys_in_the_environment_never_show(home, kind):
    proc = schedule(home, f"schedule.kind={kind}", env=env_for(home, **KEYS))
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = proc.stdout + proc.stderr + "".join(
        p.read_text(errors="replace") for p in files_under(home.parent / "run"))
    for value in KEYS.values():
        assert value not in shown


def test_a_key_in_the_overrides_is_refused_without_echoing_it(home):
    secret = KEYS["NUMERAI_SECRET_KEY"]
    proc = schedule(home, "schedule.kind=cron",
                    f'schedule.overrides=["tournament.model_name={secret}"]',
                    env=env_for(home, **KEYS))
    line = error_line(proc)
    assert "NUMERAI_SECRET_KEY" in line and "schedule.env_file" in line
    assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize("arg, key", [
    ("schedule.action=installl", "schedule.action='installl'"),
    ("schedule.kind=upstart", "schedule.kind='upstart'"),
    ("+schedule.delay=5", "schedule.delay is not a setting"),
    ("schedule.delay_minutes=90", "schedule.delay_minutes=90"),
    ("schedule.timezone=Mars/Olympus", "schedule.timezone='Mars/Olympus'"),
    ("schedule.activate=yes", "schedule.activate='yes'"),
    ('schedule.overrides="model=lgbm"', "schedule.overrides='model=lgbm' must be a list"),
    ('schedule.overrides=["task=train"]', "not an override for task=submit"),
])
def test_a_bad_setting_is_one_line_naming_it(home, arg, key):
    proc = schedule(home, "schedule.kind=cron", arg)
    assert key in error_line(proc)
    assert not (home / ".config").exists()


def test_env_file_warnings_inside_the_repo_and_readable_by_others(home, tmp_path):
    keys = home / ".numerai" / "keys.env"
    keys.chmod(0o644)
    proc = schedule(home, "schedule.kind=cron")
    assert f"schedule.env_file {keys} is readable by others" in proc.stdout
    keys.chmod(0o600)
    assert "readable by others" not in schedule(home, "schedule.kind=cron").stdout
    project = tmp_path / "project"
    project.mkdir()
    (project / "run.py").write_text("")
    inside = project / "keys.env"
    inside.write_text("NUMERAI_PUBLIC_ID=x\n")
    inside.chmod(0o600)
    proc = run_in_process(["task=schedule", f"hydra.run.dir={tmp_path / 'run2'}",
                           "schedule.kind=cron", f"schedule.env_file={inside}",
                           f"schedule.workdir={project}"], env=env_for(home), cwd=ROOT)
    assert f"schedule.env_file {inside} is inside {project}" in proc.stdout
    missing = schedule(home, "schedule.kind=cron", f"schedule.env_file={tmp_path}/none.env")
    assert "does not exist yet" in missing.stdout
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600  # its mode is read, not changed
