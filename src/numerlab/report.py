"""What a person sees: the metrics table in the terminal and PNG plots in the run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

# The headline metrics, in display order: (key, label, short header). A table with room
# shows each with its label, anything else in metrics.json after them; a narrow table
# (compare's terminal table, a sweep summary) shows only those with a short header.
HEADLINE = [
    ("corr_mean", "CORR mean", "CORR mean"),
    ("corr_std", "CORR std", None),
    ("corr_sharpe", "CORR sharpe", "CORR sharpe"),
    ("corr_max_drawdown", "CORR max drawdown", "CORR max DD"),
    ("mmc_mean", "MMC mean", "MMC mean"),
    ("mmc_std", "MMC std", None),
    ("mmc_sharpe", "MMC sharpe", None),
    ("bmc_mean", "BMC mean", "BMC mean"),
    ("bmc_sharpe", "BMC sharpe", None),
    ("benchmark_corr_mean", "benchmark CORR mean", None),
    ("corr_with_benchmark", "corr with benchmark", None),
    ("fnc_mean", "FNC mean", None),
    ("max_feature_exposure", "max feature exposure", "max exposure"),
    ("payout", "payout per era", None),
    ("n_eras", "eras scored", None),
    ("mmc_n_eras", "eras with meta model", None),
    ("bmc_n_eras", "eras with benchmark", None),
]
HEADLINE_KEYS = [key for key, _, _ in HEADLINE]
NARROW = {key: short for key, _, short in HEADLINE if short}
"""The narrow tables' columns, in HEADLINE's order, and their short headers."""
RECENT_PREFIX = "recent_"  # recent_corr_mean ...: the same over the last scoring.recent_eras


def is_metric_value(value: Any) -> bool:
    """A metrics.json value a table shows as a number: an int or float (a bool is not one),
    or None (a score that is undefined, e.g. the sharpe of one era)."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:+.4f}" if np.isfinite(value) else "—"


def metrics_table(metrics: dict[str, Any], title: str = "validation"):
    """The headline metrics; a column for the recent eras when metrics.json has them and
    they are fewer than all scored eras."""
    from rich.table import Table

    recent_n = metrics.get("recent_n_eras")
    show_recent = isinstance(recent_n, int) and recent_n < (metrics.get("n_eras") or 0)
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("all eras", justify="right")
    if show_recent:
        table.add_column(f"last {recent_n}", justify="right")
    for key, label, _ in HEADLINE:
        if key in metrics:
            row = [label, _fmt(metrics[key])]
            if show_recent:
                row.append(_fmt(metrics.get(RECENT_PREFIX + key)))
            table.add_row(*row)
    return table


def print_metrics(metrics: dict[str, Any], title: str = "validation") -> None:
    from rich.console import Console

    Console().print(metrics_table(metrics, title))


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display): every plot's entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def running_sum(values: np.ndarray | pl.Series) -> np.ndarray:
    """Cumulative sum of per-era scores skipping undefined (NaN or null) eras, and NaN
    before the first defined era: MMC's curve starts where the meta model does, BMC's where
    the benchmark does. One rule for every cumulative plot (run, CV, compare, `dvc plots`)."""
    if isinstance(values, pl.Series):
        values = values.cast(pl.Float64).fill_null(np.nan).to_numpy()
    values = np.asarray(values, dtype=np.float64)
    out = np.nancumsum(values)
    known = np.flatnonzero(~np.isnan(values))
    out[: known[0] if len(known) else len(out)] = np.nan
    return out


# per_era columns drawn cumulatively, and their legend names
CUMULATIVE_LINES = (("corr", "CORR"), ("mmc", "MMC"), ("bmc", "BMC"), ("fnc", "FNC"),
                    ("benchmark_corr", "benchmark's CORR"))


def scored_span(eras: list[str], values: np.ndarray) -> str:
    """`eras 0007–0012, 6 of 12`: the eras where `values` is defined."""
    known = np.flatnonzero(~np.isnan(values))
    if not len(known):
        return "no eras"
    span = f"eras {eras[known[0]]}–{eras[known[-1]]}"
    return span if len(known) == len(eras) else f"{span}, {len(known)} of {len(eras)}"


def scores_figure(per_era: pl.DataFrame) -> Any:
    """Cumulative per-era CORR, MMC, BMC, FNC and, where a benchmark was scored, the
    benchmark's own CORR: each line labelled with the eras it covers (MMC starts where the
    meta model does, BMC and the benchmark where the benchmark does)."""
    plt = pyplot()
    eras = [str(e) for e in per_era["era"].to_list()]
    x = np.arange(len(eras))
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for column, name in CUMULATIVE_LINES:
        if column not in per_era.columns:
            continue
        values = per_era[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
        cumulative = running_sum(values)
        known = ~np.isnan(cumulative)
        if not known.any():
            continue
        style = {"color": "black", "linestyle": "--"} if column == "benchmark_corr" else {}
        ax.plot(x[known], cumulative[known], label=f"{name} ({scored_span(eras, values)})",
                **style)
    era_axis(ax, x, eras, "cumulative score",
             "Cumulative per-era validation scores (each over the eras in its label)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_scores(per_era: pl.DataFrame, out_dir: Path) -> list[Path]:
    """Cumulative per-era scores (`scores_figure`) and the per-era CORR bars; returns the
    PNG paths."""
    plt = pyplot()

    out_dir.mkdir(parents=True, exist_ok=True)
    eras = per_era["era"].to_list()
    x = np.arange(len(eras))
    tick_step = max(1, len(eras) // 10)
    written = []

    fig = scores_figure(per_era)
    written.append(out_dir / "cumulative_scores.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    corr = per_era["corr"].to_numpy().astype(float)
    ax.bar(x, corr, color=np.where(corr >= 0, "tab:green", "tab:red"))
    ax.axhline(float(np.mean(corr)), color="black", linestyle="--", linewidth=0.8,
               label=f"mean {np.mean(corr):+.4f}")
    ax.set_xticks(x[::tick_step], eras[::tick_step], rotation=45)
    ax.set_xlabel("era")
    ax.set_ylabel("CORR")
    ax.set_title("Per-era validation CORR")
    ax.legend()
    fig.tight_layout()
    written.append(out_dir / "per_era_corr.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def print_folds(folds: pl.DataFrame) -> None:
    """The CV folds and their scores as a terminal table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="walk-forward CV folds", show_header=True, header_style="bold")
    for name in ("fold", "train eras", "n", "test eras", "n", "CORR mean", "CORR sharpe",
                 "MMC mean"):
        table.add_column(name, justify="left" if "eras" in name else "right")
    for row in folds.iter_rows(named=True):
        table.add_row(str(row["fold"]), f"{row['train_first_era']}..{row['train_last_era']}",
                      str(row["n_train_eras"]),
                      f"{row['test_first_era']}..{row['test_last_era']}",
                      str(row["n_test_eras"]), _fmt(row["corr_mean"]),
                      _fmt(row["corr_sharpe"]), _fmt(row["mmc_mean"]))
    Console().print(table)


def plot_folds(per_era: pl.DataFrame, folds: pl.DataFrame, out_dir: Path) -> Path:
    """`folds_figure` as cv_folds.png in `out_dir`."""
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = folds_figure(per_era, folds)
    path = out_dir / "cv_folds.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def folds_figure(per_era: pl.DataFrame, folds: pl.DataFrame) -> Any:
    """Cumulative out-of-fold CORR over all test eras, fold boundaries marked and the folds
    named along the top of the axes, clear of the curve."""
    plt = pyplot()
    eras = per_era["era"].to_list()
    x = np.arange(len(eras))
    cumulative = running_sum(per_era["corr"])
    known = ~np.isnan(cumulative)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(x[known], cumulative[known], label="cumulative out-of-fold CORR")
    position = {era: i for i, era in enumerate(eras)}
    for row in folds.iter_rows(named=True):
        start = position.get(row["test_first_era"])
        if start is not None:
            ax.axvline(start - 0.5, color="grey", linestyle=":", linewidth=0.8)
            # x in data, y in axes coordinates: the label sits under the top edge
            ax.annotate(f"fold {row['fold']}", (start - 0.5, 1), xytext=(2, -3),
                        xycoords=ax.get_xaxis_transform(), textcoords="offset points",
                        fontsize=8, color="grey", va="top")
    era_axis(ax, x, eras, "cumulative CORR", "Walk-forward CV: cumulative out-of-fold CORR by era")
    ax.margins(y=0.12)  # room under the fold labels
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def short_overrides(text: str | None, digits: int = 4) -> str:
    """A job's overrides as a table shows them: `model.params.` and `model.` left off and
    long numbers to `digits` significant digits (summary.csv keeps them whole)."""
    if not text:
        return "—"

    def one(item: str) -> str:
        key, sep, value = item.partition("=")
        for prefix in ("model.params.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        try:
            number = float(value)
        except ValueError:
            return key + sep + value
        return f"{key}{sep}{value if number.is_integer() else f'{number:.{digits}g}'}"

    return ", ".join(one(item) for item in text.split(","))


def era_axis(ax: Any, x: np.ndarray, eras: Any, ylabel: str, title: str) -> None:
    """A cumulative-by-era axis: the zero line, about ten era ticks, the labels and title."""
    ax.axhline(0, color="grey", linewidth=0.8)
    step = max(1, len(eras) // 10)
    ax.set_xticks(x[::step], eras[::step], rotation=45)
    ax.set_xlabel("era")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
