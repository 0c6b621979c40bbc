"""A schedule the OS runs: `task=submit` at each round's open plus a delay, Tuesday to
Saturday in UTC, as a systemd user timer, a launchd agent or a crontab block.

Each kind is rendered here as text (pure), parsed back to compute its next run times from
what was rendered, verified (`systemd-analyze verify`, `plistlib`, croniter) and installed
or removed with the OS's own command (`systemctl --user`, `launchctl`, `crontab`) found on
PATH. numerlab only ever touches what it wrote: every file and the crontab block carry the
marker `numerlab schedule <name>`.

Time zones. systemd takes `UTC` in OnCalendar. launchd and cron run in the machine's local
time, whose offset to UTC changes with daylight saving time, so the agent and the crontab
block hold one local-time entry per weekday for each UTC offset the zone uses in the coming
year, and a guard in the command (`date -u`) lets a run through only in the UTC minutes
after the scheduled time while the shortest round is still open: whichever offset is in
force, exactly one entry a day passes. No `CRON_TZ`: Debian's and macOS's cron ignore it, and
where cron honours it, it would also move the user's own lines below the block.

The API keys never appear in what is written: the job reads them from an env file (systemd
`EnvironmentFile=`; launchd and cron source it with `set -a; . file` in `/bin/sh`).
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from numerlab import artifacts
from numerlab.errors import NumerlabError, message_line
from numerlab.tournament.rounds import (
    OPEN_HOUR_UTC,
    OPEN_WEEKDAYS,
    scheduled_window,
    utc,
)

KINDS = ("systemd", "launchd", "cron")
MARK = "numerlab schedule"  # every file and crontab block numerlab writes carries it
TASK = "task=submit"
RUN_PY = "run.py"
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # systemd's, Monday = 0
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
COMMAND_TIMEOUT_S = 60
CRON_MAX_LINE = 1000  # Vixie cron's (Debian, macOS) MAX_COMMAND: a longer line is cut
ZONE_HORIZON_DAYS = 371  # the zone's offsets over the coming year decide the local entries
RUNS_HORIZON_DAYS = 28  # next-run times are looked for this far ahead


# --- what runs, and when ----------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """`python run.py task=submit *overrides` in `workdir`, keys from `env_file`, at the
    open of each round plus `delay_minutes` (UTC)."""

    name: str
    python: str
    workdir: str
    env_file: str
    overrides: tuple[str, ...]
    delay_minutes: int

    @property
    def argv(self) -> list[str]:
        return [self.python, str(Path(self.workdir) / RUN_PY), TASK, *self.overrides]

    @property
    def unit(self) -> str:
        """The systemd unit stem, crontab block name and launchd label's last part."""
        return f"numerlab-{self.name}"

    @property
    def utc_minute(self) -> int:
        """Minutes after 00:00 UTC of the run (the same every run weekday)."""
        return OPEN_HOUR_UTC * 60 + self.delay_minutes

    @property
    def marker(self) -> str:
        return f"{MARK} {self.name}"


def max_delay_minutes() -> int:
    """The longest delay that still runs while every round is open: the shortest round of
    the weekday schedule, in minutes, less one."""
    monday = date(2024, 1, 1)  # a Monday: the week's rounds by the weekday schedule
    windows = [scheduled_window(monday + timedelta(days=day)) for day in OPEN_WEEKDAYS]
    return min(int((closes - opens).total_seconds() // 60) for opens, closes in windows) - 1


def check_job(job: Job) -> Job:
    """NumerlabError, one line naming the `schedule.` key, for a job that cannot be written
    into a unit, plist or crontab line."""
    if not NAME_PATTERN.fullmatch(job.name):
        raise NumerlabError(f"schedule.name={job.name!r} must be letters, digits, '_', '.' or "
                            f"'-' (it names the unit files and the crontab block)")
    if not 0 <= job.delay_minutes <= max_delay_minutes():
        raise NumerlabError(f"schedule.delay_minutes={job.delay_minutes} must be within "
                            f"[0, {max_delay_minutes()}] (the shortest round is open "
                            f"{max_delay_minutes() + 1} minutes)")
    for key, value in (("python", job.python), ("workdir", job.workdir),
                       ("env_file", job.env_file)):
        if not os.path.isabs(value):
            raise NumerlabError(f"schedule.{key}={value!r} must be an absolute path")
    for key, value in (("python", job.python), ("workdir", job.workdir),
                       ("env_file", job.env_file), *(("overrides", o) for o in job.overrides)):
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise NumerlabError(f"schedule.{key}: {value!r} holds a control character "
                                f"(a newline?)")
    for override in job.overrides:
        if override.split("=", 1)[0].lstrip("+~") in ("task", "hydra.mode") or \
                override.startswith("-"):
            raise NumerlabError(f"schedule.overrides: {override!r} is not an override for "
                                f"{TASK} (no task=, no command-line flags)")
    return job


def run_weekday_names() -> str:
    """`Tue..Sat`: the round weekdays (UTC), consecutive days as a systemd range."""
    return ",".join(a if a == b else f"{a}..{b}" for a, b in _runs(
        sorted(OPEN_WEEKDAYS), DAY_NAMES.__getitem__))


def _runs(numbers: Sequence[int], name: Callable[[int], str] = str
          ) -> list[tuple[str, str]]:
    """Consecutive runs of sorted `numbers` as (first, last) names."""
    out: list[list[int]] = []
    for number in numbers:
        if out and number == out[-1][1] + 1:
            out[-1][1] = number
        else:
            out.append([number, number])
    return [(name(a), name(b)) for a, b in out]


# --- time zones -------------------------------------------------------------------------

def zone_named(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise NumerlabError(f"schedule.timezone={key!r} is not a time zone name "
                            f"(e.g. Europe/London, America/New_York, UTC)") from None


def machine_zone() -> tuple[tzinfo, str]:
    """This machine's local zone as the C library sees it (TZ, else /etc/localtime, else
    /etc/timezone) and its name; a fixed offset, and a name saying so, when it has none."""
    tz = os.environ.get("TZ")
    if tz is not None:
        candidates = [tz.lstrip(":") or "UTC"]
    else:
        candidates = [os.path.realpath("/etc/localtime")]
        try:
            candidates.append(Path("/etc/timezone").read_text().strip())
        except OSError:
            pass
    for candidate in candidates:
        key = candidate.split("zoneinfo/", 1)[1] if "zoneinfo/" in candidate else candidate
        try:
            return ZoneInfo(key), key
        except (ZoneInfoNotFoundError, ValueError):
            continue
    fixed = datetime.now().astimezone().tzinfo or UTC
    return fixed, (f"{fixed} (a fixed offset: the zone has no name here, so daylight saving "
                   f"time is not followed; set schedule.timezone)")


def zone_offsets(job: Job, zone: tzinfo, now: datetime) -> list[timedelta]:
    """The UTC offsets `zone` has at the job's run times over the coming year."""
    start = utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    offsets = set()
    for day in range(ZONE_HORIZON_DAYS):
        moment = start + timedelta(days=day, minutes=job.utc_minute)
        if moment.weekday() in OPEN_WEEKDAYS:
            offsets.add(moment.astimezone(zone).utcoffset())
    return sorted(offsets)


@dataclass(frozen=True, order=True)
class LocalSlot:
    """One local-time entry: weekday (Monday = 0), hour and minute, for a UTC offset."""

    offset: timedelta
    weekday: int
    hour: int
    minute: int


def local_slots(job: Job, offsets: Iterable[timedelta]) -> list[LocalSlot]:
    """The local weekday and time of each UTC run weekday, for each offset."""
    monday = datetime(2024, 1, 1)
    slots = set()
    for offset in offsets:
        for weekday in OPEN_WEEKDAYS:
            local = monday + timedelta(days=weekday, minutes=job.utc_minute) + offset
            slots.add(LocalSlot(offset, local.weekday(), local.hour, local.minute))
    return sorted(slots)


def guard_minutes(job: Job, offsets: Sequence[timedelta]) -> int:
    """How many minutes after the scheduled UTC time a local-time entry may start the job:
    up to the close of the shortest round, and less than the smallest step between the
    zone's offsets (so the entry of the offset not in force never passes)."""
    width = max_delay_minutes() + 1 - job.delay_minutes
    steps = [int((b - a).total_seconds() // 60) for a, b in zip(offsets, offsets[1:],
                                                                  strict=False)]
    return min([width, *(s for s in steps if s > 0)])


def _hhmm(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}{minute_of_day % 60:02d}"


GUARD = ('now=$(date -u +%H%M); [ "$now" -ge {start} ] && [ "$now" -lt {end} ] || exit 0; ')
GUARD_PATTERN = re.compile(r'\[ "\$now" -ge (\d{4}) \] && \[ "\$now" -lt (\d{4}) \]')
WRAPPER = 'set -a; . "$1" || exit 1; set +a; cd "$2" || exit 1; shift 2; exec "$@"'


def wrapped_argv(job: Job, offsets: Sequence[timedelta]) -> list[str]:
    """`/bin/sh -c '<guard>; <read env file>; cd workdir; exec job'` as an argv: the env
    file, workdir and job travel as arguments, never inside the script's text."""
    start = job.utc_minute
    script = GUARD.format(start=_hhmm(start), end=_hhmm(start + guard_minutes(job, offsets)))
    return ["/bin/sh", "-c", script + WRAPPER, job.unit, job.env_file, job.workdir, *job.argv]


def guard_of(script: str) -> tuple[int, int]:
    """(first, last + 1) UTC minute of day a wrapper script lets the job start in."""
    match = GUARD_PATTERN.search(script)
    if match is None:
        raise NumerlabError("schedule: the rendered command has no UTC guard")
    start, end = (int(g[:2]) * 60 + int(g[2:]) for g in match.groups())
    return start, end


def _passes(moment: datetime, guard: tuple[int, int]) -> bool:
    minute = moment.hour * 60 + moment.minute
    return guard[0] <= minute < guard[1]


# --- rendering ------------------------------------------------------------------------

@dataclass
class Rendered:
    """What one kind writes: files (path -> text) or a crontab block, and notes."""

    kind: str
    job: Job
    zone: tzinfo
    files: dict[Path, str] = field(default_factory=dict)
    block: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def timer(self) -> str:
        """systemd: the .timer's text."""
        return next(t for p, t in self.files.items() if p.suffix == ".timer")

    def texts(self) -> list[str]:
        return [*self.files.values(), *([self.block] if self.block else [])]


def _header(job: Job, comment: str) -> str:
    return (f"{comment} {job.marker}: written by numerlab (python run.py task=schedule); "
            f"remove with schedule.action=remove schedule.name={job.name}")


def systemd_quote(arg: str) -> str:
    """`arg` as one word of systemd's ExecStart=: `%` and `$` doubled (no specifier, no
    variable), and in double quotes with C escapes when it holds a space, quote, backslash
    or `;`."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and not re.search(r"[\s\"'\\;]", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def on_calendar(job: Job) -> str:
    """`Tue..Sat *-*-* 12:15:00 UTC`."""
    hour, minute = divmod(job.utc_minute, 60)
    return f"{run_weekday_names()} *-*-* {hour:02d}:{minute:02d}:00 UTC"


def render_systemd(job: Job, unit_dir: Path) -> Rendered:
    """A `.service` (oneshot: python run.py task=submit) and its `.timer` (OnCalendar in
    UTC, Persistent: a run missed while the machine was off happens at the next boot)."""
    service = "\n".join([
        _header(job, "#"),
        "[Unit]",
        f"Description=numerlab: submit to Numerai ({job.name})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={job.workdir.replace('%', '%%')}",
        f"EnvironmentFile={job.env_file.replace('%', '%%')}",
        "ExecStart=" + " ".join(systemd_quote(a) for a in job.argv),
        ""])
    timer = "\n".join([
        _header(job, "#"),
        "[Unit]",
        f"Description=numerlab: submit to Numerai at each round's open + "
        f"{job.delay_minutes} min ({job.name})",
        "",
        "[Timer]",
        f"OnCalendar={on_calendar(job)}",
        "Persistent=true",
        f"Unit={job.unit}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        ""])
    rendered = Rendered("systemd", job, UTC, files={unit_dir / f"{job.unit}.service": service,
                                                    unit_dir / f"{job.unit}.timer": timer})
    rendered.notes.append("systemd runs a user's timers while they are logged out only with "
                          "`loginctl enable-linger $USER`")
    return rendered


def launchd_label(job: Job) -> str:
    return f"io.numerlab.{job.name}"


def render_launchd(job: Job, agents_dir: Path, logs_dir: Path, zone: tzinfo,
                   now: datetime) -> Rendered:
    """A LaunchAgent plist: StartCalendarInterval in local time (launchd has no time zone
    setting), one entry per weekday and UTC offset of the zone, the UTC guard in the
    command."""
    offsets = zone_offsets(job, zone, now)
    log_file = str(logs_dir / f"{job.unit}.log")
    plist = {
        "Label": launchd_label(job),
        "ProgramArguments": wrapped_argv(job, offsets),
        "WorkingDirectory": job.workdir,
        "StartCalendarInterval": [
            {"Weekday": (s.weekday + 1) % 7, "Hour": s.hour, "Minute": s.minute}
            for s in local_slots(job, offsets)],
        "StandardOutPath": log_file,
        "StandardErrorPath": log_file,
        "RunAtLoad": False,
    }
    text = plistlib.dumps(plist, sort_keys=False).decode()
    head, doctype, rest = text.partition("<!DOCTYPE")
    doctype_line, _, body = rest.partition("\n")
    text = f"{head}{doctype}{doctype_line}\n<!-- {_header(job, '')[1:]} -->\n{body}"
    rendered = Rendered("launchd", job, zone, files={agents_dir / f"{launchd_label(job)}.plist":
                                                     text})
    rendered.notes.append(_local_note(job, offsets, "launchd"))
    return rendered


def _local_note(job: Job, offsets: Sequence[timedelta], kind: str) -> str:
    shown = ", ".join(_offset_text(o) for o in offsets)
    hour, minute = divmod(job.utc_minute, 60)
    return (f"{kind} runs in local time: one entry per weekday for each UTC offset of the "
            f"zone in the coming year ({shown}); the command starts the job only at "
            f"{hour:02d}:{minute:02d} UTC + {guard_minutes(job, offsets)} min, so daylight "
            f"saving changes need no reinstall (a change of the machine's zone does)")


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def cron_days(weekdays: Iterable[int]) -> str:
    """Python weekdays (Monday = 0) as a cron day-of-week field (Sunday = 0): `2-6`."""
    days = sorted({(w + 1) % 7 for w in weekdays})
    return ",".join(a if a == b else f"{a}-{b}" for a, b in _runs(days))


def cron_command(argv: Sequence[str]) -> str:
    """argv as a crontab command: shell-quoted, every `%` escaped (cron turns a bare one
    into a newline)."""
    return " ".join(shlex.quote(a) for a in argv).replace("%", "\\%")


def block_begin(name: str) -> str:
    return f"# {MARK} {name} begin"


def block_end(name: str) -> str:
    return f"# {MARK} {name} end"


def render_cron(job: Job, zone: tzinfo, now: datetime) -> Rendered:
    """The crontab block: marker lines around one line per local time (weekdays merged)."""
    offsets = zone_offsets(job, zone, now)
    by_time: dict[tuple[timedelta, int, int], set[int]] = {}
    for slot in local_slots(job, offsets):
        by_time.setdefault((slot.offset, slot.hour, slot.minute), set()).add(slot.weekday)
    command = cron_command(wrapped_argv(job, offsets))
    lines = [block_begin(job.name), _header(job, "#")]
    lines += [f"{minute} {hour} * * {cron_days(days)} {command}"
              for (_, hour, minute), days in sorted(by_time.items())]
    lines.append(block_end(job.name))
    rendered = Rendered("cron", job, zone, block="\n".join(lines) + "\n")
    rendered.notes.append(_local_note(job, offsets, "cron"))
    return rendered


# --- next runs, from what was rendered ---------------------------------------------------

ON_CALENDAR = re.compile(r"OnCalendar=(?P<days>[A-Za-z.,]+) \*-\*-\* "
                         r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d) UTC$", re.M)


def parse_on_calendar(timer: str) -> tuple[set[int], int, int, int]:
    """(weekdays, hour, minute, second) of the OnCalendar= line numerlab writes."""
    match = ON_CALENDAR.search(timer)
    if match is None:
        raise NumerlabError("schedule: the timer has no OnCalendar= line numerlab can read")
    weekdays: set[int] = set()
    for part in match["days"].split(","):
        first, _, last = part.partition("..")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        weekdays.update(range(a, b + 1))
    return weekdays, int(match["h"]), int(match["m"]), int(match["s"])


def systemd_runs(timer: str, start: datetime, n: int) -> list[datetime]:
    weekdays, hour, minute, second = parse_on_calendar(timer)
    first = utc(start).replace(hour=0, minute=0, second=0, microsecond=0)
    moments = (first + timedelta(days=d, hours=hour, minutes=minute, seconds=second)
               for d in range(RUNS_HORIZON_DAYS))
    return [m for m in moments if m.weekday() in weekdays and m > utc(start)][:n]


def launchd_runs(plist_text: str, zone: tzinfo, start: datetime, n: int) -> list[datetime]:
    """launchd's StartCalendarInterval entries as local times in `zone` (one that does not
    exist, in a daylight saving gap, is skipped), through the command's UTC guard."""
    plist = plistlib.loads(plist_text.encode())
    guard = guard_of(plist["ProgramArguments"][2])
    local_start = utc(start).astimezone(zone).date()
    out = set()
    for day in range(-1, RUNS_HORIZON_DAYS):
        when = local_start + timedelta(days=day)
        for entry in plist["StartCalendarInterval"]:
            if entry["Weekday"] % 7 != (when.weekday() + 1) % 7:
                continue
            naive = datetime(when.year, when.month, when.day, entry["Hour"], entry["Minute"])
            moment = naive.replace(tzinfo=zone).astimezone(UTC)
            if moment.astimezone(zone).replace(tzinfo=None) != naive:
                continue
            if moment > utc(start) and _passes(moment, guard):
                out.add(moment)
    return sorted(out)[:n]


def cron_lines(block: str) -> list[tuple[str, str]]:
    """(five-field expression, command) of each job line of a crontab block."""
    out = []
    for line in block.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split(None, 5)
            out.append((" ".join(fields[:5]), fields[5] if len(fields) > 5 else ""))
    return out


def cron_runs(block: str, zone: tzinfo, start: datetime, n: int) -> list[datetime]:
    """croniter over each line's expression in `zone` (cron's local time), through the
    line's UTC guard."""
    from croniter import croniter

    until = utc(start) + timedelta(days=RUNS_HORIZON_DAYS)
    out = set()
    for expression, command in cron_lines(block):
        guard = guard_of(shlex.split(command.replace("\\%", "%"))[2])
        fires = croniter(expression, utc(start).astimezone(zone))
        while (moment := utc(fires.get_next(datetime))) < until:
            if _passes(moment, guard):
                out.add(moment)
    return sorted(out)[:n]


def next_runs(rendered: Rendered, start: datetime, n: int = 5) -> list[datetime]:
    """The next `n` runs after `start` (UTC), computed from the rendered text."""
    if rendered.kind == "cron":
        return cron_runs(rendered.block or "", rendered.zone, start, n)
    if rendered.kind == "launchd":
        return launchd_runs(next(iter(rendered.files.values())), rendered.zone, start, n)
    return systemd_runs(rendered.timer, start, n)


def render(kind: str, job: Job, zone: tzinfo, now: datetime) -> Rendered:
    """What `kind` writes for `job`, in this user's places (HOME, XDG_CONFIG_HOME)."""
    if kind == "systemd":
        return render_systemd(job, systemd_user_dir())
    if kind == "launchd":
        return render_launchd(job, launch_agents_dir(), launchd_logs_dir(), zone, now)
    return render_cron(job, zone, now)


# --- verification -----------------------------------------------------------------------

def verify(rendered: Rendered) -> list[str]:
    """Problems with what `rendered` would write (empty: it verifies); notes on how it was
    checked go to `rendered.notes`."""
    check = {"systemd": _verify_systemd, "launchd": _verify_launchd, "cron": _verify_cron}
    return check[rendered.kind](rendered)


def _verify_systemd(rendered: Rendered) -> list[str]:
    problems = []
    try:
        parse_on_calendar(rendered.timer)
    except NumerlabError as exc:
        problems.append(str(exc))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        rendered.notes.append("systemd-analyze not found: the units are not verified by "
                              "systemd (numerlab read back OnCalendar= only)")
        return problems
    with tempfile.TemporaryDirectory(prefix="numerlab-units-") as temp:
        paths = []
        for path, text in rendered.files.items():
            (Path(temp) / path.name).write_text(text)
            paths.append(str(Path(temp) / path.name))
        proc = _command([analyze, "verify", "--man=no", *paths])
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode != 0:
        problems.append(f"systemd-analyze verify: {said[0] if said else proc.returncode}")
    else:
        rendered.notes.append("verified with systemd-analyze verify")
    return problems


def _verify_launchd(rendered: Rendered) -> list[str]:
    ((path, text),) = rendered.files.items()
    try:
        plist = plistlib.loads(text.encode())
    except Exception as exc:  # plistlib raises several types for a bad document
        return [f"{path.name} is not a property list: {message_line(exc)}"]
    problems = []
    if plist.get("Label") != path.stem:
        problems.append(f"{path.name}: Label {plist.get('Label')!r} is not {path.stem!r}")
    args = plist.get("ProgramArguments")
    if not (isinstance(args, list) and args and all(isinstance(a, str) for a in args)):
        problems.append(f"{path.name}: ProgramArguments is not a list of strings")
    bounds = {"Weekday": (0, 7), "Hour": (0, 23), "Minute": (0, 59)}
    for entry in plist.get("StartCalendarInterval") or [None]:
        if not isinstance(entry, dict) or set(entry) != set(bounds) or not all(
                isinstance(entry[k], int) and lo <= entry[k] <= hi
                for k, (lo, hi) in bounds.items()):
            problems.append(f"{path.name}: StartCalendarInterval entry {entry!r} is invalid")
    lint = shutil.which("plutil")
    if lint is not None and not problems:
        with tempfile.TemporaryDirectory(prefix="numerlab-plist-") as temp:
            (Path(temp) / path.name).write_text(text)
            proc = _command([lint, "-lint", str(Path(temp) / path.name)])
        if proc.returncode != 0:
            problems.append(f"plutil -lint: {message_line(Exception(proc.stdout + proc.stderr))}")
    rendered.notes.append("verified with plistlib" + (" and plutil -lint" if lint else ""))
    return problems


def _verify_cron(rendered: Rendered) -> list[str]:
    from croniter import croniter

    block = rendered.block or ""
    lines = block.splitlines()
    name = rendered.job.name
    problems = []
    if not lines or lines[0] != block_begin(name) or lines[-1] != block_end(name):
        problems.append(f"the crontab block is not framed by '{block_begin(name)}' / "
                        f"'{block_end(name)}'")
    for expression, command in cron_lines(block):
        if not croniter.is_valid(expression) or not command:
            problems.append(f"crontab line '{expression} ...' does not parse (croniter)")
        length = len(f"{expression} {command}")
        if length > CRON_MAX_LINE:
            problems.append(f"the crontab line is {length} characters; cron reads at most "
                            f"{CRON_MAX_LINE}: shorter paths or overrides, or another kind")
    rendered.notes.append("verified with croniter")
    return problems


# --- the crontab table ----------------------------------------------------------------

def block_span(table: list[str], name: str) -> tuple[int, int] | None:
    """(begin, end) line indexes of the block named `name` in a crontab's lines (ends
    kept), or None; NumerlabError when it is damaged or there twice."""
    begins = [i for i, line in enumerate(table) if line.rstrip("\r\n") == block_begin(name)]
    ends = [i for i, line in enumerate(table) if line.rstrip("\r\n") == block_end(name)]
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise NumerlabError(f"the crontab holds a damaged or repeated '{MARK} {name}' block "
                            f"(crontab -e to fix it); left as it is")
    return begins[0], ends[0]


def with_block(table: str, name: str, block: str) -> str:
    """`table` with the block named `name` replaced by `block` (or added at its end); every
    other line as it was (a last line without its newline gets one)."""
    lines = table.splitlines(keepends=True)
    span = block_span(lines, name)
    new = block.splitlines(keepends=True)
    if span is not None:
        return "".join([*lines[:span[0]], *new, *lines[span[1] + 1:]])
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join([*lines, *new])


def without_block(table: str, name: str) -> tuple[str, bool]:
    """(`table` without the block named `name`, whether there was one)."""
    lines = table.splitlines(keepends=True)
    span = block_span(lines, name)
    if span is None:
        return table, False
    return "".join([*lines[:span[0]], *lines[span[1] + 1:]]), True


# --- on this machine ----------------------------------------------------------------

def _command(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NumerlabError(f"{' '.join(argv[:3])}: {message_line(exc)}") from None


def _checked(argv: Sequence[str], stdin: str | None = None) -> str:
    proc = _command(argv, stdin)
    if proc.returncode != 0:
        said = message_line(Exception(proc.stderr or proc.stdout or f"exit {proc.returncode}"))
        raise NumerlabError(f"{Path(argv[0]).name} {' '.join(argv[1:])} failed: {said}")
    return proc.stdout


def systemd_user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def launch_agents_dir() -> Path:
    return Path.home() / "Library" / "LaunchAgents"


def launchd_logs_dir() -> Path:
    return Path.home() / "Library" / "Logs" / "numerlab"


def systemd_works() -> bool:
    """Whether `systemctl --user` reaches a user manager here."""
    systemctl = shutil.which("systemctl")
    return systemctl is not None and _command(
        [systemctl, "--user", "show-environment"]).returncode == 0


def ours(path: Path, job: Job) -> bool:
    """Whether the existing `path` is a file numerlab wrote for this schedule."""
    try:
        return path.is_file() and job.marker in path.read_text(errors="replace")[:2000]
    except OSError:
        return False


def _refuse_foreign(paths: Iterable[Path], job: Job, doing: str) -> None:
    for path in paths:
        if (path.exists() or path.is_symlink()) and not ours(path, job):
            raise NumerlabError(f"{path} exists and was not written by numerlab (no "
                                f"'{job.marker}' marker): not {doing} it")


@dataclass
class Outcome:
    """What install/remove did (`done`) and what is left for the user to run (`todo`)."""

    done: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)


def install(rendered: Rendered, activate: bool) -> Outcome:
    """Write what `rendered` holds and, with `activate`, load it (systemctl/launchctl)."""
    problems = verify(rendered)
    if problems:
        raise NumerlabError(f"schedule: not installed, it does not verify: {problems[0]}")
    if rendered.kind == "cron":
        return _install_cron(rendered)
    _refuse_foreign(rendered.files, rendered.job, "overwriting")
    outcome = Outcome()
    if rendered.kind == "launchd":
        launchd_logs_dir().mkdir(parents=True, exist_ok=True)
    for path, text in rendered.files.items():
        with artifacts.atomic_file(path) as handle:
            handle.write(text)
        outcome.done.append(f"wrote {path}")
    steps = (_systemd_steps(rendered.job, "install") if rendered.kind == "systemd"
             else _launchd_steps(rendered, "install"))
    _activate(steps, activate, outcome)
    return outcome


def remove(rendered: Rendered, activate: bool) -> Outcome:
    """Undo `install`: unload (with `activate`) and delete numerlab's files, or take the
    block out of the crontab."""
    if rendered.kind == "cron":
        return _remove_cron(rendered)
    _refuse_foreign(rendered.files, rendered.job, "removing")
    outcome = Outcome()
    present = [p for p in rendered.files if p.exists()]
    if not present:
        outcome.done.append(f"nothing to remove: no {', '.join(map(str, rendered.files))}")
        return outcome
    steps = (_systemd_steps(rendered.job, "remove") if rendered.kind == "systemd"
             else _launchd_steps(rendered, "remove"))
    _activate(steps[:-1] if rendered.kind == "systemd" else steps, activate, outcome)
    for path in present:
        path.unlink()
        outcome.done.append(f"removed {path}")
    if rendered.kind == "systemd":
        _activate(steps[-1:], activate, outcome)
    return outcome


def _systemd_steps(job: Job, action: str) -> list[tuple[list[str], bool]]:
    """(command, whether it must succeed) for installing or removing the timer."""
    timer = f"{job.unit}.timer"
    if action == "install":
        return [(["systemctl", "--user", "daemon-reload"], True),
                (["systemctl", "--user", "enable", "--now", timer], True)]
    return [(["systemctl", "--user", "disable", "--now", timer], False),
            (["systemctl", "--user", "daemon-reload"], False)]


def _launchd_steps(rendered: Rendered, action: str) -> list[tuple[list[str], bool]]:
    label = launchd_label(rendered.job)
    domain = f"gui/{os.getuid()}"
    out = [(["launchctl", "bootout", f"{domain}/{label}"], False)]
    if action == "install":
        out.append((["launchctl", "bootstrap", domain, str(next(iter(rendered.files)))], True))
    return out


def _activate(steps: list[tuple[list[str], bool]], activate: bool, outcome: Outcome) -> None:
    """Run each step's command (found on PATH), or list it for the user when `activate` is
    false or the command is not there."""
    for argv, must in steps:
        found = shutil.which(argv[0])
        if not activate or found is None:
            why = "schedule.activate=false" if not activate else f"{argv[0]} not found"
            outcome.todo.append(f"{shlex.join(argv)}   ({why})")
            continue
        proc = _command([found, *argv[1:]])
        if proc.returncode == 0:
            outcome.done.append(f"ran {shlex.join(argv)}")
        elif must:
            said = message_line(Exception(proc.stderr or proc.stdout or "no output"))
            raise NumerlabError(f"{shlex.join(argv)} failed: {said} (the files are written; "
                                f"run it again after fixing that)")
        else:
            outcome.done.append(f"ran {shlex.join(argv)} (it said: "
                                f"{message_line(Exception(proc.stderr or proc.stdout or '-'))})")


def _crontab() -> str:
    found = shutil.which("crontab")
    if found is None:
        raise NumerlabError("crontab not found on PATH: install cron, or use "
                            "schedule.kind=systemd|launchd")
    return found


def read_crontab() -> str:
    """The user's crontab (`crontab -l`); empty when there is none yet."""
    proc = _command([_crontab(), "-l"])
    if proc.returncode == 0:
        return proc.stdout
    if "no crontab" in (proc.stderr + proc.stdout).lower():
        return ""
    said = message_line(Exception(proc.stderr or proc.stdout or f"exit {proc.returncode}"))
    raise NumerlabError(f"crontab -l failed: {said}")


def write_crontab(table: str, name: str) -> None:
    """`crontab -` with `table`, then read back: the block named `name` must be as written
    (a cron that adds its own header lines to `crontab -l` passes)."""
    _checked([_crontab(), "-"], stdin=table)
    back = read_crontab()
    if _block_text(back, name) != _block_text(table, name):
        raise NumerlabError(f"crontab: the '{MARK} {name}' block read back (crontab -l) "
                            f"differs from the one written")


def _block_text(table: str, name: str) -> str | None:
    lines = table.splitlines(keepends=True)
    span = block_span(lines, name)
    return None if span is None else "".join(lines[span[0]:span[1] + 1])


def _install_cron(rendered: Rendered) -> Outcome:
    table = read_crontab()
    write_crontab(with_block(table, rendered.job.name, rendered.block or ""),
                  rendered.job.name)
    return Outcome(done=[f"crontab: wrote the '{rendered.job.marker}' block "
                         f"({len(cron_lines(rendered.block or ''))} line(s))"])


def _remove_cron(rendered: Rendered) -> Outcome:
    table, found = without_block(read_crontab(), rendered.job.name)
    if not found:
        return Outcome(done=[f"nothing to remove: the crontab has no '{rendered.job.marker}' "
                             f"block"])
    write_crontab(table, rendered.job.name)
    return Outcome(done=[f"crontab: removed the '{rendered.job.marker}' block"])
