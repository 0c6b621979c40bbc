"""`model=ensemble`: several model configs, possibly on several targets, fit as members and
combined per era into one prediction. To every task it is a model like any other.

Members are model config names (`conf/model/<name>.yaml`), composed with Hydra's compose API
when the ensemble is built (`registry.compose`: inside a running Hydra app from the configs it
ran with, elsewhere from numerlab's `conf/`), each with its own overrides
(`model.overrides.mlp='[d_hidden=256]'`).
Member i fits with seed `seed + i` on `targets[i]` (default: the run's target; a target other
than the run's is loaded as an auxiliary column, see `pipeline.target_config`) over the rows
where that target is known, and is saved under `members/<i>-<name>/` of the model dir.

Combining (`combine`), within each era:
    rank:     p = rank( sum_i w_i rank(pred_i) / sum_i w_i )
    gaussian: p = rank( sum_i w_i gaussianize(rank(pred_i)) / sum_i w_i )
with rank the tie-kept percentile rank into (0, 1). `predict_dataset` combines era by era;
`predict(features)` has no eras and combines over all rows as one era, which is exact for
live rows (one era) and for Numerai's model upload (called once per live era).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError, message_line
from numerlab.models.base import (
    FitContext,
    Model,
    build_model,
    check_ready,
    load_model,
    save_model,
)
from numerlab.parallel import affordable_jobs
from numerlab.settings import choice, integer, number, text

log = logging.getLogger(__name__)

COMBINE_METHODS = ("rank", "gaussian")
ENSEMBLE_META = "ensemble.json"
MEMBERS_DIR = "members"
ENSEMBLE_NAME = "ensemble"


# --- combining --------------------------------------------------------------------------

def combine_per_era(member_predictions: np.ndarray, weights: Sequence[float],
                    era_codes: np.ndarray, n_eras: int, method: str) -> np.ndarray:
    """(members, n) predictions -> (n,) float32 in (0, 1): within each era the weighted mean
    of the members' percentile ranks (`rank`) or gaussianized ranks (`gaussian`), ranked
    again (see the module docstring). Weights are normalized to sum 1."""
    from numerlab.scoring import EraSegments, gaussianize, tie_kept_rank

    choice("model.combine", method, COMBINE_METHODS)
    predictions = np.asarray(member_predictions, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    segments = EraSegments.of(np.asarray(era_codes), n_eras)
    mixed = np.zeros(predictions.shape[1])
    for weight, prediction in zip(w, predictions, strict=True):
        ranked = tie_kept_rank(segments, prediction[segments.order])
        mixed += weight * (gaussianize(ranked) if method == "gaussian" else ranked)
    out = np.empty(predictions.shape[1], dtype=np.float32)
    out[segments.order] = tie_kept_rank(segments, mixed)
    return out


# --- member configs ---------------------------------------------------------------------

def compose_member(name: str, overrides: Sequence[str | Mapping[str, Any]] = ()
                   ) -> dict[str, Any]:
    """`conf/model/<name>.yaml` composed with `overrides`, as a plain dict. An override is a
    Hydra override string of the model's keys (`d_hidden=256`, `params.num_leaves=15`) or a
    mapping merged over them ({d_hidden: 256}); a key the model config lacks is an error.
    The configs are those the running Hydra app ran with when there is one, else numerlab's
    conf/ (`registry.compose`)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from numerlab.registry import compose, options

    known = [o for o in options("model") if o != ENSEMBLE_NAME]
    if name == ENSEMBLE_NAME:
        raise NumerlabError("model.members: an ensemble cannot be a member of an ensemble "
                            f"(members are model configs: {', '.join(known)})")
    if known and name not in known:  # none known: no configs to list, compose says why
        raise NumerlabError(f"model.members: {name!r} names no model config "
                            f"(known: {', '.join(known)})")
    texts = [f"model.{o.removeprefix('model.')}" for o in overrides if isinstance(o, str)]
    mappings = [o for o in overrides if not isinstance(o, str)]
    try:
        model_cfg = compose(f"model/{name}", texts).model
        OmegaConf.set_struct(model_cfg, True)
        for mapping in mappings:
            model_cfg = OmegaConf.merge(model_cfg, OmegaConf.create(dict(mapping)))
        return OmegaConf.to_container(model_cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        shown = [o if isinstance(o, str) else dict(o) for o in overrides]
        raise NumerlabError(f"model.overrides.{name}={shown}: "
                            f"{message_line(exc)}") from None


def _overrides_for(overrides: Mapping[str, Any] | None, index: int, name: str
                   ) -> list[str | Mapping[str, Any]]:
    """The overrides of member `index`: those keyed by its name (every member of that
    family), then those keyed by its position (`+model.overrides.1=...`). Each entry is a
    mapping or a list of `key=value` strings."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(overrides, DictConfig):
        overrides = OmegaConf.to_container(overrides, resolve=True)
    overrides = dict(overrides or {})
    chosen: list[str | Mapping[str, Any]] = []
    for key in (name, str(index), index):
        value = overrides.get(key)
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if value is None:
            continue
        if isinstance(value, Mapping | str):
            chosen.append(value)
        elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
            chosen.extend(value)
        else:
            raise NumerlabError(f"model.overrides.{key}={value!r} must be a mapping "
                                f"({{d_hidden:256}}) or a list of key=value strings "
                                f"(['d_hidden=256'])")
    return chosen


def _check_lengths(key: str, values: Sequence[Any] | None, members: Sequence[str]) -> None:
    if values is not None and len(values) != len(members):
        raise NumerlabError(f"model.{key} has {len(values)} entries for {len(members)} "
                            f"members ({', '.join(members)}): give one per member or null")


def _weights(weights: Sequence[Any] | None, members: Sequence[str]) -> list[float]:
    _check_lengths("weights", weights, members)
    if weights is None:
        return [1.0] * len(members)
    checked = [number(f"model.weights[{i}]", value, minimum=0)
               for i, value in enumerate(weights)]
    if sum(checked) <= 0:
        raise NumerlabError(f"model.weights={list(weights)} must not all be 0")
    return checked


def member_targets(targets: Sequence[Any] | None, members: Sequence[str]) -> list[str | None]:
    """One target per member; None = the run's target."""
    _check_lengths("targets", targets, members)
    if targets is None:
        return [None] * len(members)
    return [text(f"model.targets[{i}]", value, optional=True, what="a target column name")
            for i, value in enumerate(targets)]


# --- fitting ----------------------------------------------------------------------------

def on_target(data: Dataset | None, target: str | None) -> Dataset | None:
    """`data` fitting `target` (one of its aux columns, or its own target) instead, over the
    rows where that target is known; the features are shared, not copied, when every row
    is known."""
    if data is None or target is None or target == data.target_name:
        return None if data is None else data.with_known_target()
    if target not in data.aux_names:
        raise NumerlabError(f"model.targets: {target!r} is not loaded (loaded targets: "
                            f"{', '.join([data.target_name, *data.aux_names])}); "
                            f"add it to target.aux")
    column = data.aux[:, data.aux_names.index(target)]
    return dataclasses.replace(data, target=np.ascontiguousarray(column),
                               target_name=target).with_known_target()


def member_label(index: int, name: str) -> str:
    return f"{index}-{name}"


def fit_member(model: Model, label: str, target: str | None, train: Dataset,
               valid: Dataset | None, ctx: FitContext) -> None:
    """Fit one member on the rows where its target is known; any failure is one line
    naming the member."""
    try:
        rows = on_target(train, target)
        log.info("ensemble member %s: fitting on %s (%d rows), seed %d", label,
                 rows.target_name, len(rows), ctx.seed)
        model.fit(rows, on_target(valid, target), ctx)
    except Exception as exc:  # whatever failed, the member is named
        log.debug("ensemble member %s failed", label, exc_info=True)
        raise NumerlabError(f"ensemble member {label} failed to fit: "
                            f"{message_line(exc, last=not isinstance(exc, NumerlabError))}"
                            ) from None


def _fit_in_worker(datasets: dict[str, Dataset], model: Model, label: str,
                   target: str | None, ctx: FitContext, out: Path) -> str:
    """In a spawned worker (`parallel.map_spawned`): fit one member and save it."""
    train = datasets["train"]
    fit_member(model, label, target, train, datasets.get("valid"), ctx)
    save_model(model, out, train.feature_names)
    return label


class EnsembleModel:
    """conf/model/ensemble.yaml. members: model config names; weights: one number >= 0 per
    member (null: equal); targets: one target column per member (null: the run's);
    combine: rank | gaussian; overrides: {member name or position: [key=value, ...]};
    n_jobs: members fit at once in spawned processes (1: one after another)."""

    def __init__(self, members: Sequence[str], weights: Sequence[float] | None,
                 targets: Sequence[str | None] | None, combine: str,
                 overrides: Mapping[str, Any] | None, n_jobs: int,
                 member_configs: Sequence[Mapping[str, Any]] | None = None) -> None:
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise NumerlabError(f"model.members={members!r} must be a non-empty list of model "
                                f"config names, e.g. '[lgbm,xgboost,mlp]'")
        self.members = [str(m) for m in members]
        self.weights = _weights(weights, self.members)
        self.targets = member_targets(targets, self.members)
        self.combine = choice("model.combine", combine, COMBINE_METHODS)
        self.n_jobs = integer("model.n_jobs", n_jobs, minimum=1)
        if member_configs is None:
            member_configs = [compose_member(name, _overrides_for(overrides, i, name))
                              for i, name in enumerate(self.members)]
        self.member_configs = [dict(c) for c in member_configs]
        self.models: list[Model] = [self._build(i) for i in range(len(self.members))]
        self.feature_names: list[str] = []
        self._predicted: list[tuple[np.ndarray, np.ndarray]] = []

    def _build(self, index: int) -> Model:
        from omegaconf import OmegaConf


        try:
            return build_model(OmegaConf.create(self.member_configs[index]))
        except NumerlabError as exc:
            raise NumerlabError(f"ensemble member {self.label(index)}: {exc}") from None

    def label(self, index: int) -> str:
        return member_label(index, self.members[index])

    def target_of(self, index: int, run_target: str) -> str:
        return self.targets[index] or run_target

    def member_context(self, ctx: FitContext, index: int) -> FitContext:
        """Member i's fit context: seed + i, and a run dir of its own (checkpoints, logs)."""
        run_dir = Path(ctx.run_dir) / MEMBERS_DIR / self.label(index)
        return dataclasses.replace(ctx, seed=ctx.seed + index, run_dir=run_dir)

    def check(self, ctx: FitContext) -> None:
        if ctx.ckpt_path:
            raise NumerlabError(f"ckpt_path={ctx.ckpt_path} cannot resume an ensemble: it is "
                                f"one checkpoint, and each member is a model of its own")
        for i, model in enumerate(self.models):
            try:
                check_ready(model, self.member_context(ctx, i))
            except NumerlabError as exc:
                raise NumerlabError(f"ensemble member {self.label(i)}: {exc}") from None

    # -- fit --

    def fit(self, train: Dataset, valid: Dataset | None, ctx: FitContext) -> None:
        """Fit every member on its target; any failure names the member and leaves this
        ensemble unfitted."""
        loaded = [train.target_name, *train.aux_names]
        for i, target in enumerate(self.targets):  # before any member fits
            if target is not None and target not in loaded:
                raise NumerlabError(f"model.targets: {target!r} of member {self.label(i)} is "
                                    f"not loaded (loaded: {', '.join(loaded)}); add it to "
                                    f"target.aux")
        self.feature_names = list(train.feature_names)
        jobs = min(self.n_jobs, len(self.members), affordable_jobs(train))
        if jobs > 1:
            self.models = self._fit_parallel(train, valid, ctx, jobs)
        else:
            for i in range(len(self.members)):
                self._fit_member(i, train, valid, ctx)
        self._predicted = []

    def _fit_member(self, i: int, train: Dataset, valid: Dataset | None,
                    ctx: FitContext) -> None:
        fit_member(self.models[i], self.label(i), self.targets[i], train, valid,
                   self.member_context(ctx, i))

    def _fit_parallel(self, train: Dataset, valid: Dataset | None, ctx: FitContext,
                      jobs: int) -> list[Model]:
        """Members fit in `jobs` spawned processes (`parallel.map_spawned`), each saved into
        a scratch dir and loaded back here; the first failure (in member order) is
        raised."""
        from numerlab.parallel import map_spawned

        Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
        saved = Path(tempfile.mkdtemp(prefix=".ensemble-", dir=ctx.run_dir))
        try:
            map_spawned(_fit_in_worker, [
                (model, self.label(i), self.targets[i],
                 dataclasses.replace(self.member_context(ctx, i), tracker=None),
                 saved / self.label(i)) for i, model in enumerate(self.models)],
                {"train": train, "valid": valid}, jobs, saved)
            return [load_model(saved / self.label(i))[0] for i in range(len(self.members))]
        finally:
            shutil.rmtree(saved, ignore_errors=True)

    # -- predict --

    def member_predictions(self, features: np.ndarray) -> np.ndarray:
        """(members, n) float32 raw predictions of every member (kept for the last two
        feature matrices seen, so a report on them does not predict again)."""
        for seen, predictions in self._predicted:
            if seen is features:
                return predictions
        predictions = np.stack([np.asarray(m.predict(features), dtype=np.float32)
                                for m in self.models])
        self._predicted = [*self._predicted[-1:], (features, predictions)]
        return predictions

    def predict_dataset(self, data: Dataset) -> np.ndarray:
        """The members combined within each era of `data`."""
        return combine_per_era(self.member_predictions(data.features), self.weights,
                               data.era_index, data.n_eras, self.combine)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The members combined over all rows as one era (exact for one live era)."""
        return combine_per_era(self.member_predictions(features), self.weights,
                               np.zeros(len(features), dtype=np.int32), 1, self.combine)

    def gain_importance(self, n_features: int) -> np.ndarray | None:
        """The weight-averaged gain importance of the members that have one (GBDT);
        None when none has."""
        parts = [(w, own(n_features)) for w, m in zip(self.weights, self.models, strict=True)
                 if w > 0 and (own := getattr(m, "gain_importance", None)) is not None]
        parts = [(w, g) for w, g in parts if g is not None]
        if not parts:
            return None
        return sum(w * g for w, g in parts) / sum(w for w, _ in parts)

    # -- save / load --

    def save(self, path: Path) -> None:
        path = Path(path)
        entries = []
        for i, model in enumerate(self.models):
            rel = f"{MEMBERS_DIR}/{self.label(i)}"
            save_model(model, path / rel, self.feature_names)
            entries.append({"name": self.members[i], "target": self.targets[i],
                            "weight": self.weights[i], "dir": rel,
                            "config": self.member_configs[i]})
        (path / ENSEMBLE_META).write_text(json.dumps(
            {"combine": self.combine, "n_jobs": self.n_jobs, "members": entries}, indent=1))

    @classmethod
    def load(cls, path: Path) -> EnsembleModel:
        path = Path(path)
        model = cls.__new__(cls)
        try:
            meta = json.loads((path / ENSEMBLE_META).read_text())
            entries = meta["members"]
            model.members = [e["name"] for e in entries]
            model.weights = [float(e["weight"]) for e in entries]
            model.targets = [e["target"] for e in entries]
            model.combine = meta["combine"]
            model.n_jobs = int(meta.get("n_jobs", 1))
            model.member_configs = [e.get("config") or {} for e in entries]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NumerlabError(f"{path / ENSEMBLE_META}: cannot read the ensemble "
                                f"({type(exc).__name__}: {message_line(exc)})") from None
        loaded = [load_model(path / e["dir"]) for e in entries]
        model.models = [m for m, _ in loaded]
        model.feature_names = loaded[0][1] if loaded else []
        model._predicted = []
        return model


# --- report -----------------------------------------------------------------------------

def per_era_rank_correlation(a: np.ndarray, b: np.ndarray, era_codes: np.ndarray,
                             n_eras: int) -> float:
    """Mean over eras of the Pearson correlation of the within-era percentile ranks of a
    and b (a per-era Spearman correlation); eras where it is undefined are skipped."""
    from numerlab.scoring import EraSegments, pearson, tie_kept_rank

    segments = EraSegments.of(np.asarray(era_codes), n_eras)
    ra = tie_kept_rank(segments, np.asarray(a, dtype=np.float64)[segments.order])
    rb = tie_kept_rank(segments, np.asarray(b, dtype=np.float64)[segments.order])
    per_era = pearson(segments, ra, rb)
    return float(np.nanmean(per_era)) if np.isfinite(per_era).any() else float("nan")


def members_frame(model: EnsembleModel, dataset: Dataset, frame: Any) -> Any:
    """members.parquet: one row per member: member (`<i>-<name>`), target (fitted), weight
    (normalized), corr_mean, corr_sharpe, mmc_mean (its raw predictions scored on the run's
    target, MMC where `frame` has a meta_model), corr_with_ensemble (per-era rank
    correlation with the combined prediction before post-processing)."""
    import polars as pl

    from numerlab.scoring import per_era_scores, summarize

    predictions = model.member_predictions(dataset.features)
    combined = combine_per_era(predictions, model.weights, dataset.era_index,
                               dataset.n_eras, model.combine)
    has_mm = "meta_model" in frame.columns and frame["meta_model"].is_not_null().any()
    base = frame.select("era", "target", *(["meta_model"] if has_mm else []))
    total = sum(model.weights)
    rows = []
    for i, member_prediction in enumerate(predictions):
        scored = base.with_columns(prediction=pl.Series(member_prediction, dtype=pl.Float64))
        summary = summarize(per_era_scores(scored, meta_model="meta_model" if has_mm else None),
                            recent_eras=None)
        rows.append({
            "member": model.label(i),
            "target": model.target_of(i, dataset.target_name),
            "weight": model.weights[i] / total,
            "corr_mean": summary["corr_mean"],
            "corr_sharpe": summary["corr_sharpe"],
            "mmc_mean": summary.get("mmc_mean"),
            "corr_with_ensemble": per_era_rank_correlation(
                member_prediction, combined, dataset.era_index, dataset.n_eras),
        })
    schema = {"member": pl.String, "target": pl.String, "weight": pl.Float64,
              "corr_mean": pl.Float64, "corr_sharpe": pl.Float64, "mmc_mean": pl.Float64,
              "corr_with_ensemble": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
