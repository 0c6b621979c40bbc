"""What kind of run a run dir is, for the readers of many run dirs (`summary`): the task
that wrote it and whether it finished.

A train or CV run finishes with `metrics.json` of scores; a backtest's metrics.json holds
money, not scores (`policy_*`, `fixed_*`), ranked by its own key; the tasks that write no
metrics.json by design (live, stake, status, download, export, compare, results) finish with their
own record file (`RECORDS`), whose `outcome` says whether what they sent went through.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from numerlab.runs import SAVED_CONFIG

BACKTEST = "backtest"
# the backtest's metric to rank by, and the columns its table shows
BACKTEST_METRIC = "policy_total_return"
BACKTEST_COLUMNS = ("policy_total_return", "policy_worst_drawdown", "policy_final_stake",
                    "fixed_total_return", "policy_n_eras")
# task -> the file it writes when it finished (the tasks' own constants name the same)
RECORDS = {"live": "submission.json", "stake": "stake.json", "status": "status.json",
           "download": "download.json", "export": "export.json", "compare": "report.html",
           "results": "results.json", "submit": "submit.json"}
NOT_DONE = ("failed", "unknown")  # record outcomes of a send that did not go through


def task_of(run_dir: Path) -> str | None:
    """The task a run dir's job ran: its saved config's `task._target_`
    (`numerlab.tasks.<task>.run`), else the record file it holds; None when unknown (a
    train run of an older numerlab, DVC's artifacts/)."""
    run_dir = Path(run_dir)
    try:
        saved = yaml.safe_load((run_dir / SAVED_CONFIG).read_text())
        target = str(((saved or {}).get("task") or {}).get("_target_") or "")
    except (OSError, yaml.YAMLError, AttributeError):
        target = ""
    parts = target.split(".")
    if len(parts) >= 3 and parts[-3] == "tasks":
        return parts[-2]
    held = [task for task, name in RECORDS.items() if (run_dir / name).is_file()]
    return held[0] if len(held) == 1 else None


def record_outcome(run_dir: Path, task: str | None) -> tuple[bool, str]:
    """(finished?, what it wrote or why not) for a run of a task in RECORDS that has no
    metrics.json: finished when its record file is there and, for a JSON record with an
    `outcome`, that outcome is not a failure."""
    if task not in RECORDS:
        return False, ""
    path = Path(run_dir) / RECORDS[task]
    if not path.is_file():
        return False, f"no {RECORDS[task]} (task={task} did not finish)"
    if path.suffix == ".json":
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return False, f"{path.name}: not JSON"
        outcome = record.get("outcome") if isinstance(record, dict) else None
        if outcome in NOT_DONE:
            error = record.get("error") or f"outcome {outcome}"
            return False, f"{path.name}: outcome {outcome}: {error}"
        if outcome:
            return True, f"{path.name} ({outcome})"
    return True, path.name
