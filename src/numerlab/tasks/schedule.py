"""task=schedule: show, install or remove the schedule that runs `task=submit` at each
round's open plus `schedule.delay_minutes`, Tuesday to Saturday in UTC.

    python run.py task=schedule                                  # show (writes nothing)
    python run.py task=schedule schedule.action=install \
        'schedule.overrides=["tournament.submit=true"]'
    python run.py task=schedule schedule.action=remove

Prints what it writes and where, and the next five runs in UTC and local time, computed
from the rendered text (`numerlab.schedules`). Install and remove record what they did in
`schedule.json` in the job dir. The API keys stay in `schedule.env_file`, which this task
checks exists (on install) but never reads.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from numerlab import artifacts, schedules, settings
from numerlab.errors import NumerlabError
from numerlab.schedules import Job, Rendered
from numerlab.tournament.rounds import TIME_FORMAT

log = logging.getLogger(__name__)

GROUP = "schedule"
ACTIONS = ("show", "install", "remove")
KEYS = ("action", "kind", "name", "delay_minutes", "overrides", "env_file", "python",
        "workdir", "timezone", "activate")
RECORD = "schedule.json"
N_RUNS = 5


@dataclass(frozen=True)
class Options:
    action: str
    kind: str
    activate: bool
    timezone: str | None


def options_of(cfg: DictConfig) -> tuple[Options, Job]:
    """The `schedule` group, checked: one line naming the key for a bad value."""
    values = cfg.get(GROUP)
    if values is None:
        raise NumerlabError("schedule is missing: run it as task=schedule "
                            "(conf/task/schedule.yaml)")
    settings.keys(GROUP, values, KEYS)
    settings.required(GROUP, values, KEYS)
    options = Options(
        action=settings.choice(f"{GROUP}.action", values.action, ACTIONS),
        kind=settings.choice(f"{GROUP}.kind", values.kind, ("auto", *schedules.KINDS)),
        activate=settings.boolean(f"{GROUP}.activate", values.activate),
        timezone=settings.text(f"{GROUP}.timezone", values.timezone, optional=True,
                               what="a time zone name"))
    overrides = values.overrides
    if overrides is None:
        overrides = []
    if not isinstance(overrides, list | ListConfig) or not all(
            isinstance(o, str) and o.strip() for o in overrides):
        shown = (OmegaConf.to_container(overrides) if isinstance(overrides, ListConfig)
                 else overrides)
        raise NumerlabError(f"schedule.overrides={shown!r} must be a list of overrides, e.g. "
                            f"'schedule.overrides=[\"tournament.submit=true\"]'")
    job = Job(
        name=str(settings.text(f"{GROUP}.name", values.name)),
        python=_path(values.python, f"{GROUP}.python") if values.python else os.path.abspath(
            sys.executable),
        workdir=(_path(values.workdir, f"{GROUP}.workdir") if values.workdir
                 else default_workdir()),
        env_file=_path(values.env_file, f"{GROUP}.env_file"),
        overrides=tuple(str(o) for o in overrides),
        delay_minutes=settings.integer(f"{GROUP}.delay_minutes", values.delay_minutes,
                                       minimum=0))
    return options, schedules.check_job(job)


def _path(value: Any, key: str) -> str:
    """An absolute path, `~` expanded; symlinks kept (a venv's python is one)."""
    text = settings.text(key, value, what="a path")
    return os.path.abspath(os.path.expanduser(str(text)))


def default_workdir() -> str:
    """The current dir, or run.py's when this job was started from elsewhere."""
    here = Path.cwd()
    if (here / schedules.RUN_PY).is_file():
        return str(here)
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if script is not None and script.name == schedules.RUN_PY:
        return str(script.parent)
    return str(here)


def choose_kind(kind: str) -> str:
    """auto: systemd where `systemctl --user` works, launchd on macOS, else cron."""
    if kind != "auto":
        return kind
    if sys.platform == "darwin":
        return "launchd"
    if sys.platform.startswith("linux") and schedules.systemd_works():
        return "systemd"
    return "cron"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    options, job = options_of(cfg)
    kind = choose_kind(options.kind)
    zone, zone_name = (schedules.machine_zone() if options.timezone is None
                       else (schedules.zone_named(options.timezone), options.timezone))
    now = datetime.now(UTC)
    rendered = schedules.render(kind, job, zone, now)
    refuse_keys(rendered, cfg)
    if options.action != "remove":
        rendered.notes.extend([*env_file_notes(job), *submit_notes(job)])
    problems = schedules.verify(rendered) if options.action == "show" else []
    runs = schedules.next_runs(rendered, now, N_RUNS)
    show(rendered, options, runs, zone, zone_name, problems)
    if options.action == "show":
        return {}
    if options.action == "install":
        check_installable(job)
        outcome = schedules.install(rendered, options.activate)
    else:
        outcome = schedules.remove(rendered, options.activate)
    for line in outcome.done:
        print(line)
    for line in outcome.todo:
        print(f"to do: {line}")
    artifacts.write_record(Path(run_dir), RECORD, {
        "action": options.action, "kind": kind, "name": job.name, "done": outcome.done,
        "todo": outcome.todo, "files": [str(p) for p in rendered.files],
        "next_runs_utc": [r.isoformat() for r in runs]})
    return {}


def refuse_keys(rendered: Rendered, cfg: DictConfig) -> None:
    """NumerlabError (naming the variable, never the value) when what would be written holds
    the value of an API key as the tournament config finds it (its environment variables,
    or tournament.keys_file): keys go in the env file."""
    from numerlab.tournament import KeySource

    try:
        source = KeySource.from_config(cfg.tournament)
        public_id, secret_key, _ = source.keys()
    except NumerlabError:  # keys the job needs fail in the job, not here
        return
    for name, value in ((source.public_id_env, public_id), (source.secret_key_env, secret_key)):
        if value and len(value) >= 8 and any(value in text for text in rendered.texts()):
            raise NumerlabError(f"schedule: what it would write holds the value of {name} "
                                f"(in schedule.overrides?): keys belong in schedule.env_file")


def env_file_notes(job: Job) -> list[str]:
    """Warnings about the env file: missing, inside the project or a git work tree, or
    readable by others (its mode, not its contents, is read)."""
    path = Path(job.env_file)
    if not path.is_file():
        return [f"warning: schedule.env_file {path} does not exist yet (install refuses): "
                f"put NUMERAI_PUBLIC_ID=... and NUMERAI_SECRET_KEY=... lines in it, chmod 600"]
    notes = []
    real = path.resolve()
    inside = [p for p in (Path(job.workdir).resolve(), *_work_trees(real))
              if real.is_relative_to(p)]
    if inside:
        notes.append(f"warning: schedule.env_file {path} is inside {inside[0]}: move it "
                     f"outside (e.g. ~/.numerai/keys.env) so it is never committed")
    if real.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        notes.append(f"warning: schedule.env_file {path} is readable by others "
                     f"(mode {stat.filemode(real.stat().st_mode)}): chmod 600 {path}")
    return notes


def submit_notes(job: Job) -> list[str]:
    """A warning when the job's project has no task=submit config to run."""
    config = Path(job.workdir) / "conf" / "task" / f"{SUBMIT_TASK}.yaml"
    if config.is_file():
        return []
    return [f"warning: {config} not found: {schedules.TASK} would fail there"]


SUBMIT_TASK = schedules.TASK.split("=", 1)[1]


def _work_trees(path: Path) -> list[Path]:
    return [p for p in path.parents if (p / ".git").exists()][:1]


def check_installable(job: Job) -> None:
    """What the job needs on this machine, before anything is written."""
    if not Path(job.env_file).is_file():
        raise NumerlabError(f"schedule.env_file {job.env_file} does not exist: create it with "
                            f"NUMERAI_PUBLIC_ID=... and NUMERAI_SECRET_KEY=... lines (chmod 600)")
    if not os.access(job.python, os.X_OK) or not Path(job.python).is_file():
        raise NumerlabError(f"schedule.python {job.python} is not an executable file")
    if not (Path(job.workdir) / schedules.RUN_PY).is_file():
        raise NumerlabError(f"schedule.workdir {job.workdir} has no {schedules.RUN_PY}: run "
                            f"from the project dir or set schedule.workdir")


def show(rendered: Rendered, options: Options, runs: list[datetime], zone: tzinfo,
         zone_name: str, problems: list[str]) -> None:
    """What it writes, where; notes; the next runs in UTC and local time."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    doing = {"show": "would write", "install": "writes", "remove": "removes"}[options.action]
    lines = [f"schedule {rendered.job.name}: {rendered.kind}, {TASK_LINE} at each round's "
             f"open + {rendered.job.delay_minutes} min; {doing}:"]
    for path, text in rendered.files.items():
        lines += [f"--- {path}", text.rstrip("\n")]
    if rendered.block is not None:
        lines += ["--- crontab (crontab -l): this block; every other line kept as it is",
                  rendered.block.rstrip("\n")]
    lines += rendered.notes
    lines += [f"does not verify: {problem}" for problem in problems]
    print("\n".join(lines), flush=True)  # as written: no wrapping, no markup
    table = Table(title=f"next {len(runs)} runs")
    table.add_column("UTC")
    table.add_column(f"local ({zone_name})")
    for moment in runs:
        table.add_row(moment.strftime(TIME_FORMAT),
                      moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"))
    console.print(table)
    if options.action == "show":
        console.print("nothing written (schedule.action=install writes it)", markup=False)


TASK_LINE = f"python run.py {schedules.TASK}"
