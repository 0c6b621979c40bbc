"""What a run can score, known before its first fit.

MMC is scored against the meta model and BMC against a benchmark column, each on the eras
whose rows they cover (`scoring.per_era_scores` leaves the others NaN; `mmc_n_eras` and
`bmc_n_eras` say how many eras each was scored on). Numerai's files cover only some eras:
meta_model.parquet a span of validation eras, the benchmark-models files the eras of the
splits downloaded (a partial download may hold validation_benchmark_models.parquet alone).

`plan_scoring` looks, once the rows are loaded and before anything is fitted, at which of
the eras a run scores (validation for task=train, the folds' test eras for task=cv) the
ids of those files cover:

- a reference that covers none of them is dropped, with a warning (no mmc_* or bmc_* keys;
  payout then counts CORR alone), as if its file were absent;
- unless the run asked for it: `scoring.benchmark=<a column>` (not `auto`), or an
  `optimized_metric` that needs it (mmc_*, bmc_*, payout, ...). That is one NumerlabError
  line before the first fit, not a failure after the last.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from numerlab.data.dataset import Dataset
from numerlab.data.layout import BENCHMARK_FILES, META_MODEL_COLUMN, META_MODEL_FILE
from numerlab.errors import NumerlabError

log = logging.getLogger(__name__)

MIN_ROWS_PER_ERA = 2  # a contribution ranks the rows of an era: one row scores nothing
AUTO = "auto"

# metrics.json keys that exist only where the meta model (MMC) or a benchmark (BMC) covers
# some scored era (`scoring.summarize`, `backtest.payout_metrics`)
MMC_PREFIXES = ("mmc_", "recent_mmc_")
BMC_PREFIXES = ("bmc_", "recent_bmc_")
BMC_KEYS = ("corr_with_benchmark", "benchmark_corr_mean")
PAYOUT_KEY = "payout"  # Numerai's payout counts MMC: without it, it is CORR's alone


@dataclass(frozen=True)
class Covered:
    """How many of the `scored` eras (first..last) a reference file covers."""

    what: str  # "MMC", "BMC"
    source: str  # the file(s), for messages
    eras: int
    scored: int
    first: str
    last: str

    def none_line(self) -> str:
        return (f"{self.source} covers none of the {self.scored} eras this run scores "
                f"({self.first}..{self.last})")


def needs_meta_model(metric: str) -> bool:
    return metric.startswith(MMC_PREFIXES) or metric == PAYOUT_KEY


def needs_benchmark(metric: str) -> bool:
    return metric.startswith(BMC_PREFIXES) or metric in BMC_KEYS


def objective_names(cfg: DictConfig) -> list[str]:
    """The metrics.json keys `optimized_metric` names: one key, a list of keys, or a mapping
    key -> direction (several objectives, `numerlab.pareto`)."""
    value = OmegaConf.select(cfg, "optimized_metric", default=None)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return []
    return [str(name) for name in (value if isinstance(value, list | dict) else [value])]


def scored_rows(rows: Dataset, eras: Sequence[str] | None = None) -> pl.DataFrame:
    """`id` and `era` (its position in `rows.era_labels`) of the rows of `eras` (all: None)."""
    index = np.asarray(rows.era_index)
    if eras is not None:
        position = {era: i for i, era in enumerate(rows.era_labels)}
        keep = np.isin(index, [position[e] for e in eras if e in position])
        return pl.DataFrame({"id": pl.Series(rows.ids[keep], dtype=pl.String),
                             "era": index[keep]})
    return pl.DataFrame({"id": pl.Series(rows.ids, dtype=pl.String), "era": index})


def covered_eras(scored: pl.DataFrame, reference: pl.DataFrame, column: str) -> int:
    """How many eras of `scored` (id, era) have MIN_ROWS_PER_ERA rows whose id `reference`
    holds a value of `column` for."""
    ids = reference.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan()
                           ).select("id")
    counts = scored.join(ids, on="id", how="semi").group_by("era").len()
    return counts.filter(pl.col("len") >= MIN_ROWS_PER_ERA).height


def plan_scoring(cfg: DictConfig, splits: Any, rows: Dataset,
                 eras: Sequence[str] | None = None, objective: bool = True
                 ) -> dict[str, Covered]:
    """Decide, before any fit, what the run scores on `rows` (only its `eras` if given):
    `splits.meta_model` and `splits.benchmarks` are dropped where they cover none of those
    eras (a warning), and a NumerlabError is raised where the run asked for what cannot be
    scored (`objective`: `optimized_metric` counts; the DVC stages, which no sweeper reads,
    pass False). Returns the coverage of each reference that is kept."""
    scored = scored_rows(rows, eras)
    labels = [rows.era_labels[i] for i in sorted(scored["era"].unique().to_list())]
    if not labels:
        return {}
    span = {"scored": len(labels), "first": labels[0], "last": labels[-1]}
    asked = objective_names(cfg) if objective else []
    mmc_metric = next((name for name in asked if needs_meta_model(name)), None)
    bmc_metric = next((name for name in asked if needs_benchmark(name)), None)
    kept: dict[str, Covered] = {}

    meta = splits.meta_model
    if meta is None:
        if mmc_metric:
            raise NumerlabError(f"optimized_metric={mmc_metric} cannot be scored: there is no "
                                f"{META_MODEL_FILE} in {splits.data_dir} (MMC needs it)")
    else:
        mmc = Covered("MMC", META_MODEL_FILE, covered_eras(scored, meta, META_MODEL_COLUMN),
                      **span)
        if mmc.eras:
            kept["mmc"] = mmc
            log.info("MMC on %d of %d scored eras (those %s covers)", mmc.eras, mmc.scored,
                     META_MODEL_FILE)
        elif mmc_metric:
            raise NumerlabError(f"optimized_metric={mmc_metric} cannot be scored: "
                                f"{mmc.none_line()}{_cv_hint(cfg)}")
        else:
            log.warning("%s: no mmc_* metrics, and payout counts CORR alone",
                        mmc.none_line())
            splits.meta_model = None

    setting = OmegaConf.select(cfg, "scoring.benchmark", default=None)
    name = splits.benchmark_name
    if splits.benchmarks is None:
        if bmc_metric:
            raise NumerlabError(f"optimized_metric={bmc_metric} cannot be scored: no benchmark "
                                f"column to score BMC against (scoring.benchmark={setting}; "
                                f"{' or '.join(BENCHMARK_FILES)} in {splits.data_dir})")
        return kept
    present = [f for f in BENCHMARK_FILES if (splits.data_dir / f).is_file()]
    bmc = Covered("BMC", " and ".join(present) or "the benchmark-models files",
                  covered_eras(scored, splits.benchmarks, "benchmark"), **span)
    if bmc.eras:
        kept["bmc"] = bmc
        log.info("BMC against %s on %d of %d scored eras", name, bmc.eras, bmc.scored)
        return kept
    if str(setting) != AUTO:
        raise NumerlabError(f"scoring.benchmark={setting}: {bmc.none_line()} (ids from "
                            f"another data version?){_cv_hint(cfg)}; scoring.benchmark="
                            f"{AUTO} scores BMC only where it can")
    if bmc_metric:
        raise NumerlabError(f"optimized_metric={bmc_metric} cannot be scored: "
                            f"{bmc.none_line()}{_cv_hint(cfg)}")
    log.warning("%s: no bmc_* metrics (BMC against %s)", bmc.none_line(), name)
    splits.benchmarks = None
    splits.benchmark_name = None
    return kept


def _cv_hint(cfg: DictConfig) -> str:
    """What else to try when a CV run scores training eras only."""
    if OmegaConf.select(cfg, "cv.eras", default=None) == "train" and str(
            OmegaConf.select(cfg, "task._target_", default="")).endswith(".cv.run"):
        return " (cv.eras=all also scores the validation eras)"
    return ""
