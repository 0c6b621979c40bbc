"""Which run to submit: finished runs side by side (`python run.py task=compare runs=...`).

Runs are run dirs (each with metrics.json), or dirs holding run dirs one or two levels down
(a sweep dir `multirun/<date>/<time>`, `outputs/`, a CV run's fold dirs). A run is named by
its distinguishing overrides (`.hydra/overrides.yaml` minus the overrides every compared run
shares), falling back to its dir name.

Runs need not have been scored on the same data (a day's dir may mix synthetic and v5 runs):
the metrics are always compared; each run's scored eras are shown (count, first–last); the
best value of a metric is marked only among runs scored on the same eras; correlations are
taken pair by pair over what the two runs share (ids, eras), a pair sharing nothing left
empty with a note.

Written into the output dir:
- compare.csv: one row per run, every numeric metrics.json key, its scored eras;
- plots/compare_cumulative.png: cumulative per-era CORR and MMC (and BMC where a run has it);
- plots/compare_prediction_corr.png: correlation of the runs' validation predictions, joined
  by id: Pearson correlation of their within-era percentile ranks over the shared rows;
- plots/compare_era_corr.png: correlation of the runs' per-era CORR series (shared eras);
- compare_features.csv: each run's top features (features.parquet);
- report.html: all of the above on one self-contained page (images inline, base64).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from numerlab import artifacts
from numerlab.diagnostics import FEATURES_FILE, MEMBERS_FILE
from numerlab.errors import NumerlabError, message_line
from numerlab.report import HEADLINE_KEYS, NARROW, is_metric_value, pyplot, running_sum
from numerlab.summary import CHOSEN_ON_REPORTED

log = logging.getLogger(__name__)

COMPARE_CSV = "compare.csv"
FEATURES_CSV = "compare_features.csv"
REPORT_HTML = "report.html"
CUMULATIVE_PNG = "compare_cumulative.png"
PREDICTION_CORR_PNG = "compare_prediction_corr.png"
ERA_CORR_PNG = "compare_era_corr.png"

SCORES = (("corr", "CORR"), ("mmc", "MMC"), ("bmc", "BMC"))
LEGEND_CHARS = 100  # longer run names are cut in plot legends (the tables show them whole)
TOP_FEATURES_SHOWN = 10
SCORED_ERAS, ERA_GROUP = "scored_eras", "era_group"  # compare.csv columns
MIXED_ERAS = ("the runs were scored on different eras (column eras): best is marked only "
              "among runs scored on the same eras")


@dataclass
class Run:
    """One finished run: where, what it is called, what it wrote."""

    run_dir: Path
    name: str
    overrides: list[str]
    metrics: dict[str, Any]
    per_era: pl.DataFrame | None = None
    features: pl.DataFrame | None = None
    members: pl.DataFrame | None = None
    label: str = field(default="")

    @property
    def scored_eras(self) -> list[str]:
        """The eras with a defined per-era CORR, in era order ([] without per_era.parquet)."""
        if self.per_era is None or "corr" not in self.per_era.columns:
            return []
        from numerlab.eras import sort_eras

        scored = self.per_era.filter(pl.col("corr").is_not_null() & ~pl.col("corr").is_nan())
        return sort_eras(scored["era"].cast(pl.String).to_list())


def era_span(eras: Sequence[str]) -> str:
    """`37 eras 0575–0611`; `no per-era scores` for none."""
    if not eras:
        return "no per-era scores"
    return f"{len(eras)} eras {eras[0]}–{eras[-1]}" if len(eras) > 1 else f"1 era {eras[0]}"


def era_groups(runs: list[Run]) -> list[int]:
    """Each run's group: runs scored on exactly the same eras share one (numbered by first
    appearance); a run without per-era scores is a group of its own."""
    keys: dict[tuple[str, ...], int] = {}
    groups = []
    for i, run in enumerate(runs):
        eras = tuple(run.scored_eras)
        key = eras if eras else (f"#{i}",)
        groups.append(keys.setdefault(key, len(keys)))
    return groups


# --- finding and reading runs ---------------------------------------------------------------

def run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """The run dirs `paths` name: a dir with metrics.json is a run; any other dir is searched
    one or two levels down (sweep, outputs/, fold dirs) and its finished runs are taken, the
    unfinished skipped with a warning. A named run dir without metrics.json, or a dir with no
    finished run in it, is an error."""
    from numerlab.summary import find_run_dirs

    found: list[Path] = []
    for raw in paths:
        path = Path(str(raw)).expanduser()
        if not path.is_dir():
            raise NumerlabError(f"runs: {path} is not a directory")
        if (path / artifacts.METRICS).is_file():
            found.append(path)
            continue
        inside = [d for d in find_run_dirs(path) if d != path]
        finished = [d for d in inside if (d / artifacts.METRICS).is_file()]
        if not finished:
            what = (f"has no {artifacts.METRICS} (the run did not finish)" if not inside or
                    (path / ".hydra").is_dir() else
                    f"holds no finished run ({len(inside)} run dirs, none with "
                    f"{artifacts.METRICS})")
            raise NumerlabError(f"runs: {path} {what}")
        for skipped in sorted(set(inside) - set(finished)):
            log.warning("skipping %s: no %s", skipped, artifacts.METRICS)
        found.extend(finished)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if len(unique) < 1:
        raise NumerlabError("runs: name at least one run dir or sweep dir")
    return unique


def _read_parquet(path: Path, columns: list[str] | None = None) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pl.read_parquet(path, columns=columns)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise NumerlabError(f"{path}: cannot read ({message_line(exc)})") from None


def read_run(run_dir: Path) -> Run:
    from numerlab.summary import read_overrides

    path = run_dir / artifacts.METRICS
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NumerlabError(f"{path}: cannot read ({message_line(exc)})") from None
    if not isinstance(metrics, dict):
        raise NumerlabError(f"{path}: not a JSON object")
    return Run(run_dir=run_dir, name=run_dir.name, overrides=read_overrides(run_dir),
               metrics=metrics, per_era=_read_parquet(run_dir / artifacts.PER_ERA),
               features=_read_parquet(run_dir / FEATURES_FILE),
               members=_read_parquet(run_dir / MEMBERS_FILE))


def name_runs(runs: list[Run]) -> None:
    """Each run's label: its distinguishing overrides (those not every compared run has,
    `k=v, k=v`), else its dir name; a label two runs share gets the dir appended."""
    from numerlab.summary import distinguishing

    labels = [label or run.name for label, run in
              zip(distinguishing([r.overrides for r in runs], sep=", "), runs, strict=True)]
    for i, run in enumerate(runs):
        repeated = labels.count(labels[i]) > 1
        run.label = f"{labels[i]} ({run.run_dir.parent.name}/{run.name})" if repeated \
            else labels[i]


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    runs = [read_run(d) for d in run_dirs(paths)]
    name_runs(runs)
    return runs


# --- tables ---------------------------------------------------------------------------------

def metrics_frame(runs: list[Run]) -> pl.DataFrame:
    """compare.csv: run (label), the headline metrics any run has (`report.HEADLINE`'s
    order), the other numeric metrics, model, target, scored_eras (`era_span`), era_group
    (runs scored on the same eras share it), run_dir."""
    keys: list[str] = [k for k in HEADLINE_KEYS if any(k in r.metrics for r in runs)]
    for run in runs:
        keys += [k for k, v in run.metrics.items() if k not in keys and is_metric_value(v)]
    columns = [pl.Series("run", [r.label for r in runs], dtype=pl.String)]
    from numerlab.summary import metric_series

    columns += [metric_series(key, [v if is_metric_value(v) else None for v in
                                    (r.metrics.get(key) for r in runs)]) for key in keys]
    for key in ("model", "target"):
        columns.append(pl.Series(key, [str(r.metrics.get(key, "")) for r in runs]))
    columns.append(pl.Series(SCORED_ERAS, [era_span(r.scored_eras) for r in runs]))
    columns.append(pl.Series(ERA_GROUP, era_groups(runs), dtype=pl.Int64))
    columns.append(pl.Series("run_dir", [str(r.run_dir) for r in runs]))
    return pl.DataFrame(columns)


def features_frame(runs: list[Run]) -> pl.DataFrame:
    """compare_features.csv: run, kind, rank, feature, value for every run that wrote
    features.parquet."""
    parts = [r.features.with_columns(pl.lit(r.label).alias("run"))
             .select("run", "kind", "rank", "feature", "value")
             for r in runs if r.features is not None]
    if not parts:
        return pl.DataFrame(schema={"run": pl.String, "kind": pl.String, "rank": pl.Int32,
                                    "feature": pl.String, "value": pl.Float64})
    return pl.concat(parts)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:+.4f}"
    return str(value)


def shown_metrics(frame: pl.DataFrame) -> list[str]:
    """The headline metrics the frame has, in `report.HEADLINE`'s order."""
    return [k for k in HEADLINE_KEYS if k in frame.columns]


def print_table(frame: pl.DataFrame, console: Any = None) -> None:
    """The runs side by side in the terminal: one row per run (numbered as in the plots),
    the main metrics, the best value of each column in bold."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    shown = [k for k in NARROW if k in frame.columns]  # the narrow ones: a run name needs room
    mixed = ERA_GROUP in frame.columns and frame[ERA_GROUP].n_unique() > 1
    table = Table(title="runs compared", header_style="bold", caption="best in bold ("
                  + (f"{MIXED_ERAS}; " if mixed else "") +
                  f"{CHOSEN_ON_REPORTED}); every metric in compare.csv, plots in report.html")
    table.add_column("#", justify="right")
    table.add_column("run", overflow="fold", min_width=14, ratio=1)
    if SCORED_ERAS in frame.columns:
        table.add_column("eras", overflow="fold", min_width=9, max_width=16)
    for key in shown:
        table.add_column(NARROW[key], justify="right", min_width=7, max_width=8)
    best = best_marks(frame, shown)
    for number, row in enumerate(frame.iter_rows(named=True), start=1):
        cells = [str(number), escape(row["run"])]
        if SCORED_ERAS in frame.columns:
            cells.append(row[SCORED_ERAS])
        for key in shown:
            text = _cell(row[key])
            cells.append(f"[bold]{text}[/bold]" if best[key][number - 1] else text)
        table.add_row(*cells)
    console.print(table)


LOWER_IS_BETTER = ("corr_max_drawdown", "max_feature_exposure", "corr_std", "mmc_std")


def best_marks(frame: pl.DataFrame, keys: Sequence[str]) -> dict[str, list[bool]]:
    """For each metric in `keys`, which rows hold the best value among the runs scored on
    the same eras (`era_group`) as they were; a run alone on its eras is never marked."""
    groups = frame[ERA_GROUP].to_list() if ERA_GROUP in frame.columns else [0] * frame.height
    marks: dict[str, list[bool]] = {}
    for key in keys:
        best = {g: _best(frame.filter(pl.Series(groups) == g), key) for g in set(groups)}
        marks[key] = [value is not None and groups.count(g) > 1 and value == best[g]
                      for value, g in zip(frame[key].to_list(), groups, strict=True)]
    return marks


def _best(frame: pl.DataFrame, key: str) -> Any:
    if key.endswith("n_eras"):  # counts: none is better
        return None
    values = [v for v in frame[key].to_list() if v is not None and math.isfinite(v)]
    if not values:
        return None
    return min(values) if key in LOWER_IS_BETTER else max(values)


# --- correlations ---------------------------------------------------------------------------

@dataclass
class Correlations:
    """A correlation matrix of runs taken pair by pair over what each pair shares:
    `shared[i, j]` ids (or eras); NaN where a pair shares fewer than MIN_SHARED."""

    labels: list[str]
    matrix: np.ndarray
    shared: np.ndarray
    numbers: list[int]  # each row's run number (1-based, as in the tables)

    def unshared(self) -> list[tuple[int, int]]:
        """Run-number pairs that share too little to correlate."""
        n = len(self.labels)
        return [(self.numbers[i], self.numbers[j]) for i in range(n) for j in range(i + 1, n)
                if self.shared[i, j] < MIN_SHARED]

    def any_pair(self) -> bool:
        n = len(self.labels)
        return any(np.isfinite(self.matrix[i, j]) for i in range(n) for j in range(i + 1, n))


MIN_SHARED = 3  # fewer shared ids or eras: no correlation


def _pairwise(frames: list[pl.DataFrame], on: str, correlate: Any) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    n = len(frames)
    matrix, shared = np.full((n, n), np.nan), np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(i, n):
            other = frames[j].rename({"v": "w"})
            if on != "era":  # the era is the first run's (the same where ids agree)
                other = other.drop("era")
            joined = frames[i].join(other, on=on, how="inner") if i != j else \
                frames[i].with_columns(pl.col("v").alias("w"))
            shared[i, j] = shared[j, i] = joined.height
            if joined.height >= MIN_SHARED:
                matrix[i, j] = matrix[j, i] = correlate(joined)
    return matrix, shared


def _rank_correlation(joined: pl.DataFrame) -> float:
    """Pearson correlation of the two columns' within-era percentile ranks."""
    from numerlab.scoring import EraSegments, era_codes, tie_kept_rank

    codes, eras = era_codes(joined["era"])
    segments = EraSegments.of(codes, len(eras))
    ranks = np.empty((2, joined.height))
    for row, column in zip(ranks, ("v", "w"), strict=True):  # numerlab's one rank
        values = joined[column].cast(pl.Float64).to_numpy()
        row[segments.order] = tie_kept_rank(segments, values[segments.order])
    return float(np.corrcoef(ranks)[0, 1])


def _pearson(joined: pl.DataFrame) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.corrcoef(joined["v"].to_numpy(), joined["w"].to_numpy())[0, 1])


def prediction_correlations(runs: list[Run]) -> Correlations | None:
    """Pearson correlation of each pair of runs' within-era percentile ranks of their
    validation predictions, over the ids both predicted (inner join by id). None when fewer
    than two runs have predictions."""
    frames, labels, numbers = [], [], []
    for i, run in enumerate(runs):
        path = run.run_dir / artifacts.VALIDATION_PREDICTIONS
        predictions = _read_parquet(path, columns=["id", "era", "prediction"])
        if predictions is None:
            log.warning("%s: no %s, left out of the prediction correlations", run.run_dir,
                        artifacts.VALIDATION_PREDICTIONS)
            continue
        frames.append(predictions.select("id", pl.col("era").cast(pl.String),
                                         pl.col("prediction").alias("v")))
        labels.append(run.label)
        numbers.append(i + 1)
    if len(frames) < 2:
        return None
    matrix, shared = _pairwise(frames, "id", _rank_correlation)
    return Correlations(labels, matrix, shared, numbers)


def prediction_correlation(runs: list[Run]) -> tuple[list[str], np.ndarray] | None:
    """(labels, matrix) of `prediction_correlations`."""
    found = prediction_correlations(runs)
    return None if found is None else (found.labels, found.matrix)


def era_corr_correlations(runs: list[Run]) -> Correlations | None:
    """Pearson correlation of each pair of runs' per-era CORR over the eras both scored.
    None when fewer than two runs have per_era.parquet."""
    with_eras = [(i, r) for i, r in enumerate(runs) if r.per_era is not None]
    if len(with_eras) < 2:
        return None
    frames = [r.per_era.select(pl.col("era").cast(pl.String), pl.col("corr").alias("v"))
              .filter(pl.col("v").is_not_null() & ~pl.col("v").is_nan()) for _, r in with_eras]
    matrix, shared = _pairwise(frames, "era", _pearson)
    return Correlations([r.label for _, r in with_eras], matrix, shared,
                        [i + 1 for i, _ in with_eras])


def era_corr_correlation(runs: list[Run]) -> tuple[list[str], np.ndarray] | None:
    """(labels, matrix) of `era_corr_correlations`."""
    found = era_corr_correlations(runs)
    return None if found is None else (found.labels, found.matrix)


# --- plots ----------------------------------------------------------------------------------

def _short(label: str, limit: int = LEGEND_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def plot_cumulative(runs: list[Run], path: Path) -> Path | None:
    """One figure, one panel per score (CORR, MMC, BMC where some run has it): each run's
    cumulative per-era score over the eras (era labels on a shared x axis)."""
    with_eras = [r for r in runs if r.per_era is not None]
    if not with_eras:
        return None
    from numerlab.eras import sort_eras

    scores = [(c, title) for c, title in SCORES
              if any(c in r.per_era.columns and r.per_era[c].is_not_null().any()
                     and not r.per_era[c].is_nan().all() for r in with_eras)]
    eras = sort_eras({e for r in with_eras for e in r.per_era["era"].to_list()})
    position = {e: i for i, e in enumerate(eras)}
    plt = pyplot()
    fig, axes = plt.subplots(len(scores), 1, figsize=(10, 3.2 * len(scores) + 1.2),
                             sharex=True, squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (column, title) in zip(axes[:, 0], scores, strict=True):
        for i, run in enumerate(runs):
            if run.per_era is None:
                continue
            if column not in run.per_era.columns:
                continue
            cumulative = running_sum(run.per_era[column])
            known = ~np.isnan(cumulative)
            if not known.any():
                continue
            x = np.array([position[e] for e in run.per_era["era"].to_list()])
            ax.plot(x[known], cumulative[known], color=colors(i % 10),
                    linewidth=1.6, label=f"{i + 1}: {_short(run.label)} "
                    f"({era_span(run.scored_eras)})")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_ylabel(f"cumulative {title}")
        ax.set_title(f"Cumulative per-era validation {title}", fontsize=11, loc="left")
        ax.grid(alpha=0.3)
    step = max(1, len(eras) // 12)
    axes[-1, 0].set_xticks(range(0, len(eras), step), eras[::step], rotation=45)
    axes[-1, 0].set_xlabel("era")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower left", ncol=1, fontsize=9, frameon=False,
               bbox_to_anchor=(0.01, 0.0))
    fig.tight_layout(rect=(0, min(0.5, 0.03 * len(labels) + 0.02), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def matrix_figure(labels: list[str], matrix: np.ndarray, title: str,
                  numbers: list[int] | None = None) -> Any:
    """A correlation heatmap with the value in every cell ("—" where a pair shares too
    little); runs numbered on the axes (`numbers`: their numbers in the tables) and named
    in a key below (full names are too long for tick labels). The title is wrapped to the
    figure's width, so it is never cut."""
    import textwrap

    plt = pyplot()
    n = len(labels)
    numbers = numbers or list(range(1, n + 1))
    size = max(4.5, 0.9 * n + 2.5)
    key_lines = [f"{k}: {_short(label, 90)}" for k, label in zip(numbers, labels, strict=True)]
    fig, ax = plt.subplots(figsize=(size + 1.5, size + 0.28 * n))
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    ticks = [str(k) for k in numbers]
    ax.set_xticks(range(n), ticks)
    ax.set_yticks(range(n), ticks)
    ax.set_xlabel("run")
    ax.set_ylabel("run")
    for i in range(n):
        for j in range(n):
            value = matrix[i, j]
            text = "—" if not np.isfinite(value) else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if np.isfinite(value) and abs(value) > 0.6 else "black")
    # about 11 characters of an 11 pt title per inch of figure width
    fig.suptitle(textwrap.fill(title, width=int(10 * (size + 1.5)) - 4), fontsize=11)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="correlation")
    fig.text(0.02, 0.01, "\n".join(key_lines), fontsize=8.5, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.035 * n + 0.03, 1, 1))
    return fig


def plot_matrix(labels: list[str], matrix: np.ndarray, title: str, path: Path,
                numbers: list[int] | None = None) -> Path:
    """`matrix_figure` saved as a PNG (bounding box tight: nothing drawn is cut off)."""
    plt = pyplot()
    fig = matrix_figure(labels, matrix, title, numbers)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path


# --- the page -------------------------------------------------------------------------------

def _html_table(frame: pl.DataFrame, columns: list[str],
                marks: dict[str, list[bool]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = []
    for number, row in enumerate(frame.iter_rows(named=True)):
        cells = []
        for c in columns:
            value = row[c]
            text = html.escape(_cell(value))
            numeric = value is not None and is_metric_value(value)
            strong = marks is not None and c in marks and marks[c][number]
            cells.append(f"<td class=\"{'num' if numeric else 'txt'}\">"
                         f"{'<b>' + text + '</b>' if strong else text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _image(path: Path | None, alt: str, css: str = "wide") -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img class="{css}" alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{data}"></figure>')


def _features_html(runs: list[Run]) -> str:
    parts = []
    for kind, title in (("exposure", "exposure (mean |corr| per era)"),
                        ("gain", "gain importance (share of total gain)")):
        rows = [(n, r) for n, r in enumerate(runs, start=1) if r.features is not None
                and r.features.filter(pl.col("kind") == kind).height]
        if not rows:
            continue
        head = "".join(f"<th title=\"{html.escape(r.label)}\">run {n}: "
                       f"{html.escape(_short(r.label, 40))}</th>" for n, r in rows)
        deepest = max(int(r.features.filter(pl.col("kind") == kind)["rank"].max())
                      for _, r in rows)
        lines = []
        for rank in range(1, min(TOP_FEATURES_SHOWN, deepest) + 1):
            cells = []
            for _, run in rows:
                hit = run.features.filter((pl.col("kind") == kind) & (pl.col("rank") == rank))
                cells.append("<td class=\"txt\"></td>" if not hit.height else
                             f"<td class=\"txt\">{html.escape(hit['feature'][0])} "
                             f"<span class=\"dim\">{hit['value'][0]:.3f}</span></td>")
            lines.append(f"<tr><td class=\"num\">{rank}</td>{''.join(cells)}</tr>")
        parts.append(f"<h3>Top features by {html.escape(title)}</h3><div class=\"scroll\">"
                     f"<table class=\"features\"><thead><tr><th>#</th>{head}</tr></thead>"
                     f"<tbody>{''.join(lines)}</tbody></table></div>")
    return "".join(parts) or "<p class=\"dim\">No run wrote features.parquet.</p>"


def _members_html(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        if run.members is None:
            continue
        parts.append(f"<h3>{html.escape(run.label)}</h3>"
                     + _html_table(run.members, run.members.columns))
    return ("<h2>Ensemble members</h2>" + "".join(parts)) if parts else ""


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.txt{word-break:break-word;max-width:28rem}
.scroll{overflow-x:auto;max-width:100%}
table.features th,table.features td.txt{max-width:12rem;overflow-wrap:anywhere}
figure{margin:.5rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
img.square{max-width:720px}
.dim{color:#777}
"""


def _note(text: str | None) -> str:
    return f"<p class=\"dim\">{html.escape(text)}</p>" if text else ""


def render_html(runs: list[Run], frame: pl.DataFrame, images: dict[str, Path | None],
                title: str = "numerlab: runs compared", notes: dict[str, str] | None = None
                ) -> str:
    frame = frame.with_columns(pl.int_range(1, frame.height + 1).alias("#"))
    if SCORED_ERAS not in frame.columns:
        frame = frame.with_columns(pl.lit("").alias(SCORED_ERAS))
    shown = ["#", "run", SCORED_ERAS, *shown_metrics(frame)]
    marks = best_marks(frame, shown_metrics(frame))
    mixed = ERA_GROUP in frame.columns and frame[ERA_GROUP].n_unique() > 1
    notes = notes or {}
    dirs = pl.DataFrame({"#": list(range(1, len(runs) + 1)),
                         "run": [r.label for r in runs],
                         "model": [str(r.metrics.get("model", "")) for r in runs],
                         "target": [str(r.metrics.get("target", "")) for r in runs],
                         "scored eras": [era_span(r.scored_eras) for r in runs],
                         "run dir": [str(r.run_dir) for r in runs]})
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        (f"<p class=\"dim\">{len(runs)} runs, named by the overrides that tell them apart. "
        f"Best value of each metric in bold (lowest for drawdown and exposure).</p>"),
        "<h2>Metrics</h2>", _html_table(frame, shown, marks),
        _note(f"{MIXED_ERAS}.") if mixed else "",
        f"<p class=\"dim\">Best in bold; {html.escape(CHOSEN_ON_REPORTED)}.</p>",
        "<h2>Cumulative per-era scores</h2>",
        _image(images.get("cumulative"), "cumulative per-era scores"),
        "<h2>Correlation of validation predictions</h2>",
        ("<p class=\"dim\">Pearson correlation of within-era percentile ranks, pair by pair "
        "over the ids both runs predicted.</p>"),
        _note(notes.get("prediction_corr")),
        _image(images.get("prediction_corr"), "prediction correlation", "square") or
        "<p class=\"dim\">Needs two runs with predictions/validation.parquet sharing at "
        "least 3 ids.</p>",
        "<h2>Correlation of per-era CORR</h2>",
        _note(notes.get("era_corr")),
        _image(images.get("era_corr"), "per-era CORR correlation", "square") or
        "<p class=\"dim\">Needs two runs sharing at least 3 scored eras.</p>",
        "<h2>Feature diagnostics</h2>", _features_html(runs),
        _members_html(runs),
        "<h2>Runs</h2>", _html_table(dirs, dirs.columns),
    ]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(s for s in sections if s) + "</body></html>\n")


def unshared_note(found: Correlations, what: str) -> str:
    """`runs 1 and 2 share no validation ids: not correlated (empty cells)`, or ''."""
    pairs = found.unshared()
    if not pairs:
        return ""
    row = {number: i for i, number in enumerate(found.numbers)}
    named = "; ".join(f"runs {a} and {b} share {found.shared[row[a], row[b]]} {what}"
                      for a, b in pairs)
    return (f"{named} (fewer than {MIN_SHARED}): not correlated, their cells are empty "
            f"(scored on different data?)")


def build_report(paths: Sequence[str | Path], out_dir: Path, console: Any = None
                 ) -> pl.DataFrame:
    """Compare the runs `paths` name; write compare.csv, compare_features.csv, the plots and
    report.html into `out_dir`; print the table. Returns the compare.csv frame."""
    runs = load_runs(paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = metrics_frame(runs)
    frame.write_csv(out_dir / COMPARE_CSV)
    features_frame(runs).write_csv(out_dir / FEATURES_CSV)
    plots = out_dir / artifacts.PLOTS_DIR
    images: dict[str, Path | None] = {"cumulative": plot_cumulative(runs,
                                                                    plots / CUMULATIVE_PNG)}
    notes: dict[str, str] = {}
    for key, found, what, title, png in (
            ("prediction_corr", prediction_correlations(runs), "validation ids",
             "Correlation of validation predictions (within-era ranks)", PREDICTION_CORR_PNG),
            ("era_corr", era_corr_correlations(runs), "scored eras",
             "Correlation of per-era CORR between runs", ERA_CORR_PNG)):
        images[key] = None
        if found is None:
            continue
        notes[key] = unshared_note(found, what)
        if notes[key]:
            log.warning("%s", notes[key])
        if found.any_pair():
            images[key] = plot_matrix(found.labels, found.matrix, title, plots / png,
                                      found.numbers)
    (out_dir / REPORT_HTML).write_text(render_html(runs, frame, images, notes=notes))
    print_table(frame, console)
    return frame
