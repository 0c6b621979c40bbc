"""task=schedule's rendering (numerlab.schedules), on any host: the systemd timer, the launchd
agent and the crontab block; their next runs agree with each other and with croniter over
Numerai's weekday schedule in UTC, across daylight saving changes of the local zone."""

from __future__ import annotations

import plistlib
import shlex
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from numerlab import schedules
from numerlab.errors import NumerlabError
from numerlab.schedules import Job

# Numerai's rounds open Tuesday to Saturday at 12:00 UTC (DESIGN.md): the oracle's cron line.
NUMERAI_OPEN = "{minute} 12 * * 2-6"

ZONES = ["UTC", "America/New_York", "Europe/London", "America/Los_Angeles", "Asia/Kolkata",
         "Australia/Lord_Howe", "Pacific/Kiritimati", "Pacific/Chatham", "Asia/Tokyo"]
# just before a daylight saving change (the next five runs span it), in either direction
STARTS = [datetime(2026, 3, 6, tzinfo=UTC),    # US spring forward Sun 2026-03-08
          datetime(2026, 3, 27, tzinfo=UTC),   # EU spring forward Sun 2026-03-29
          datetime(2026, 4, 3, tzinfo=UTC),    # AU/NZ fall back Sun 2026-04-05
          datetime(2026, 9, 25, tzinfo=UTC),   # NZ spring forward Sun 2026-09-27
          datetime(2026, 10, 23, tzinfo=UTC),  # EU fall back Sun 2026-10-25
          datetime(2026, 10, 30, 13, tzinfo=UTC)]  # US fall back Sun 2026-11-01


def job(delay: int = 15, **changes) -> Job:
    values = dict(name="test", python="/opt/venv/bin/python", workdir="/home/u/numerlab",
                  env_file="/home/u/.numerai/keys.env", overrides=("tournament.submit=true",),
                  delay_minutes=delay)
    return schedules.check_job(Job(**{**values, **changes}))


def oracle(start: datetime, delay: int, n: int = 5) -> list[datetime]:
    fires = croniter(NUMERAI_OPEN.format(minute=delay), start)
    return [fires.get_next(datetime) for _ in range(n)]


def all_kinds(the_job: Job, zone, now: datetime, home: Path) -> dict[str, schedules.Rendered]:
    return {"systemd": schedules.render_systemd(the_job, home / "units"),
            "launchd": schedules.render_launchd(the_job, home / "agents", home / "logs", zone,
                                                now),
            "cron": schedules.render_cron(the_job, zone, now)}


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("start", STARTS, ids=lambda s: s.date().isoformat())
def test_every_kind_runs_at_round_open_plus_delay_in_utc_across_dst(zone_name, start,
                                                                     tmp_path):
    zone = ZoneInfo(zone_name)
    for delay in (0, 15, 59):
        rendered = all_kinds(job(delay), zone, start, tmp_path)
        expected = oracle(start, delay)
        for kind, one in rendered.items():
            runs = schedules.next_runs(one, start, 5)
            assert runs == expected, (kind, zone_name, delay)
            assert all(r.tzinfo is not None for r in runs)


def test_the_systemd_timer_says_utc_and_the_weekdays():
    the_job = job(15)
    rendered = schedules.render_systemd(the_job, Path("/u"))
    timer = rendered.files[Path("/u/numerlab-test.timer")]
    service = rendered.files[Path("/u/numerlab-test.service")]
    assert "OnCalendar=Tue..Sat *-*-* 12:15:00 UTC\n" in timer
    assert "Persistent=true\n" in timer
    assert "Unit=numerlab-test.service\n" in timer
    assert "WantedBy=timers.target" in timer
    assert "EnvironmentFile=/home/u/.numerai/keys.env\n" in service
    assert "WorkingDirectory=/home/u/numerlab\n" in service
    assert ("ExecStart=/opt/venv/bin/python /home/u/numerlab/run.py task=submit "
            "tournament.submit=true\n") in service
    for text in (timer, service):
        assert text.startswith("# numerlab schedule test:")


@pytest.mark.parametrize("arg, word", [
    ("plain=1", "plain=1"),
    ("tournament.model_name=my model", '"tournament.model_name=my model"'),
    ('a="q"', '"a=\\"q\\""'),
    ("p=100%", "p=100%%"),
    ("h=$HOME", "h=$$HOME"),
    ("b=a\\b", '"b=a\\\\b"'),
    (";", '";"'),
])
def test_systemd_execstart_quotes_each_word(arg, word):
    assert schedules.systemd_quote(arg) == word


def test_launchd_converts_to_new_york_time_for_both_offsets(tmp_path):
    rendered = schedules.render_launchd(job(15), tmp_path / "a", tmp_path / "l",
                                        ZoneInfo("America/New_York"), STARTS[0])
    ((path, text),) = rendered.files.items()
    assert path == tmp_path / "a" / "io.numerlab.test.plist"
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == "io.numerlab.test"
    entries = {(e["Weekday"], e["Hour"], e["Minute"]) for e in plist["StartCalendarInterval"]}
    # 12:15 UTC is 07:15 EST and 08:15 EDT; launchd's Weekday: Sunday 0, Tuesday 2
    assert entries == {(d, h, 15) for d in range(2, 7) for h in (7, 8)}
    assert plist["ProgramArguments"][:2] == ["/bin/sh", "-c"]
    assert plist["ProgramArguments"][-4:] == ["/opt/venv/bin/python",
                                              "/home/u/numerlab/run.py", "task=submit",
                                              "tournament.submit=true"]
    assert "<!-- numerlab schedule test:" in text
    assert schedules.verify(rendered) == []


def test_launchd_moves_the_weekday_where_the_local_day_differs(tmp_path):
    rendered = schedules.render_launchd(job(15), tmp_path, tmp_path,
                                        ZoneInfo("Pacific/Kiritimati"), STARTS[0])
    plist = plistlib.loads(next(iter(rendered.files.values())).encode())
    entries = {(e["Weekday"], e["Hour"], e["Minute"]) for e in plist["StartCalendarInterval"]}
    # UTC+14: Tuesday-Saturday 12:15 UTC is Wednesday-Sunday 02:15 local
    assert entries == {(3, 2, 15), (4, 2, 15), (5, 2, 15), (6, 2, 15), (0, 2, 15)}


def test_cron_block_is_framed_and_parses(tmp_path):
    rendered = schedules.render_cron(job(15), ZoneInfo("Europe/London"), STARTS[0])
    lines = rendered.block.splitlines()
    assert lines[0] == "# numerlab schedule test begin"
    assert lines[-1] == "# numerlab schedule test end"
    jobs = [line for line in lines if not line.startswith("#")]
    assert [line.split()[:5] for line in jobs] == [["15", "12", "*", "*", "2-6"],
                                                    ["15", "13", "*", "*", "2-6"]]
    for line in jobs:
        assert croniter.is_valid(" ".join(line.split()[:5]))
        # cron turns a bare % into a newline: every % of the command is escaped
        assert "%" not in line.replace("\\%", "")
    assert schedules.verify(rendered) == []


def test_cron_command_is_the_job_after_shell_quoting(tmp_path):
    odd = job(15, overrides=("tournament.model_name=my model", "x='q'", "p=50%"),
              workdir="/home/u/my project")
    rendered = schedules.render_cron(odd, ZoneInfo("UTC"), STARTS[0])
    ((_, command),) = schedules.cron_lines(rendered.block)
    argv = shlex.split(command.replace("\\%", "%"))
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == ["numerlab-test", "/home/u/.numerai/keys.env", "/home/u/my project",
                        "/opt/venv/bin/python", "/home/u/my project/run.py", "task=submit",
                        "tournament.model_name=my model", "x='q'", "p=50%"]


@pytest.fixture
def local_zone(monkeypatch):
    """Set this process's local zone (TZ + time.tzset) for a test, then put it back."""
    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("zone_name", ["America/New_York", "Europe/London"])
def test_machine_zone_follows_tz_and_local_times_match_the_c_library(local_zone, zone_name,
                                                                      tmp_path):
    local_zone(zone_name)
    zone, name = schedules.machine_zone()
    assert name == zone_name
    for start in STARTS:
        for kind, rendered in all_kinds(job(15), zone, start, tmp_path).items():
            for moment in schedules.next_runs(rendered, start, 5):
                libc = time.localtime(moment.timestamp())
                assert moment.astimezone(zone).strftime("%a %H:%M") == time.strftime(
                    "%a %H:%M", libc), (kind, moment)
                assert (moment.hour, moment.minute) == (12, 15)


def test_a_cron_line_of_the_offset_not_in_force_is_guarded_off(tmp_path):
    """Both New York lines fire every weekday; the guard lets only 12:15 UTC through."""
    rendered = schedules.render_cron(job(15), ZoneInfo("America/New_York"), STARTS[0])
    zone = ZoneInfo("America/New_York")
    fired = []
    for expression, command in schedules.cron_lines(rendered.block):
        fires = croniter(expression, STARTS[0].astimezone(zone))
        guard = schedules.guard_of(shlex.split(command.replace("\\%", "%"))[2])
        for _ in range(5):
            moment = fires.get_next(datetime).astimezone(UTC)
            fired.append((moment, guard[0] <= moment.hour * 60 + moment.minute < guard[1]))
    assert {m.strftime("%H:%M") for m, ok in fired if ok} == {"12:15"}
    assert {m.strftime("%H:%M") for m, ok in fired if not ok} == {"11:15", "13:15"}


@pytest.mark.parametrize("changes, key", [
    ({"name": "my schedule"}, "schedule.name"),
    ({"name": "../x"}, "schedule.name"),
    ({"delay_minutes": 60}, "schedule.delay_minutes=60"),
    ({"delay_minutes": -1}, "schedule.delay_minutes=-1"),
    ({"python": "venv/bin/python"}, "schedule.python"),
    ({"env_file": "keys.env"}, "schedule.env_file"),
    ({"overrides": ("a=1\nb=2",)}, "schedule.overrides"),
    ({"overrides": ("task=train",)}, "schedule.overrides"),
    ({"overrides": ("--multirun",)}, "schedule.overrides"),
])
def test_a_job_that_cannot_be_written_is_one_line_naming_the_key(changes, key):
    with pytest.raises(NumerlabError) as caught:
        job(**changes)
    assert key in str(caught.value) and "\n" not in str(caught.value)


def test_delay_bound_is_the_shortest_round_less_a_minute():
    # Tuesday-Friday rounds: open 12:00, close 13:00 UTC (DESIGN.md)
    assert schedules.max_delay_minutes() == 59


USER_TABLE = ("MAILTO=me@example.com\n"
              "# my backup\n"
              "0 3 * * * /usr/bin/backup --all  \n"
              "\n"
              "# numerlab schedule other begin\n"
              "1 2 * * * other\n"
              "# numerlab schedule other end\n"
              "30 4 * * 1 echo 'no newline at the end'")


def test_crontab_block_added_replaced_and_removed_keeps_every_other_line():
    first = schedules.render_cron(job(15), ZoneInfo("UTC"), STARTS[0]).block
    second = schedules.render_cron(job(30), ZoneInfo("UTC"), STARTS[0]).block
    added = schedules.with_block(USER_TABLE, "test", first)
    assert added == USER_TABLE + "\n" + first
    replaced = schedules.with_block(added, "test", second)
    assert replaced == USER_TABLE + "\n" + second
    removed, found = schedules.without_block(replaced, "test")
    assert found and removed == USER_TABLE + "\n"
    again, found = schedules.without_block(removed, "test")
    assert not found and again == removed


def test_a_block_in_the_middle_is_replaced_in_place():
    block = schedules.render_cron(job(15), ZoneInfo("UTC"), STARTS[0]).block
    table = "A=1\n" + block + "0 1 * * * mine\n"
    new = schedules.render_cron(job(20), ZoneInfo("UTC"), STARTS[0]).block
    assert schedules.with_block(table, "test", new) == "A=1\n" + new + "0 1 * * * mine\n"
    assert schedules.without_block(table, "test") == ("A=1\n0 1 * * * mine\n", True)


@pytest.mark.parametrize("table", [
    "# numerlab schedule test begin\n1 2 * * * x\n",
    "1 2 * * * x\n# numerlab schedule test end\n",
    "# numerlab schedule test end\n# numerlab schedule test begin\n",
    ("# numerlab schedule test begin\n# numerlab schedule test end\n" * 2),
])
def test_a_damaged_block_is_refused_and_the_table_left_alone(table):
    with pytest.raises(NumerlabError, match="damaged or repeated"):
        schedules.without_block(table, "test")
    with pytest.raises(NumerlabError, match="damaged or repeated"):
        schedules.with_block(table, "test", "x\n")


def test_what_does_not_verify_is_reported(tmp_path):
    rendered = schedules.render_launchd(job(15), tmp_path, tmp_path, ZoneInfo("UTC"),
                                        STARTS[0])
    path = next(iter(rendered.files))
    rendered.files[path] = rendered.files[path].replace("<integer>15</integer>",
                                                         "<integer>75</integer>")
    assert any("StartCalendarInterval" in p for p in schedules.verify(rendered))
    rendered.files[path] = "<plist>"
    assert "is not a property list" in schedules.verify(rendered)[0]
    cron = schedules.render_cron(job(15), ZoneInfo("UTC"), STARTS[0])
    cron.block = cron.block.replace("15 12 * * 2-6", "75 12 * * 2-6")
    assert "does not parse" in schedules.verify(cron)[0]


def test_local_entries_cover_every_offset_of_the_coming_year():
    the_job = job(15)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert schedules.zone_offsets(the_job, ZoneInfo("Europe/London"), now) == [
        timedelta(0), timedelta(hours=1)]
    assert schedules.zone_offsets(the_job, ZoneInfo("Asia/Kolkata"), now) == [
        timedelta(hours=5, minutes=30)]


def test_a_crontab_line_longer_than_cron_reads_does_not_verify():
    long = job(15, overrides=tuple(f"+extra.k{i}={'v' * 40}" for i in range(20)))
    rendered = schedules.render_cron(long, ZoneInfo("UTC"), STARTS[0])
    assert any("cron reads at most 1000" in p for p in schedules.verify(rendered))
    assert schedules.verify(schedules.render_cron(job(15), ZoneInfo("UTC"), STARTS[0])) == []
