"""task=schedule install/remove against fake `crontab`, `systemctl` and `launchctl` commands on
PATH and a HOME of the test's own (never this machine's crontab, systemd or launchd); the
command a schedule runs, run by /bin/sh with a fake `date`; systemd's own reading of the
timer; `python run.py task=schedule` end to end."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT, error_line, run_cli, run_in_process

from numerlab import schedules
from numerlab.errors import NumerlabError
from numerlab.schedules import Job

pytestmark = pytest.mark.slow

KEYS = {"NUMERAI_PUBLIC_ID": "PUBLICID7Q2W3E4R5T", "NUMERAI_SECRET_KEY": "SECRETKEY9Z8X7C6V5B4N"}
USER_TABLE = ("MAILTO=me@example.com\n"
              "# my backup\n"
              "0 3 * * * /usr/bin/backup --all  \n"
              "\n"
              "30 4 * * 1 echo 'no newline at the end'")

FAKE_CRONTAB = """#!{python}
# crontab -l / crontab - over one file, as cron does for one user
import os, sys
table = os.path.join(os.environ["FAKE_DIR"], "crontab")
if sys.argv[1:] == ["-l"]:
    if not os.path.exists(table):
        sys.stderr.write("no crontab for tester\\n")
        sys.exit(1)
    sys.stdout.buffer.write(open(table, "rb").read())
elif sys.argv[1:] == ["-"]:
    open(table, "wb").write(sys.stdin.buffer.read())
else:
    sys.exit(2)
"""
FAKE_CALLS = """#!{python}
# record the call; systemctl --user show-environment answers as FAKE_SYSTEMD says
import json, os, sys
with open(os.path.join(os.environ["FAKE_DIR"], "calls"), "a") as calls:
    calls.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
if sys.argv[1:] == ["--user", "show-environment"]:
    sys.exit(0 if os.environ.get("FAKE_SYSTEMD") == "1" else 1)
"""
FAKE_DATE = """#!/bin/sh
echo "$FAKE_UTC_HHMM"
"""
FAKE_PYTHON = """#!{python}
# the job: what it was started with
import json, os, sys
out = os.path.join(os.environ["FAKE_DIR"], "job.json")
json.dump({{"argv": sys.argv, "cwd": os.getcwd(),
            "keys": {{k: os.environ.get(k) for k in {keys!r}}}}}, open(out, "w"))
"""


@pytest.fixture
def machine(tmp_path) -> dict:
    """HOME, XDG_CONFIG_HOME and PATH of the test's own: fake crontab, systemctl and
    launchctl first on PATH (the real ones never run), an env file with the keys."""
    home, fakes, bin_dir = tmp_path / "home", tmp_path / "fake", tmp_path / "bin"
    for path in (home / ".numerai", fakes, bin_dir):
        path.mkdir(parents=True)
    keys = home / ".numerai" / "keys.env"
    keys.write_text("".join(f"{k}={v}\n" for k, v in KEYS.items()))
    keys.chmod(0o600)
    for name, text in (("crontab", FAKE_CRONTAB), ("systemctl", FAKE_CALLS),
                       ("launchctl", FAKE_CALLS)):
        (bin_dir / name).write_text(text.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "TZ": "UTC",
           "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DIR": str(fakes)}
    return {"home": home, "fakes": fakes, "bin": bin_dir, "env": env, "keys": keys,
            "run": tmp_path / "runs"}


def schedule(machine: dict, *args: str, env: dict | None = None, n: list = [0]):  # noqa: B006
    n[0] += 1
    return run_in_process(["task=schedule", f"hydra.run.dir={machine['run'] / str(n[0])}",
                           f"schedule.env_file={machine['keys']}", *args],
                          env={**machine["env"], **(env or {})}, cwd=ROOT)


def crontab(machine: dict) -> str | None:
    table = machine["fakes"] / "crontab"
    return table.read_bytes().decode() if table.exists() else None


def calls(machine: dict) -> list[list[str]]:
    path = machine["fakes"] / "calls"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def block_of(stdout: str) -> str:
    lines = stdout.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.endswith(" begin"))
    end = next(i for i, line in enumerate(lines) if line.endswith(" end"))
    return "\n".join(lines[begin:end + 1]) + "\n"


# --- cron ---------------------------------------------------------------------------------

def test_cron_install_and_remove_keep_every_other_line_of_the_users_table(machine):
    (machine["fakes"] / "crontab").write_bytes(USER_TABLE.encode())
    shown = schedule(machine, "schedule.kind=cron")
    assert crontab(machine) == USER_TABLE  # show wrote nothing
    installed = schedule(machine, "schedule.kind=cron", "schedule.action=install")
    assert installed.returncode == 0, installed.stderr[-2000:]
    block = block_of(shown.stdout)
    assert crontab(machine) == USER_TABLE + "\n" + block
    again = schedule(machine, "schedule.kind=cron", "schedule.action=install")
    assert again.returncode == 0 and crontab(machine) == USER_TABLE + "\n" + block
    record = json.loads((machine["run"] / "2" / "schedule.json").read_text())
    assert record["action"] == "install" and record["kind"] == "cron"
    removed = schedule(machine, "schedule.kind=cron", "schedule.action=remove")
    assert removed.returncode == 0, removed.stderr[-2000:]
    assert crontab(machine) == USER_TABLE + "\n"
    assert "removed the 'numerlab schedule default' block" in removed.stdout


def test_two_named_schedules_and_no_crontab_yet(machine):
    for name in ("a", "b"):
        proc = schedule(machine, "schedule.kind=cron", "schedule.action=install",
                        f"schedule.name={name}")
        assert proc.returncode == 0, proc.stderr[-2000:]
    table = crontab(machine)
    assert table.startswith("# numerlab schedule a begin\n")
    assert "# numerlab schedule b begin\n" in table
    schedule(machine, "schedule.kind=cron", "schedule.action=remove", "schedule.name=a")
    assert crontab(machine) == table[table.index("# numerlab schedule b begin"):]
    gone = schedule(machine, "schedule.kind=cron", "schedule.action=remove", "schedule.name=a")
    assert gone.returncode == 0 and "nothing to remove" in gone.stdout


def test_a_damaged_block_is_refused_and_the_table_left_as_it_is(machine):
    damaged = USER_TABLE + "\n# numerlab schedule default begin\n1 2 * * * x\n"
    (machine["fakes"] / "crontab").write_bytes(damaged.encode())
    for action in ("install", "remove"):
        proc = schedule(machine, "schedule.kind=cron", f"schedule.action={action}")
        assert "damaged or repeated" in error_line(proc)
        assert crontab(machine) == damaged


def test_install_needs_the_env_file_and_writes_nothing_without_it(machine, tmp_path):
    proc = schedule(machine, "schedule.kind=cron", "schedule.action=install",
                    f"schedule.env_file={tmp_path}/missing.env")
    assert "schedule.env_file" in error_line(proc) and "does not exist" in error_line(proc)
    assert crontab(machine) is None


def test_install_without_crontab_on_path_is_one_line(machine):
    (machine["bin"] / "crontab").unlink()
    proc = schedule(machine, "schedule.kind=cron", "schedule.action=install",
                    env={"PATH": str(machine["bin"])})
    assert "crontab not found on PATH" in error_line(proc)


# --- systemd and launchd --------------------------------------------------------------------

def test_systemd_install_writes_the_units_and_enables_the_timer_remove_undoes_it(machine):
    units = machine["home"] / ".config" / "systemd" / "user"
    proc = schedule(machine, "schedule.kind=systemd", "schedule.action=install")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in units.iterdir()) == ["numerlab-default.service",
                                                       "numerlab-default.timer"]
    assert "OnCalendar=Tue..Sat *-*-* 12:15:00 UTC" in (
        units / "numerlab-default.timer").read_text()
    assert calls(machine) == [["systemctl", "--user", "daemon-reload"],
                              ["systemctl", "--user", "enable", "--now",
                               "numerlab-default.timer"]]
    removed = schedule(machine, "schedule.kind=systemd", "schedule.action=remove")
    assert removed.returncode == 0, removed.stderr[-2000:]
    assert list(units.iterdir()) == []
    assert calls(machine)[2:] == [["systemctl", "--user", "disable", "--now",
                                   "numerlab-default.timer"],
                                  ["systemctl", "--user", "daemon-reload"]]


def test_systemd_with_activate_false_prints_the_commands_instead(machine):
    proc = schedule(machine, "schedule.kind=systemd", "schedule.action=install",
                    "schedule.activate=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert calls(machine) == []
    assert ("to do: systemctl --user enable --now numerlab-default.timer   "
            "(schedule.activate=false)") in proc.stdout


@pytest.mark.parametrize("action", ["install", "remove"])
def test_a_unit_numerlab_did_not_write_is_neither_overwritten_nor_removed(machine, action):
    units = machine["home"] / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    foreign = units / "numerlab-default.timer"
    foreign.write_text("[Timer]\nOnCalendar=daily\n")
    proc = schedule(machine, "schedule.kind=systemd", f"schedule.action={action}")
    line = error_line(proc)
    assert str(foreign) in line and "not written by numerlab" in line
    assert foreign.read_text() == "[Timer]\nOnCalendar=daily\n"
    assert not (units / "numerlab-default.service").exists()
    assert calls(machine) == []


def test_launchd_install_writes_the_agent_and_bootstraps_it_remove_boots_it_out(machine):
    agents = machine["home"] / "Library" / "LaunchAgents"
    plist = agents / "io.numerlab.default.plist"
    proc = schedule(machine, "schedule.kind=launchd", "schedule.action=install")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert plist.is_file() and "<!-- numerlab schedule default:" in plist.read_text()
    domain = f"gui/{os.getuid()}"
    assert calls(machine) == [["launchctl", "bootout", f"{domain}/io.numerlab.default"],
                              ["launchctl", "bootstrap", domain, str(plist)]]
    plist.write_text(plist.read_text())  # reinstall over numerlab's own file: fine
    assert schedule(machine, "schedule.kind=launchd", "schedule.action=install").returncode == 0
    proc = schedule(machine, "schedule.kind=launchd", "schedule.action=remove")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not plist.exists()
    assert calls(machine)[-1] == ["launchctl", "bootout", f"{domain}/io.numerlab.default"]
    plist.write_text("<plist>the user's own</plist>")
    assert "not written by numerlab" in error_line(
        schedule(machine, "schedule.kind=launchd", "schedule.action=remove"))
    assert plist.read_text() == "<plist>the user's own</plist>"


@pytest.mark.parametrize("kind", ["systemd", "launchd", "cron"])
def test_the_keys_land_nowhere(machine, kind):
    proc = schedule(machine, f"schedule.kind={kind}", "schedule.action=install", env=KEYS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = [p for p in (machine["home"].rglob("*")) if p.is_file() and p != machine["keys"]]
    written += [p for p in machine["run"].rglob("*") if p.is_file()]
    written += [p for p in machine["fakes"].rglob("*") if p.is_file()]
    assert len(written) > 3
    everything = proc.stdout + proc.stderr + "".join(
        p.read_text(errors="replace") for p in written)
    for value in KEYS.values():
        assert value not in everything


def test_auto_is_systemd_where_systemctl_user_works_else_cron(machine):
    proc = schedule(machine, env={"FAKE_SYSTEMD": "1"})
    assert "schedule default: systemd" in proc.stdout
    proc = schedule(machine, env={"FAKE_SYSTEMD": "0"})
    assert "schedule default: cron" in proc.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_that_do_not_verify_are_not_installed(tmp_path):
    job = schedules.check_job(Job("bad", "/nonexistent/python", str(ROOT),
                                  str(tmp_path / "keys.env"), (), 15))
    rendered = schedules.render_systemd(job, tmp_path / "units")
    with pytest.raises(NumerlabError, match="does not verify: systemd-analyze verify"):
        schedules.install(rendered, activate=False)
    assert not (tmp_path / "units").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("delay", [0, 15, 59])
def test_systemd_reads_the_timer_as_numerlab_does(tmp_path, delay):
    job = schedules.check_job(Job("t", sys.executable, str(ROOT), str(tmp_path / "k.env"),
                                  (), delay))
    timer = schedules.render_systemd(job, tmp_path).files[tmp_path / "numerlab-t.timer"]
    calendar = re.search(r"^OnCalendar=(.*)$", timer, re.M)[1]
    start = datetime(2026, 3, 6, 13, tzinfo=UTC)
    out = subprocess.run(["systemd-analyze", "calendar", "--iterations=5",
                          "--base-time=2026-03-06 13:00:00 UTC", calendar],
                         capture_output=True, text=True, check=True, env={"TZ": "UTC"}).stdout
    theirs = [datetime.strptime(m, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
              for m in re.findall(r"(?:Next elapse|Iter\. #\d): (.* UTC)", out)]
    assert len(theirs) == 5
    assert schedules.systemd_runs(timer, start, 5) == theirs


# --- the command a schedule runs --------------------------------------------------------------

@pytest.fixture
def job_machine(machine, tmp_path) -> tuple[dict, Job]:
    """A fake `date` and a fake job Python that records how it was started."""
    (machine["bin"] / "date").write_text(FAKE_DATE)
    (machine["bin"] / "date").chmod(0o755)
    python = machine["bin"] / "python"
    python.write_text(FAKE_PYTHON.format(python=sys.executable, keys=list(KEYS)))
    python.chmod(0o755)
    workdir = tmp_path / "my project"
    workdir.mkdir()
    job = schedules.check_job(Job(
        "t", str(python), str(workdir), str(machine["keys"]),
        ("tournament.model_name=my model", "x='q'", "p=50%", "h=$HOME"), 15))
    return machine, job


def ran(machine: dict, argv: list[str], utc_hhmm: str) -> dict | None:
    out = machine["fakes"] / "job.json"
    out.unlink(missing_ok=True)
    env = {"PATH": machine["env"]["PATH"], "FAKE_DIR": machine["env"]["FAKE_DIR"],
           "FAKE_UTC_HHMM": utc_hhmm, "HOME": "/nowhere"}
    subprocess.run(argv, env=env, check=True, cwd="/", timeout=60)
    return json.loads(out.read_text()) if out.exists() else None


def expect_started(record: dict | None, job: Job) -> None:
    assert record is not None
    assert record["argv"][1:] == [f"{job.workdir}/run.py", "task=submit", *job.overrides]
    assert record["cwd"] == job.workdir
    assert record["keys"] == KEYS  # from the env file, and only from it


def test_the_cron_line_runs_the_job_with_the_keys_in_its_minutes_only(job_machine):
    machine, job = job_machine
    block = schedules.render_cron(job, ZoneInfo("America/New_York"),
                                  datetime(2026, 3, 6, tzinfo=UTC)).block
    for _, command in schedules.cron_lines(block):
        # cron unescapes \% and hands the rest to /bin/sh -c
        argv = ["/bin/sh", "-c", command.replace("\\%", "%")]
        expect_started(ran(machine, argv, "1215"), job)
        expect_started(ran(machine, argv, "1259"), job)
        for off in ("1115", "1214", "1300", "1315"):
            assert ran(machine, argv, off) is None, off


def test_the_launchd_agent_runs_the_job_with_the_keys_in_its_minutes_only(job_machine):
    import plistlib

    machine, job = job_machine
    rendered = schedules.render_launchd(job, machine["home"], machine["home"],
                                        ZoneInfo("Europe/London"),
                                        datetime(2026, 3, 6, tzinfo=UTC))
    argv = plistlib.loads(next(iter(rendered.files.values())).encode())["ProgramArguments"]
    expect_started(ran(machine, argv, "1215"), job)
    for off in ("1115", "1315"):
        assert ran(machine, argv, off) is None, off


def test_the_systemd_execstart_splits_back_into_the_job(job_machine):
    """systemd's ExecStart quoting (double quotes, C escapes) read as a shell reads it: the
    words the overrides used here need no escape the two differ on."""
    _, job = job_machine
    service = next(t for p, t in schedules.render_systemd(job, Path("/u")).files.items()
                   if p.suffix == ".service")
    line = re.search(r"^ExecStart=(.*)$", service, re.M)[1]
    words = [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line)]
    assert words == job.argv


# --- end to end ----------------------------------------------------------------------------

def test_python_run_py_task_schedule_shows_then_installs_then_removes(machine):
    env = machine["env"]
    common = ["task=schedule", "schedule.kind=cron", f"schedule.env_file={machine['keys']}",
              'schedule.overrides=["tournament.submit=true"]']
    shown = run_cli([*common, f"hydra.run.dir={machine['run']}/show"], env={**env, **KEYS})
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "next 5 runs" in shown.stdout and crontab(machine) is None
    installed = run_cli([*common, "schedule.action=install",
                         f"hydra.run.dir={machine['run']}/install"], env={**env, **KEYS})
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert crontab(machine) == block_of(shown.stdout)
    assert "tournament.submit=true" in crontab(machine)
    for value in KEYS.values():
        assert value not in shown.stdout + installed.stdout + crontab(machine)
    removed = run_cli([*common, "schedule.action=remove",
                       f"hydra.run.dir={machine['run']}/remove"], env=env)
    assert removed.returncode == 0, removed.stderr[-2000:]
    assert crontab(machine) == ""


def test_a_cron_that_adds_header_lines_to_crontab_l_still_reads_back(machine):
    """Some crons list their own header above the table; the block read back is compared."""
    script = machine["bin"] / "crontab"
    script.write_text(script.read_text().replace(
        'sys.stdout.buffer.write(open(table, "rb").read())',
        'sys.stdout.buffer.write(b"# DO NOT EDIT THIS FILE\\n" + open(table, "rb").read())'))
    proc = schedule(machine, "schedule.kind=cron", "schedule.action=install")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "# numerlab schedule default begin" in crontab(machine)


def test_a_crontab_that_loses_the_block_is_an_error(machine):
    script = machine["bin"] / "crontab"
    script.write_text(script.read_text().replace(
        'open(table, "wb").write(sys.stdin.buffer.read())', 'sys.stdin.buffer.read()'))
    proc = schedule(machine, "schedule.kind=cron", "schedule.action=install")
    assert "read back (crontab -l) differs" in error_line(proc)
