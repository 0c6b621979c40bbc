"""Synthetic Numerai-like data in the v5 layout, generated from a seed.

What makes it Numerai-like (and worth testing models and post-processing on):
- Features are int8 bins 0..4 taken *within each era* from a latent with factor structure
  (features of a group move together). Bins are equal quintiles (20% each), as Numerai bins
  its features; so every era has the same feature distribution.
- The main `target` takes 0, .25, .5, .75, 1 with per-era frequencies 5/20/50/20/5%, binned
  within each era from a latent that is mostly noise:
      latent = stable signal + regime signal + drifting signal + flipping features
               + a feature interaction + noise
  The stable part carries over between eras; the regime part changes between a few blocks of
  eras; the drifting part is a slow random walk; a few "flipping" features have a weight whose
  sign alternates in multi-era waves, so their per-era correlation with the target changes
  sign (exposure to them is a risk that feature neutralization removes). The stable part is
  the largest, and weighs the small set's features most (as Numerai's small set holds
  informative features), so the default run (LightGBM on features=small) visibly learns: a
  per-era CORR of a few hundredths, noisy from era to era, as on Numerai.
- Auxiliary targets mix the main latent with a signal and noise of their own. As on Numerai,
  `target` is a copy of the current main target (`target_cyrusd_20`); 60-day targets are NaN
  in the last validation eras (not yet resolved) and `target_claudia_20` in the first train
  eras (it starts later).
- validation.parquet holds `data_type` "validation" eras then a few "test" eras whose targets
  are all NaN; eras are numbered "0001".. across train, validation and test; live.parquet is
  era "X" as in v5; meta_model.parquet covers only the later half of the validation eras with
  a good-but-imperfect model (the true signal plus noise, ranked within era into (0, 1)).
- {train,validation,live}_benchmark_models.parquet hold what a model can learn (the stable
  and interaction parts, from all features) plus noise, ranked per era: a plausible model a
  bit above the default run, not the truth (the regime, drift and flips a model cannot know).
- features.json holds the feature sets small (every 4th feature), medium (every 2nd) and all.

Everything is drawn from one `numpy.random.Generator` seeded by `seed`: the same seed and
params give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from numerlab.data import layout
from numerlab.eras import MAIN_TARGET
from numerlab.errors import NumerlabError
from numerlab.settings import integer, keys, required

MANIFEST = "synthetic.json"
GROUP = "data.synthetic"  # the config keys of the generator, for messages
# Bump when the generator's output changes, so existing synthetic dirs are regenerated.
GENERATOR_VERSION = 5
PARAM_NAMES = ("n_train_eras", "n_validation_eras", "n_test_eras", "rows_per_era",
               "n_features", "n_live_rows")
PARAM_MINIMUM = {"n_train_eras": 1, "n_validation_eras": 1, "n_test_eras": 0,
                 "rows_per_era": 20, "n_features": 4, "n_live_rows": 1}
LIVE_ERA = "X"

TARGET_BIN_FREQUENCIES = (0.05, 0.20, 0.50, 0.20, 0.05)
FEATURE_BIN_FREQUENCIES = (0.20, 0.20, 0.20, 0.20, 0.20)

# Latent target = sum of unit-variance parts times these weights, plus noise for the rest.
STABLE_WEIGHT = 0.12
# features.json "small" is every SMALL_SET_STEP-th feature; as Numerai picks its small set
# from informative features, the stable signal's weights on them are this many times larger.
SMALL_SET_STEP = 4
SMALL_SET_EMPHASIS = 3.0
REGIME_WEIGHT = 0.04
DRIFT_WEIGHT = 0.02
FLIP_WEIGHT = 0.05          # per flipping feature
INTERACTION_WEIGHT = 0.03
N_REGIMES = 4
ROWS_PER_ERA_JITTER = 0.1   # era sizes vary by up to +-10%, as real eras do
META_MODEL_ERA_SHARE = 0.5  # the later share of validation eras the meta model covers
META_MODEL_NOISE = 3.0      # noise sd added to the unit-variance true signal
# {train,validation,live}_benchmark_models.parquet: Numerai-style benchmark columns, each the
# learnable signal plus noise of its own size (the first is the main benchmark), ranked per era.
BENCHMARK_MODELS = {"v53_lgbm_ender20": 1.0, "v53_lgbm_cyrusd20": 1.4,
                    "v53_lgbm_teager2b20": 2.0}
BENCHMARK_TRAIN_START = 0.25       # train benchmarks are walk-forward: later train eras only
BENCHMARK_VALIDATION_SHARE = 0.75  # the later share of validation eras they cover
BENCHMARK_STREAM = 7919            # seeds the benchmark generator apart from the data's

# aux target -> correlation of its latent with the main latent. target_cyrusd_20 is the
# main target itself. 60-day targets resolve late: NaN in the last validation eras.
AUX_TARGETS = {
    "target_cyrusd_20": 1.0,
    "target_cyrusd_60": 0.6,
    "target_victor_20": 0.7,
    "target_victor_60": 0.5,
    "target_ralph_20": 0.65,
    "target_teager2b_20": 0.75,
    "target_teager2b_60": 0.55,
    "target_agnes_20": 0.6,
    "target_claudia_20": 0.55,
    "target_rowan_20": 0.7,
}
UNRESOLVED_60D_ERAS = 3       # last validation eras where 60-day targets are NaN
LATE_TARGET = "target_claudia_20"
LATE_TARGET_START = 0.1       # share of train eras before the late target exists

_ADJECTIVES = (
    "amber", "brisk", "candid", "dusky", "eager", "fallow", "gilded", "hollow", "ivory",
    "jagged", "keen", "lucid", "mellow", "nimble", "ornate", "placid", "quaint", "rustic",
    "somber", "tawny", "umber", "vivid", "wistful", "zealous",
)
_NOUNS = (
    "anchor", "basin", "cairn", "delta", "ember", "fjord", "glade", "harbor", "inlet",
    "juniper", "kestrel", "lagoon", "meadow", "nebula", "orchard", "prairie", "quarry",
    "ridge", "summit", "tundra", "upland", "valley", "willow", "zenith",
)


def feature_names(n_features: int) -> list[str]:
    """`feature_<adjective>_<noun>` names, the same for every seed."""
    pairs = [f"feature_{a}_{b}" for b in _NOUNS for a in _ADJECTIVES]
    if n_features <= len(pairs):
        return pairs[:n_features]
    return pairs + [f"feature_{i:04d}" for i in range(len(pairs), n_features)]


def check_params(params: Mapping[str, Any]) -> dict[str, int]:
    """The generator params as plain ints; NumerlabError naming a missing/unknown/bad key."""
    keys(GROUP, params, ("seed", *PARAM_NAMES))
    required(GROUP, params, PARAM_NAMES)
    return {name: integer(f"{GROUP}.{name}", params[name], minimum=PARAM_MINIMUM[name])
            for name in PARAM_NAMES}


def manifest(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """What synthetic.json holds: a dir whose manifest differs is regenerated."""
    return {"generator": "numerlab.data.synthetic", "version": GENERATOR_VERSION,
            "seed": integer(f"{GROUP}.seed", seed), "params": check_params(params)}


def ensure(out_dir: str | Path, params: Mapping[str, Any], seed: int) -> Path:
    """`out_dir` holding the data of (params, seed): kept if its manifest matches, else
    generated into a temporary sibling dir and moved into place, so an interrupted run
    never leaves a dir that looks complete. Only a dir that holds a synthetic.json (or is
    empty) is ever written into, and there only the files the generator writes are
    replaced: anything else in it (yours) stays."""
    out_dir = Path(out_dir)
    wanted = manifest(params, seed)
    if _read_manifest(out_dir) == wanted:
        return out_dir
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and (
            not out_dir.is_dir() or any(out_dir.iterdir())):
        raise NumerlabError(f"refusing to overwrite {out_dir}: it is not empty and holds no "
                            f"{MANIFEST} (choose another data.dir)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        generate(staging, wanted["params"], wanted["seed"])
        if _read_manifest(out_dir) == wanted:  # a concurrent run got there first
            return out_dir
        if not out_dir.exists():
            with contextlib.suppress(OSError):  # another process made it meanwhile
                staging.rename(out_dir)
                return out_dir
        _move_generated(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _move_generated(staging: Path, out_dir: Path) -> None:
    """Move the generated files from `staging` into `out_dir`, replacing only those names:
    the manifest first says the dir is being replaced (a run cut off here regenerates it),
    and the real one moves in last."""
    from numerlab.artifacts import atomic_file

    with atomic_file(out_dir / MANIFEST) as handle:
        handle.write(json.dumps({"generator": "numerlab.data.synthetic", "replacing": True}))
    for entry in sorted(staging.iterdir()):
        if entry.name != MANIFEST:
            os.replace(entry, out_dir / entry.name)
    os.replace(staging / MANIFEST, out_dir / MANIFEST)


def _read_manifest(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def generate(out_dir: str | Path, params: Mapping[str, Any], seed: int) -> Path:
    """Write train/validation/live/meta_model parquet files, features.json and the manifest
    (last) into `out_dir`. Deterministic in (params, seed)."""
    info = manifest(params, seed)
    p = info["params"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_features = p["n_features"]
    names = feature_names(n_features)
    n_eras = p["n_train_eras"] + p["n_validation_eras"] + p["n_test_eras"]
    width = max(4, len(str(n_eras)))
    era_labels = [f"{i:0{width}d}" for i in range(1, n_eras + 1)]
    world = _World(rng, n_features, n_eras + 1)  # the extra era is live

    jitter = int(p["rows_per_era"] * ROWS_PER_ERA_JITTER)
    sizes = p["rows_per_era"] + rng.integers(-jitter, jitter + 1, size=n_eras)
    sizes = np.append(sizes, p["n_live_rows"])
    ids = _unique_ids(rng, int(sizes.sum()))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    eras = [world.era(rng, t, int(sizes[t])) for t in range(n_eras + 1)]

    n_train, n_valid = p["n_train_eras"], p["n_validation_eras"]
    aux_names = list(AUX_TARGETS)
    for t, era in enumerate(eras):
        if t >= n_train + n_valid:  # test and live: unresolved
            era.targets[:] = np.nan
        if n_train + n_valid - UNRESOLVED_60D_ERAS <= t < n_train + n_valid:
            for j, name in enumerate(aux_names):
                if name.endswith("_60"):
                    era.targets[:, 1 + j] = np.nan
        if t < int(np.ceil(LATE_TARGET_START * n_train)):
            era.targets[:, 1 + aux_names.index(LATE_TARGET)] = np.nan

    def table(ts: range, data_types: list[str]) -> pa.Table:
        rows = slice(offsets[ts.start], offsets[ts.stop])
        labels = [era_labels[t] if t < n_eras else LIVE_ERA for t in ts]
        columns = {
            "id": pa.array(ids[rows], pa.string()),
            "era": pa.array(np.repeat(labels, sizes[ts.start:ts.stop]), pa.string()),
            "data_type": pa.array(np.repeat(data_types, sizes[ts.start:ts.stop]), pa.string()),
        }
        features = np.concatenate([eras[t].features for t in ts])
        for j, name in enumerate(names):
            columns[name] = pa.array(features[:, j], pa.int8())
        targets = np.concatenate([eras[t].targets for t in ts])
        for j, name in enumerate([MAIN_TARGET, *aux_names]):
            columns[name] = pa.array(targets[:, j], pa.float32())
        return _id_indexed(pa.table(columns))

    valid_eras = range(n_train, n_eras)
    kinds = ["validation"] * n_valid + ["test"] * p["n_test_eras"]
    pq.write_table(table(range(n_train), ["train"] * n_train), out_dir / layout.TRAIN_FILE)
    pq.write_table(table(valid_eras, kinds), out_dir / layout.VALIDATION_FILE)
    pq.write_table(table(range(n_eras, n_eras + 1), ["live"]), out_dir / layout.LIVE_FILE)

    covered = range(n_train + n_valid - int(np.ceil(META_MODEL_ERA_SHARE * n_valid)),
                    n_train + n_valid)
    rows = slice(offsets[covered.start], offsets[covered.stop])
    meta_model = np.concatenate([
        _rank_unit(eras[t].signal + META_MODEL_NOISE * rng.standard_normal(len(eras[t].signal)))
        for t in covered])
    pq.write_table(_id_indexed(pa.table({
        "id": pa.array(ids[rows], pa.string()),
        "era": pa.array(np.repeat([era_labels[t] for t in covered], sizes[covered.start:
                                                                         covered.stop])),
        "data_type": pa.array(["validation"] * (rows.stop - rows.start), pa.string()),
        layout.META_MODEL_COLUMN: pa.array(meta_model, pa.float32()),
    })), out_dir / layout.META_MODEL_FILE)

    # Benchmark models from a generator of their own, so the files above stay as they were.
    bench_rng = np.random.default_rng([seed, BENCHMARK_STREAM])
    spans = {"train": range(int(BENCHMARK_TRAIN_START * n_train), n_train),
             "validation": range(n_train + n_valid - int(np.ceil(BENCHMARK_VALIDATION_SHARE
                                                                  * n_valid)), n_eras),
             "live": range(n_eras, n_eras + 1)}
    for split, span in spans.items():
        rows = slice(offsets[span.start], offsets[span.stop])
        columns = {"id": pa.array(ids[rows], pa.string()),
                   "era": pa.array(np.repeat([era_labels[t] if t < n_eras else LIVE_ERA
                                              for t in span], sizes[span.start:span.stop]))}
        for name, noise in BENCHMARK_MODELS.items():
            columns[name] = pa.array(np.concatenate([
                _rank_unit(eras[t].learnable + noise * bench_rng.standard_normal(
                    len(eras[t].learnable))) for t in span]), pa.float32())
        pq.write_table(_id_indexed(pa.table(columns)),
                       out_dir / layout.benchmark_file(split))

    features_json = {
        "feature_sets": {"small": names[::4], "medium": names[::2], "all": names},
        "targets": [MAIN_TARGET, *aux_names],
    }
    (out_dir / layout.FEATURES_FILE).write_text(json.dumps(features_json, indent=1))
    (out_dir / MANIFEST).write_text(json.dumps(info, indent=1))
    return out_dir


def _id_indexed(table: pa.Table) -> pa.Table:
    """`table` with pandas metadata naming `id` its index, as Numerai's files store it:
    `pandas.read_parquet` gives an `id` index; pyarrow and polars still see an `id` column."""

    frame = table.to_pandas().set_index("id")
    return pa.Table.from_pandas(frame, preserve_index=True)


class _Era:
    """One era's rows: int8 features, targets (main then aux), the true signal."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, signal: np.ndarray,
                 learnable: np.ndarray):
        self.features = features
        self.targets = targets
        self.signal = signal
        self.learnable = learnable


class _World:
    """The fixed structure every era is drawn from: factor loadings, signal weights per
    regime, drift path, flipping features and their waves, aux target weights."""

    def __init__(self, rng: np.random.Generator, n_features: int, n_eras: int):
        k = n_features
        self.n_factors = max(2, k // 10)
        self.group = rng.integers(0, self.n_factors, size=k)
        self.loading = rng.uniform(0.3, 0.8, size=k)
        emphasis = np.where(np.arange(k) % SMALL_SET_STEP == 0, SMALL_SET_EMPHASIS, 1.0)
        self.stable = _unit(rng.standard_normal(k) * emphasis)
        self.regime_weights = [_unit(rng.standard_normal(k)) for _ in range(N_REGIMES)]
        cuts = np.sort(rng.uniform(0.15, 0.85, size=N_REGIMES - 1)) * n_eras
        self.regime = np.searchsorted(cuts, np.arange(n_eras), side="right")
        steps = rng.standard_normal((n_eras, k))
        self.drift = np.empty((n_eras, k))
        level = np.zeros(k)
        for t in range(n_eras):  # AR(1): slow, persistent change of the weights
            level = 0.95 * level + 0.3 * steps[t]
            self.drift[t] = _unit(level)
        n_flip = max(1, k // 8)
        self.flip = rng.choice(k, size=n_flip, replace=False)
        period = rng.uniform(16, 48, size=n_flip)
        phase = rng.uniform(0, 2 * np.pi, size=n_flip)
        self.flip_sign = np.sign(np.sin(2 * np.pi * np.arange(n_eras)[:, None] / period
                                        + phase))
        self.pair = rng.choice(k, size=2, replace=False)
        self.aux_weights = [_unit(rng.standard_normal(k)) for _ in AUX_TARGETS]

    def era(self, rng: np.random.Generator, t: int, n: int) -> _Era:
        factors = rng.standard_normal((n, self.n_factors))
        latent = (factors[:, self.group] * self.loading
                  + rng.standard_normal((n, len(self.group))) * np.sqrt(1 - self.loading ** 2))
        features = _bins(latent, FEATURE_BIN_FREQUENCIES)

        z = _standardize(latent)
        flips = z[:, self.flip] * self.flip_sign[t]
        parts = [
            (STABLE_WEIGHT, _standardize(z @ self.stable)),
            (REGIME_WEIGHT, _standardize(z @ self.regime_weights[self.regime[t]])),
            (DRIFT_WEIGHT, _standardize(z @ self.drift[t])),
            (INTERACTION_WEIGHT, _standardize(z[:, self.pair[0]] * z[:, self.pair[1]])),
            *((FLIP_WEIGHT, flips[:, j]) for j in range(flips.shape[1])),
        ]
        signal = sum(w * part for w, part in parts)
        # what a model fitted on many eras can learn: the stable part and the interaction
        learnable = sum(w * part for w, part in (parts[0], parts[3]))
        explained = sum(w ** 2 for w, _ in parts)
        main = signal + np.sqrt(max(1e-6, 1 - explained)) * rng.standard_normal(n)

        targets = np.empty((n, 1 + len(AUX_TARGETS)), dtype=np.float32)
        targets[:, 0] = _bins(main, TARGET_BIN_FREQUENCIES) / 4
        for j, rho in enumerate(AUX_TARGETS.values()):
            own = STABLE_WEIGHT * _standardize(z @ self.aux_weights[j]) + rng.standard_normal(n)
            latent_aux = rho * main + np.sqrt(1 - rho ** 2) * _standardize(own)
            targets[:, 1 + j] = _bins(latent_aux, TARGET_BIN_FREQUENCIES) / 4
        return _Era(features, targets, _standardize(signal), _standardize(learnable))


def _bins(latent: np.ndarray, frequencies: tuple[float, ...]) -> np.ndarray:
    """Per-column quantile bins 0..len(frequencies)-1 of `latent` with those frequencies."""
    n = latent.shape[0]
    ranks = np.argsort(np.argsort(latent, axis=0, kind="stable"), axis=0, kind="stable")
    quantile = (ranks + 0.5) / n
    return np.searchsorted(np.cumsum(frequencies)[:-1], quantile).astype(np.int8)


def _standardize(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def _unique_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct ids shaped like Numerai's ("n" + 15 hex digits)."""
    values = np.unique(rng.integers(0, 16 ** 15, size=n, dtype=np.int64))
    while len(values) < n:  # vanishingly rare; redraw the shortfall deterministically
        extra = rng.integers(0, 16 ** 15, size=n - len(values), dtype=np.int64)
        values = np.unique(np.concatenate([values, extra]))
    rng.shuffle(values)
    return np.array([f"n{v:015x}" for v in values[:n]], dtype=object)


def _rank_unit(values: np.ndarray) -> np.ndarray:
    from numerlab.scoring import rank_unit  # numerlab's one percentile rank

    return rank_unit(values)
