"""A sweep's runs in one ranked table: `python -m numerlab.summary multirun/<date>/<time>`.

Runs come from a Hydra sweep dir (one job dir per run), a dir of single run dirs (run dirs one
or two levels down, e.g. `outputs/`), or a `dvc exp show --json` file. A run dir holds
`metrics.json` when it finished and `error.txt` (one line) when it failed. Ranking orders the
finished runs by one metrics.json key; backtests follow, ranked by their own
(`run_kinds.BACKTEST_METRIC`); then the runs of tasks that write no metrics.json by design
(live, stake, status, download, export, compare: `run_kinds`), listed as finished; failed
runs last, with their error.

`SweepSummaryCallback` does the same at the end of every `python run.py -m ...`, writing
`summary.csv` and `summary.md` into the sweep dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from numerlab import pareto
from numerlab.artifacts import ERROR_FILE, METRICS, MULTIRUN_FILE
from numerlab.errors import NumerlabError, message_line
from numerlab.report import NARROW, is_metric_value, short_overrides
from numerlab.run_kinds import BACKTEST, BACKTEST_COLUMNS, BACKTEST_METRIC, record_outcome, task_of
from numerlab.settings import choice

log = logging.getLogger(__name__)

OVERRIDES_FILE = ".hydra/overrides.yaml"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"

OK, FAILED, DONE = "ok", "failed", "done"  # done: finished, no metrics.json by design
DIRECTIONS = ("maximize", "minimize")
DEFAULT_METRIC = "corr_sharpe"
IDENTITY = ("name", "overrides", "status", "error", "run_dir", "task")
NO_METRICS = f"no {METRICS} and no {ERROR_FILE} (the job did not finish)"


# --- run dirs -------------------------------------------------------------------------------

def is_run_dir(path: Path) -> bool:
    """A dir one run wrote: it has metrics.json, error.txt or Hydra's overrides.yaml."""
    return any((path / name).is_file() for name in (METRICS, ERROR_FILE, OVERRIDES_FILE))


def natural_key(name: str) -> list[Any]:
    """Sort key that puts job `2-lgbm` before `10-lgbm`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def subdirs(path: Path) -> list[Path]:
    """The subdirs of `path` (not hidden ones: staging dirs, the dashboard's), in natural order."""
    children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(children, key=lambda p: natural_key(p.name))


def find_run_dirs(root: Path) -> list[Path]:
    """`root` itself when it is a run dir, else its run dirs one or two levels down (a sweep
    dir's jobs, or `outputs/<date>/<time>`); a run dir's own subdirs are never searched."""
    if is_run_dir(root):
        return [root]
    found = []
    for child in subdirs(root):
        if is_run_dir(child):
            found.append(child)
        else:
            found.extend(grandchild for grandchild in subdirs(child) if is_run_dir(grandchild))
    return found


def run_roots(root: Path) -> list[Path]:
    """The dirs `collect` reads under a runs root such as `outputs/` or `multirun/`: the root
    itself (its run dirs one or two levels down: `outputs/<date>/<time>`) and each sweep dir
    two levels down (`multirun/<date>/<time>`, holding the jobs)."""
    if not root.is_dir():
        return []
    found = [root]
    if is_run_dir(root):
        return found
    for child in subdirs(root):
        if is_run_dir(child):
            continue
        found.extend(grandchild for grandchild in subdirs(child)
                     if not is_run_dir(grandchild)
                     and any(is_run_dir(job) for job in subdirs(grandchild)))
    return found


def first_line(text: str) -> str:
    """The first non-empty line, stripped ('' when there is none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float | int | None]:
    """The int/float (and null: a non-finite score) entries of a metrics.json; the strings
    (model, target) and booleans are not metrics to rank by."""
    return {key: value for key, value in metrics.items() if is_metric_value(value)}


def read_overrides(run_dir: Path) -> list[str]:
    """The job's command-line overrides as Hydra saved them ([] without .hydra/)."""
    path = run_dir / OVERRIDES_FILE
    if not path.is_file():
        return []
    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as exc:
        raise NumerlabError(f"{path}: cannot read ({message_line(exc)})") from None
    return [str(item) for item in overrides]


def run_record(run_dir: Path, root: Path) -> dict[str, Any]:
    """One run dir as a record: name (path below `root`), override list, status, error,
    run_dir and its numeric metrics. error.txt marks a failure even beside a metrics.json."""
    name = run_dir.relative_to(root).as_posix()
    task = task_of(run_dir)
    record: dict[str, Any] = {"name": run_dir.name if name == "." else name,
                              "overrides": read_overrides(run_dir), "status": OK, "error": None,
                              "run_dir": str(run_dir), "metrics": {}, "task": task}
    metrics_path, error_path = run_dir / METRICS, run_dir / ERROR_FILE
    if metrics_path.is_file():
        try:
            record["metrics"] = numeric_metrics(json.loads(metrics_path.read_text()))
        except (json.JSONDecodeError, AttributeError) as exc:
            record.update(status=FAILED, error=f"{metrics_path}: not a JSON object "
                                               f"({message_line(exc)})")
    if error_path.is_file():
        record.update(status=FAILED, error=first_line(error_path.read_text()) or ERROR_FILE)
    elif not metrics_path.is_file():
        finished, what = record_outcome(run_dir, task)
        record.update(status=DONE if finished else FAILED, error=what or NO_METRICS)
    return record


# --- dvc exp show --json --------------------------------------------------------------------

def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"model": {"lr": 1}} -> {"model.lr": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _file_results(data: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """params or metrics of one `dvc exp show` revision, all files merged, dotted keys; a file
    DVC could not read carries `error` instead of `data` and adds nothing."""
    merged: dict[str, Any] = {}
    for result in ((data or {}).get(kind) or {}).values():
        for key, value in flatten((result or {}).get("data") or {}).items():
            merged.setdefault(key, value)
    return merged


def format_value(value: Any) -> str:
    """A params value as `dvc exp run -S` / Hydra would take it back."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


DERIVED_PARAMS = "load."  # conf/config.yaml derives them from model/postprocess keys


def param_changes(params: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """`key=value` for every param that differs from the baseline commit's (derived
    `load.*` keys left out: the keys they come from show)."""
    return [f"{key}={format_value(value)}" for key, value in params.items()
            if (key not in baseline or baseline[key] != value)
            and not key.startswith(DERIVED_PARAMS)]


def executor_error(executor: dict[str, Any]) -> str | None:
    """The one line a failed queued experiment's log ends with: numerlab's `error: ...` if it
    printed one, else the log's last line; None when the log is gone."""
    log_path = ((executor.get("local") or {}).get("log")) or ""
    try:
        lines = [line.strip() for line in Path(log_path).read_text().splitlines() if line.strip()]
    except OSError:
        return None
    ours = [line for line in lines if line.startswith("error: ")]
    return (ours or lines or [None])[-1]


def dvc_record(state: dict[str, Any], baseline: dict[str, Any], source: Path,
               executor: dict[str, Any] | None = None) -> dict[str, Any]:
    """One revision of `dvc exp show --json` (a commit or an experiment) as a record."""
    rev = str(state.get("rev") or "")
    data = state.get("data")
    metrics = numeric_metrics(_file_results(data, "metrics"))
    error = state.get("error") or {}
    failed = bool(error) or (executor or {}).get("state") == "failed"
    message = None
    if failed:
        message = (executor_error(executor or {}) or error.get("msg")
                   or "experiment failed")
    elif not metrics:
        failed, message = True, "no metrics (dvc exp show found no metrics file data)"
    return {"name": state.get("name") or rev[:7],
            "overrides": param_changes(_file_results(data, "params"), baseline),
            "status": FAILED if failed else OK, "error": message,
            "run_dir": f"{source}@{rev[:7]}", "metrics": metrics}


def dvc_records(entries: Any, source: Path) -> list[dict[str, Any]]:
    """Records of `dvc exp show --json` output (DVC 3): a list of baseline commits (and the
    workspace, skipped: uncommitted state) each with `experiments`, a list of ranges whose
    `revs[0]` is the experiment; queued and running experiments have no results yet."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "rev" in e
                                                for e in entries):
        raise NumerlabError(f"{source}: not `dvc exp show --json` output (expected a JSON list "
                            "of revisions with 'rev', 'data' and 'experiments')")
    records = []
    for commit in entries:
        if commit["rev"] == "workspace":
            continue
        baseline = _file_results(commit.get("data"), "params")
        records.append(dvc_record(commit, baseline, source))
        for exp_range in commit.get("experiments") or []:
            executor = exp_range.get("executor") or {}
            if executor.get("state") in ("queued", "running") or not exp_range.get("revs"):
                continue
            records.append(dvc_record(exp_range["revs"][0], baseline, source, executor))
    return records


# --- the frame ------------------------------------------------------------------------------

def distinguishing(overrides: Sequence[list[str]], sep: str = ",") -> list[str]:
    """Each run's overrides minus those every run shares (`data.dir=...`,
    `hparams_search=...`), joined `k=v,k=v`; a lone run keeps all of its own."""
    common = set.intersection(*map(set, overrides)) if len(overrides) > 1 else set()
    return [sep.join(o for o in run if o not in common) for run in overrides]


def metric_series(name: str, values: list[Any]) -> pl.Series:
    """One metrics.json key over several runs: Int64 when every known value is an int
    (n_eras), else Float64; None where a run lacks it."""
    known = [v for v in values if v is not None]
    if known and all(isinstance(v, int) for v in known):
        return pl.Series(name, values, dtype=pl.Int64)
    return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)


def records_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per record: identity columns, then one column per metric key any run has."""
    overrides = distinguishing([r["overrides"] for r in records])
    keys: list[str] = []
    for record in records:
        keys.extend(k for k in record["metrics"] if k not in keys and k not in IDENTITY)
    columns = [pl.Series("name", [r["name"] for r in records], dtype=pl.String),
               pl.Series("overrides", overrides, dtype=pl.String)]
    columns += [metric_series(k, [r["metrics"].get(k) for r in records]) for k in keys]
    columns += [pl.Series(c, [r.get(c) for r in records], dtype=pl.String)
                for c in ("status", "error", "run_dir", "task")]
    return pl.DataFrame(columns)


def collect(path: str | Path) -> pl.DataFrame:
    """Every run under `path` (a sweep dir, a dir of run dirs, one run dir, or a
    `dvc exp show --json` file) as one row: name, overrides (the run's distinguishing
    overrides, `k=v,k=v`), each numeric metrics.json key, status (ok/failed), error (one
    line), run_dir."""
    path = Path(path)
    if path.is_file():
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise NumerlabError(f"{path}: not JSON ({message_line(exc)}); expected a sweep dir "
                                "or `dvc exp show --json` output") from None
        records = dvc_records(entries, path)
    elif path.is_dir():
        records = [run_record(run_dir, path) for run_dir in find_run_dirs(path)]
    else:
        raise NumerlabError(f"{path}: no such file or directory")
    if not records:
        raise NumerlabError(f"{path}: no runs (no {METRICS}, {ERROR_FILE} or {OVERRIDES_FILE} "
                            "in it or one or two levels below)")
    return records_frame(records)


def metric_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in IDENTITY and c != "rank"]


def _ranked(rows: pl.DataFrame, metric: str, direction: str) -> pl.DataFrame:
    """`rows` best first by `metric` (NaN/null last, ties in job order) with `rank` 1..k."""
    value = pl.col(metric).cast(pl.Float64)
    score = pl.when(value.is_nan()).then(None).otherwise(value)
    ordered = (rows.with_columns(score.alias("_score"))
               .sort("_score", descending=direction == "maximize", nulls_last=True,
                     maintain_order=True))
    positions = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    return ordered.with_columns(
        pl.when(pl.col("_score").is_not_null()).then(positions).otherwise(None).alias("rank")
    ).drop("_score")


def is_backtest() -> pl.Expr:
    return (pl.col("status") == OK) & (pl.col("task") == BACKTEST).fill_null(False)


def backtest_metric(frame: pl.DataFrame, metric: str) -> str:
    """The key backtests rank by: `metric` when backtests have it, else BACKTEST_METRIC."""
    backtests = frame.filter(is_backtest())
    if metric in frame.columns and backtests[metric].is_not_null().any():
        return metric
    return BACKTEST_METRIC


def rank(frame: pl.DataFrame, metric: str, direction: str = "maximize") -> pl.DataFrame:
    """Finished runs best first by `metric` (NaN/null last, ties in job order) with `rank`
    1..k; then the backtests, ranked among themselves by their own key (`backtest_metric`,
    maximized); then the runs that finished without metrics (`DONE`), and the failed runs.
    `metric` missing from every finished run is an error."""
    choice("direction", direction, DIRECTIONS)
    if "task" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("task"))
    finished = frame.filter((pl.col("status") == OK) & ~is_backtest())
    if metric not in frame.columns:
        if finished.height:
            raise NumerlabError(f"metric {metric!r} is in no run's {METRICS}; choose one of "
                                f"{', '.join(metric_columns(frame))}")
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(metric))
        finished = frame.filter((pl.col("status") == OK) & ~is_backtest())
    ordered = _ranked(finished, metric, direction)
    parts = [ordered]
    backtests = frame.filter(is_backtest())
    if backtests.height:
        key = backtest_metric(frame, metric)
        if key not in backtests.columns:
            backtests = backtests.with_columns(pl.lit(None, dtype=pl.Float64).alias(key))
        parts.append(_ranked(backtests, key, "maximize").select(ordered.columns))
    rest = frame.filter(pl.col("status") != OK).with_columns(
        pl.lit(None, dtype=pl.Int64).alias("rank"))
    parts.append(rest.sort(pl.col("status") != DONE, maintain_order=True)
                 .select(ordered.columns))
    return pl.concat(parts, how="vertical")


# --- output ---------------------------------------------------------------------------------

def shown_columns(frame: pl.DataFrame, metric: str | None = None) -> list[str]:
    """The narrow table's headline metrics (`report.NARROW`) the frame has, then `metric`
    when it is not one of them."""
    shown = [c for c in NARROW if c in frame.columns]
    if metric and metric in frame.columns and metric not in shown:
        shown.append(metric)
    return shown


def csv_columns(frame: pl.DataFrame, metric: str | None = None) -> list[str]:
    """rank, name, overrides, the shown metrics, status, error, run_dir, the other metrics."""
    first = [c for c in ("rank", "name", "overrides") if c in frame.columns]
    shown = shown_columns(frame, metric)
    rest = [c for c in metric_columns(frame) if c not in shown]
    task = ["task"] if "task" in frame.columns else []
    return first + shown + ["status", "error", "run_dir", *task] + rest


def format_number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return str(value) if isinstance(value, int) else f"{value:+.4f}"


def _scored(frame: pl.DataFrame) -> pl.DataFrame:
    """The finished runs ranked by the summary's metric (not the backtests)."""
    if "task" not in frame.columns:
        return frame.filter(pl.col("status") == OK)
    return frame.filter((pl.col("status") == OK) & ~is_backtest())


def _table_rows(frame: pl.DataFrame, metric: str | None, shown: Sequence[str] | None = None
                ) -> Iterable[list[str]]:
    shown = shown_columns(frame, metric) if shown is None else shown
    for row in frame.iter_rows(named=True):
        rank_cell = "—" if row.get("rank") is None else str(row["rank"])
        yield [rank_cell, row["name"], short_overrides(row["overrides"]),
               *(format_number(row[c]) for c in shown)]


def backtest_view(frame: pl.DataFrame, metric: str | None) -> tuple[pl.DataFrame, list[str],
                                                                     str]:
    """(the backtest rows, the columns their table shows, the key they are ranked by)."""
    if "task" not in frame.columns:
        return frame.clear(), [], BACKTEST_METRIC
    rows = frame.filter(is_backtest())
    key = backtest_metric(frame, metric or BACKTEST_METRIC)
    shown = [c for c in dict.fromkeys((key, *BACKTEST_COLUMNS)) if c in frame.columns]
    return rows, shown, key


def _done_rows(frame: pl.DataFrame) -> Iterable[tuple[str, str, str]]:
    for row in frame.filter(pl.col("status") == DONE).iter_rows(named=True):
        yield row["name"], row.get("task") or "—", row["error"] or ""


def _failed_rows(frame: pl.DataFrame) -> Iterable[tuple[str, str, str]]:
    for row in frame.filter(pl.col("status") == FAILED).iter_rows(named=True):
        yield row["name"], row["overrides"] or "—", row["error"] or ""


# Under every ranking: the best run was chosen on the scores shown, so they flatter it.
CHOSEN_ON_REPORTED = ("the best run's scores are optimistic, chosen on the eras they are "
                      "scored on: choose with `task=cv` on training eras (cv.eras=train) and "
                      "score the chosen config once on validation")


# Under a ranking of walk-forward CV runs: their scores are the folds' out-of-sample eras.
CHOSEN_ON_FOLDS = "scores from task=cv's walk-forward folds, not from the eras a train run reports"


def ranking_note(frame: pl.DataFrame) -> str:
    """What the ranking's scores are: the CV folds' when every ranked run is a task=cv run,
    else the warning that the best run's reported scores flatter it."""
    tasks = set(_scored(frame)["task"].to_list()) if "task" in frame.columns else set()
    return CHOSEN_ON_FOLDS if tasks == {"cv"} else CHOSEN_ON_REPORTED


def print_summary(frame: pl.DataFrame, metric: str | None = None, title: str = "sweep summary",
                  console: Any = None) -> None:
    """The ranked runs as a rich table (the `metric` column in bold); below it the
    backtests ranked by their own key, the runs finished without metrics (what they
    wrote), the failed runs with their one-line error."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    shown = shown_columns(frame, metric)
    caption = f"ranked by {metric}; {ranking_note(frame)}" if metric else None
    table = Table(title=title, caption=caption, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("job")
    table.add_column("overrides", overflow="fold")
    for column in shown:
        # spaces let a long key wrap in its header instead of being cut
        table.add_column(column.replace("_", " "), justify="right",
                         style="bold" if column == metric else None)
    scored = _scored(frame)
    for cells in _table_rows(scored, metric):
        table.add_row(*cells)
    backtests, backtest_shown, key = backtest_view(frame, metric)
    if scored.height or not backtests.height:
        console.print(table)
    if backtests.height:
        table = Table(title=f"backtests ({backtests.height}), ranked by {key}",
                      header_style="bold")
        for column in ("#", "job", "overrides", *backtest_shown):
            table.add_column(column.replace("_", " "), overflow="fold",
                             justify="left" if column in ("job", "overrides") else "right",
                             style="bold" if column == key else None)
        for cells in _table_rows(backtests, None, backtest_shown):
            table.add_row(*cells)
        console.print(table)
    done = list(_done_rows(frame))
    if done:
        table = Table(title=f"finished jobs without metrics ({len(done)})",
                      caption="their tasks write no metrics.json", header_style="bold")
        for column in ("job", "task", "wrote"):
            table.add_column(column, overflow="fold")
        for row in done:
            table.add_row(*row)
        console.print(table)
    failed = list(_failed_rows(frame))
    if failed:
        errors = Table(title=f"failed jobs ({len(failed)})", header_style="bold red")
        errors.add_column("job")
        errors.add_column("overrides", overflow="fold")
        errors.add_column("error", overflow="fold")
        for row in failed:
            errors.add_row(*row)
        console.print(errors)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(frame: pl.DataFrame, metric: str | None = None, title: str = "Sweep summary"
             ) -> str:
    """summary.md: the ranked table, then a list of the failed runs and their errors."""
    shown = shown_columns(frame, metric)
    header = ["#", "job", "overrides", *shown]
    lines = [f"# {title}", ""]
    if metric:
        lines += [f"Ranked by `{metric}`; {ranking_note(frame)}.", ""]
    lines += ["| " + " | ".join(header) + " |",
              "|" + "|".join("---:" if i == 0 or i > 2 else "---" for i in range(len(header)))
              + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in cells) + " |"
              for cells in _table_rows(_scored(frame), metric)]
    backtests, backtest_shown, key = backtest_view(frame, metric)
    if backtests.height:
        head = ["#", "job", "overrides", *backtest_shown]
        lines += ["", f"## Backtests ({backtests.height}), ranked by `{key}`", "",
                  "| " + " | ".join(head) + " |",
                  "|" + "|".join("---" if c in ("job", "overrides") else "---:" for c in head)
                  + "|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in cells) + " |"
                  for cells in _table_rows(backtests, None, backtest_shown)]
    done = list(_done_rows(frame))
    if done:
        lines += ["", f"## Finished without metrics ({len(done)})", ""]
        lines += [f"- `{_md_cell(name)}` (task={_md_cell(task)}): {_md_cell(wrote)}"
                  for name, task, wrote in done]
    failed = list(_failed_rows(frame))
    if failed:
        lines += ["", f"## Failed ({len(failed)})", ""]
        lines += [f"- `{_md_cell(name)}` ({_md_cell(overrides)}): {_md_cell(error)}"
                  for name, overrides, error in failed]
    return "\n".join(lines) + "\n"


def write(frame: pl.DataFrame, out_dir: str | Path, metric: str | None = None) -> list[Path]:
    """summary.csv (every column) and summary.md (the table) in `out_dir`; returns both."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / SUMMARY_CSV, out_dir / SUMMARY_MD
    frame.select(csv_columns(frame, metric)).write_csv(csv_path)
    md_path.write_text(markdown(frame, metric, title=f"Sweep summary: {out_dir}"))
    return [csv_path, md_path]


# --- entry points ---------------------------------------------------------------------------

def sweep_objectives(config: Any) -> list[pareto.Objective]:
    """The objectives a sweep config names (`optimized_metric` with the sweeper's
    `direction`, `numerlab.pareto.objectives`); corr_sharpe when it names none."""
    metric = OmegaConf.select(config, "optimized_metric", default=None,
                              throw_on_resolution_failure=False)
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None,
                                 throw_on_resolution_failure=False)
    if metric is None:
        metric = DEFAULT_METRIC
        if OmegaConf.is_list(direction) or isinstance(direction, list):
            direction = direction[0] if len(direction) else None
    return pareto.objectives(metric, direction)


def sweep_objective(config: Any) -> tuple[str, str]:
    """(metric, direction) a sweep config ranks by: its first objective (`sweep_objectives`),
    maximize when the sweeper has no direction."""
    first = sweep_objectives(config)[0]
    return first.metric, first.direction


def summarize(path: Path, metric: str, direction: str, write_files: bool,
              console: Any = None, objectives: Sequence[pareto.Objective] = ()
              ) -> pl.DataFrame:
    """collect -> rank -> print (-> write into `path`); returns the ranked frame. With more
    than one objective, the Pareto front follows the table (`numerlab.pareto.report`)."""
    ranked = rank(collect(path), metric, direction)
    print_summary(ranked, metric, title=f"sweep summary: {path}", console=console)
    if write_files:
        write(ranked, path, metric)
    pareto.report(ranked, list(objectives), path if write_files else None, console)
    return ranked


class SweepSummaryCallback(Callback):
    """Hydra callback: at the end of a multirun, rank the sweep's jobs by
    `optimized_metric` (its first objective), print the table and write
    summary.csv/summary.md (and the Pareto front of several objectives) into the sweep dir.
    A summary that cannot be made is a warning: the jobs themselves have run."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            objectives = sweep_objectives(config)
            summarize(sweep_dir, objectives[0].metric, objectives[0].direction,
                      write_files=True, objectives=objectives)
        except NumerlabError as exc:
            log.warning("sweep summary: %s", exc)
        exit_when_every_job_failed(sweep_dir)


def exit_when_every_job_failed(sweep_dir: Path) -> None:
    """A sweep whose every job failed (each left its error.txt, none a metrics.json) ends
    with one `error:` line naming the first job's error and exit status 2, as a failed
    single run does; one finished job is a sweep that ran."""
    try:
        frame = collect(sweep_dir)
    except NumerlabError:  # no job dirs at all: nothing to judge
        return
    failed = frame.filter(pl.col("status") != OK)
    if frame.height and failed.height == frame.height:
        first = failed.row(0, named=True)
        print(f"error: every job of the sweep failed ({frame.height} of {frame.height} in "
              f"{sweep_dir}; {first['name']}: {first['error']})", file=sys.stderr)
        sys.exit(2)


def read_sweep_config(path: Path) -> Any:
    """The sweep's multirun.yaml (None for anything that is not a Hydra sweep dir)."""
    multirun = path / MULTIRUN_FILE
    if not multirun.is_file():
        return None
    try:
        return OmegaConf.load(multirun)
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as exc:
        raise NumerlabError(f"{multirun}: cannot read ({message_line(exc)})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m numerlab.summary",
        description="Rank the runs of a sweep dir, a dir of run dirs or a `dvc exp show --json` "
                    "file; a Hydra sweep dir gets summary.csv and summary.md rewritten.")
    parser.add_argument("path", type=Path, help="sweep dir, outputs dir or dvc exp json file")
    parser.add_argument("--metric", help="metrics.json key to rank by (default: the sweep's "
                                         f"optimized_metric, else {DEFAULT_METRIC})")
    parser.add_argument("--direction", choices=DIRECTIONS,
                        help="default: the sweep's hydra.sweeper.direction, else maximize")
    args = parser.parse_args(argv)
    try:
        sweep_config = read_sweep_config(args.path) if args.path.is_dir() else None
        objectives = sweep_objectives(sweep_config or OmegaConf.create())
        summarize(args.path, args.metric or objectives[0].metric,
                  args.direction or objectives[0].direction,
                  write_files=sweep_config is not None, objectives=objectives)
    except NumerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
