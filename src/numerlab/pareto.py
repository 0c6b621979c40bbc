"""Searches that weigh more than one score: the objectives a sweep optimizes and the Pareto
front of its runs.

`optimized_metric` (conf/config.yaml) names what a job returns to a sweeper:

- one metrics.json key (`corr_sharpe`): one value, in the sweeper's `direction`;
- a mapping key -> direction (`{corr_sharpe: maximize, corr_max_drawdown: minimize}`): one
  value per key, in that order; the `*_pareto` search spaces interpolate the sweeper's
  direction list from it (`conf/hydra/sweeper/pareto.yaml`), so the two cannot disagree;
- a list of keys: one value per key, directions from the sweeper's `direction` list.

The front: run A dominates run B when A is no worse on every objective and better on one;
the runs no other run dominates are the front (rank 1); without them, the next front is
rank 2, and so on (non-dominated sorting). Runs missing an objective get no rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from omegaconf import OmegaConf

from numerlab.errors import NumerlabError
from numerlab.report import short_overrides
from numerlab.settings import choice, text

DIRECTIONS = ("maximize", "minimize")
PARETO_CSV = "pareto.csv"
PARETO_MD = "pareto.md"
PARETO_PLOT = "pareto.png"
SUMMARY_MD = "summary.md"  # numerlab.summary's table, the front appended to it
FRONT = "pareto_front"   # the summary column: the run's non-dominated front, 1 = the front


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str   # maximize | minimize


def _direction_name(value: Any) -> str:
    """`maximize`, also from Optuna's `Direction.maximize` enum or its value."""
    return str(getattr(value, "name", value)).lower()


def objectives(optimized_metric: Any, sweeper_direction: Any = None) -> list[Objective]:
    """The objectives `optimized_metric` names (see the module doc), each checked; a list's
    directions come from `sweeper_direction` (one, or a list as long; default maximize)."""
    if OmegaConf.is_config(optimized_metric):
        optimized_metric = OmegaConf.to_container(optimized_metric, resolve=True)
    if OmegaConf.is_config(sweeper_direction):
        sweeper_direction = OmegaConf.to_container(sweeper_direction, resolve=True)
    if isinstance(optimized_metric, dict):
        if not optimized_metric:
            raise NumerlabError("optimized_metric: an empty mapping; name at least one key")
        named = [Objective(text("optimized_metric", key, what="a metrics.json key"),
                           choice(f"optimized_metric.{key}", _direction_name(direction),
                                  DIRECTIONS))
                 for key, direction in optimized_metric.items()]
        _check_sweeper_agrees(named, sweeper_direction)
        return named
    names = optimized_metric if isinstance(optimized_metric, list) else [optimized_metric]
    if not names:
        raise NumerlabError("optimized_metric: an empty list; name at least one key")
    names = [text("optimized_metric", name, what="a metrics.json key") for name in names]
    if sweeper_direction is None:
        directions = ["maximize"] * len(names)
    elif isinstance(sweeper_direction, list | tuple):
        directions = [_direction_name(d) for d in sweeper_direction]
    else:
        directions = [_direction_name(sweeper_direction)] * len(names)
    if len(directions) != len(names):
        raise NumerlabError(f"optimized_metric names {len(names)} metrics ({', '.join(names)}) "
                            f"but hydra.sweeper.direction has {len(directions)} "
                            f"({', '.join(directions)}); give one direction per metric")
    return [Objective(name, choice("hydra.sweeper.direction", direction, DIRECTIONS))
            for name, direction in zip(names, directions, strict=True)]


def _check_sweeper_agrees(named: list[Objective], sweeper_direction: Any) -> None:
    """A sweeper direction set beside a mapping must say what the mapping says (the pareto
    sweeper reads it from the mapping; a direction typed over it would disagree)."""
    if sweeper_direction is None:
        return
    given = (sweeper_direction if isinstance(sweeper_direction, list | tuple)
             else [sweeper_direction])
    if [_direction_name(d) for d in given] != [o.direction for o in named]:
        raise NumerlabError(
            f"hydra.sweeper.direction={','.join(_direction_name(d) for d in given)} disagrees "
            f"with optimized_metric ({', '.join(f'{o.metric}: {o.direction}' for o in named)}); "
            "set the directions in optimized_metric (hydra/sweeper=pareto reads them there)")


def config_objectives(cfg: Any) -> list[Objective]:
    """The objectives of a composed config (`optimized_metric`, `hydra.sweeper.direction`)."""
    metric = OmegaConf.select(cfg, "optimized_metric", default=None,
                              throw_on_resolution_failure=False)
    direction = OmegaConf.select(cfg, "hydra.sweeper.direction", default=None,
                                 throw_on_resolution_failure=False)
    return objectives(metric, direction)


def objective_values(objectives_: Sequence[Objective], metrics: dict[str, Any],
                     ) -> list[float | None]:
    """Each objective's value in a job's metrics: a float, or None where it is null or NaN.
    A key the run did not write, or a value that is not a number, is a NumerlabError."""
    values: list[float | None] = []
    for objective in objectives_:
        key = objective.metric
        if key not in metrics:
            numeric = sorted(k for k, v in metrics.items()
                             if isinstance(v, int | float) and not isinstance(v, bool))
            raise NumerlabError(f"optimized_metric={key} is not a key this run produced "
                                f"(numeric keys: {', '.join(numeric)})")
        value = metrics[key]
        if value is None:
            values.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise NumerlabError(f"optimized_metric={key} is not numeric ({value!r})")
        values.append(None if math.isnan(value) else float(value))
    return values


# --- non-dominated sorting ------------------------------------------------------------------

def _as_minimized(values: np.ndarray, objectives_: Sequence[Objective]) -> np.ndarray:
    signs = np.array([-1.0 if o.direction == "maximize" else 1.0 for o in objectives_])
    return values * signs


def dominates(a: Sequence[float], b: Sequence[float], objectives_: Sequence[Objective]) -> bool:
    """Run `a` is no worse than `b` on every objective and better on at least one."""
    x = _as_minimized(np.asarray(a, dtype=np.float64), objectives_)
    y = _as_minimized(np.asarray(b, dtype=np.float64), objectives_)
    return bool(np.all(x <= y) and np.any(x < y))


def front_ranks(values: np.ndarray, objectives_: Sequence[Objective]) -> list[int | None]:
    """Each row's non-dominated front (1 = the Pareto front) for a (runs x objectives)
    array; a row with a NaN gets None and takes no part in the sorting."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), len(objectives_))
    scored = ~np.isnan(values).any(axis=1)
    points = _as_minimized(values[scored], objectives_)
    # dominated_by[i, j]: row j dominates row i
    no_worse = np.all(points[None, :, :] <= points[:, None, :], axis=2)
    better = np.any(points[None, :, :] < points[:, None, :], axis=2)
    dominated_by = no_worse & better
    ranks = np.zeros(len(points), dtype=np.int64)
    remaining = np.ones(len(points), dtype=bool)
    level = 0
    while remaining.any():
        level += 1
        front = remaining & ~(dominated_by[:, remaining].any(axis=1))
        ranks[front] = level
        remaining &= ~front
    out: list[int | None] = [None] * len(values)
    for index, rank in zip(np.flatnonzero(scored), ranks, strict=True):
        out[int(index)] = int(rank)
    return out


def with_fronts(frame: pl.DataFrame, objectives_: Sequence[Objective]) -> pl.DataFrame:
    """`frame` (summary rows: a column per metric, `status`) with a `pareto_front` column:
    each finished run's front, null for failed runs and runs missing an objective."""
    missing = [o.metric for o in objectives_ if o.metric not in frame.columns]
    if missing and frame.filter(pl.col("status") == "ok").height:
        raise NumerlabError(f"objective {missing[0]!r} is in no run's metrics.json")
    columns = [pl.col(o.metric).cast(pl.Float64).fill_null(math.nan)
               if o.metric in frame.columns else pl.lit(math.nan) for o in objectives_]
    values = frame.select(columns).to_numpy() if frame.height else np.empty((0, 0))
    ok = (frame.get_column("status") == "ok").to_numpy()
    values = np.where(ok[:, None], values, math.nan) if frame.height else values
    ranks = front_ranks(values, objectives_) if frame.height else []
    return frame.with_columns(pl.Series(FRONT, ranks, dtype=pl.Int64))


def front(frame: pl.DataFrame, objectives_: Sequence[Objective]) -> pl.DataFrame:
    """The Pareto front's runs (front 1), best first on the first objective."""
    ranked = frame if FRONT in frame.columns else with_fronts(frame, objectives_)
    first = objectives_[0]
    return (ranked.filter(pl.col(FRONT) == 1)
            .sort(first.metric, descending=first.direction == "maximize", nulls_last=True,
                  maintain_order=True))


# --- output ---------------------------------------------------------------------------------

def _heading(objectives_: Sequence[Objective]) -> str:
    arrows = {"maximize": "max", "minimize": "min"}
    return ", ".join(f"{arrows[o.direction]} {o.metric}" for o in objectives_)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.4f}"


def _cells(row: dict[str, Any], objectives_: Sequence[Objective]) -> list[str]:
    return [row["name"], short_overrides(row["overrides"]),
            *(_number(row[o.metric]) for o in objectives_)]


def print_front(frame: pl.DataFrame, objectives_: Sequence[Objective], console: Any = None
                ) -> None:
    """The front as a rich table under the sweep summary."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    runs = front(frame, objectives_)
    table = Table(title=f"Pareto front ({runs.height} runs; {_heading(objectives_)})",
                  header_style="bold")
    table.add_column("job")
    table.add_column("overrides", overflow="fold")
    for objective in objectives_:
        table.add_column(objective.metric.replace("_", " "), justify="right")
    for row in runs.iter_rows(named=True):
        table.add_row(*_cells(row, objectives_))
    console.print(table)


def markdown(frame: pl.DataFrame, objectives_: Sequence[Objective]) -> str:
    runs = front(frame, objectives_)
    header = ["job", "overrides", *(o.metric for o in objectives_)]
    lines = [f"## Pareto front ({runs.height} runs; {_heading(objectives_)})", "",
             "No run on the front is beaten on every objective by another run.", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(row, objectives_)) + " |"
              for row in runs.iter_rows(named=True)]
    return "\n".join(lines) + "\n"


def plot(frame: pl.DataFrame, objectives_: Sequence[Objective], path: Path) -> Path:
    """Each pair of objectives as a scatter of the finished runs, the front's runs
    highlighted (one panel for two objectives; every pair for more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = frame if FRONT in frame.columns else with_fronts(frame, objectives_)
    scored = ranked.filter(pl.col(FRONT).is_not_null())
    on_front = scored.get_column(FRONT).to_numpy() == 1
    pairs = [(i, j) for i in range(len(objectives_)) for j in range(i + 1, len(objectives_))]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs, strict=True):
        x_obj, y_obj = objectives_[i], objectives_[j]
        x = scored.get_column(x_obj.metric).cast(pl.Float64).to_numpy()
        y = scored.get_column(y_obj.metric).cast(pl.Float64).to_numpy()
        ax.scatter(x[~on_front], y[~on_front], c="0.6", s=20, label="dominated")
        order = np.argsort(x[on_front])
        # two objectives: the front is a curve; more: its runs projected, not joined
        style = "o-" if len(objectives_) == 2 else "o"
        ax.plot(x[on_front][order], y[on_front][order], style, c="tab:red", ms=6,
                label="Pareto front")
        ax.set_xlabel(f"{x_obj.metric} ({x_obj.direction})")
        ax.set_ylabel(f"{y_obj.metric} ({y_obj.direction})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize="small")
    fig.suptitle(f"Pareto front: {_heading(objectives_)}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(frame: pl.DataFrame, objectives_: Sequence[Objective], out_dir: Path | None,
           console: Any = None) -> list[Path]:
    """The summary's hook for a search over several objectives: print the front and, with
    `out_dir` (the sweep dir), write pareto.csv (every run with its front), pareto.md and
    pareto.png there; returns the files written."""
    if len(objectives_) < 2:
        return []
    ranked = with_fronts(frame, objectives_)
    print_front(ranked, objectives_, console)
    if out_dir is None:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = ["name", "overrides", FRONT, *(o.metric for o in objectives_ if o.metric in
                                          ranked.columns), "status", "run_dir"]
    csv_path, md_path = out_dir / PARETO_CSV, out_dir / PARETO_MD
    ranked.select(keep).sort(FRONT, nulls_last=True, maintain_order=True).write_csv(csv_path)
    md_path.write_text(markdown(ranked, objectives_))
    written = [csv_path, md_path]
    summary_md = out_dir / SUMMARY_MD
    if summary_md.is_file():  # the front under the ranked table
        summary_md.write_text(summary_md.read_text() + "\n" + markdown(ranked, objectives_))
    if ranked.filter(pl.col(FRONT).is_not_null()).height:
        written.append(plot(ranked, objectives_, out_dir / PARETO_PLOT))
    return written
