"""The DVC stage commands: `python -m numerlab.stages {data,features,train,predict,evaluate,cv}`.

    data      artifacts/data.json          synthetic data generated into data.dir, or the v5
                                           files there checked; the manifest lists them
    features  artifacts/features/          the configured columns of each split, int8 parquet
    train     artifacts/model/             the fitted model
    predict   artifacts/predictions/       validation and live predictions, submission.csv
    evaluate  artifacts/metrics.json       per_era.parquet/.csv, plots/, diagnostics/

Each stage reads `params.yaml` (DVC composes it from conf/ on `dvc exp run -S ...`; Hydra's
`@hydra.main` would ignore `-S`) and calls the `numerlab.pipeline` steps that task=train
(`numerlab.tasks.train.run`) composes, so `dvc exp run -S model=xgboost` and
`python run.py model=xgboost` write the same metrics. The `cv` stage
(pipelines/cv/dvc.yaml) calls `numerlab.tasks.cv.run` itself, into artifacts/cv/.
Every stage writes its outs into a staging dir and renames them into place when complete:
an interrupted stage leaves nothing DVC would take as its output.

`python -m numerlab.stages params [override ...]` rewrites params.yaml from conf/ exactly as
`dvc exp run` does (DVC's own composition), e.g. after editing a file in conf/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from numerlab import artifacts
from numerlab.data.dataset import Dataset
from numerlab.data.layout import META_MODEL_FILE, SPLIT_FILES
from numerlab.errors import NumerlabError, message_line
from numerlab.models.base import model_name

log = logging.getLogger("numerlab.stages")

PARAMS_FILE = "params.yaml"
CONFIG_DIR = "conf"          # [hydra] config_dir of .dvc/config
CONFIG_NAME = "config"       # [hydra] config_name of .dvc/config

ARTIFACTS = Path("artifacts")
DATA_MANIFEST = ARTIFACTS / "data.json"
FEATURES_DIR = ARTIFACTS / "features"
FEATURES_MANIFEST = FEATURES_DIR / "manifest.json"
BENCHMARKS_FILE = "benchmarks.parquet"   # the scoring.benchmark column, validation rows
MODEL_DIR = ARTIFACTS / artifacts.MODEL_DIR
VALIDATION_PREDICTIONS = ARTIFACTS / artifacts.VALIDATION_PREDICTIONS
LIVE_PREDICTIONS = ARTIFACTS / artifacts.LIVE_PREDICTIONS
SUBMISSION = ARTIFACTS / artifacts.SUBMISSION
METRICS = ARTIFACTS / artifacts.METRICS
PER_ERA = ARTIFACTS / artifacts.PER_ERA
PER_ERA_PLOT = ARTIFACTS / "per_era.csv"   # `dvc plots` data: per-era and cumulative scores
PLOTS_DIR = ARTIFACTS / artifacts.PLOTS_DIR
# features.parquet (top features by exposure and gain), members.parquet for an ensemble: a
# dir, because DVC cannot declare an out that only some models write
DIAGNOSTICS_DIR = ARTIFACTS / "diagnostics"
CV_DIR = ARTIFACTS / "cv"     # pipelines/cv/dvc.yaml

# params.yaml keys the features stage reads: the manifest records them, so a later stage run
# by hand after a params change is refused instead of silently using stale features.
FEATURE_PARAMS = ("data", "features", "target", "load", "scoring.benchmark")
# Keys each stage cannot run without (optional ones are read with a default).
REQUIRED = {
    "data": ("data._target_", "data.dir"),
    "features": FEATURE_PARAMS,
    "train": ("model._target_", "seed", "fit.holdout_eras", "data.embargo_eras"),
    "predict": ("postprocess._target_",),
    "evaluate": ("seed", "model.name", "payout.corr_mult"),
    "cv": ("cv.n_splits", "model._target_", "data._target_", "seed"),
}
POST_PROCESSED = ("validation", "live")  # the splits whose predictions are post-processed
WRITE_ROWS = 100_000  # rows per parquet row group: bounds the transient copy when writing


# --- params -------------------------------------------------------------------------------

def load_params(path: str | Path = PARAMS_FILE) -> DictConfig:
    """params.yaml as a struct DictConfig (a missing key raises instead of reading None)."""
    path = Path(path)
    if not path.is_file():
        raise NumerlabError(f"{path}: not found (compose it from conf/ with `dvc exp run` or "
                            f"`python -m numerlab.stages params`)")
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException, OSError, UnicodeDecodeError) as exc:
        raise NumerlabError(f"{path}: cannot read ({message_line(exc)})") from None
    if not isinstance(cfg, DictConfig):
        raise NumerlabError(f"{path}: must hold a mapping of config groups")
    OmegaConf.set_struct(cfg, True)
    return cfg



def missing_key(params_path: str | Path, key: str) -> NumerlabError:
    return NumerlabError(f"{params_path}: missing key '{key}' (run `dvc exp run` or "
                         f"regenerate params.yaml with `python -m numerlab.stages params`)")


def require(cfg: DictConfig, keys: Sequence[str], params_path: str | Path) -> None:
    absent = object()
    for key in keys:
        if OmegaConf.select(cfg, key, default=absent, throw_on_missing=False) is absent:
            raise missing_key(params_path, key)


def selected(cfg: DictConfig, keys: Sequence[str]) -> dict[str, Any]:
    return {key: OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node)
            else node for key in keys for node in [OmegaConf.select(cfg, key)]}


def compose_params(overrides: Sequence[str] = (), output: str | Path = PARAMS_FILE,
                   root: str | Path = ".") -> Path:
    """Write conf/ composed with `overrides` to `output` with DVC's own composition (the
    function `dvc exp run` calls), so the file equals what `dvc exp run` would write."""
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException

    root = Path(root).resolve()
    if not (root / CONFIG_DIR / f"{CONFIG_NAME}.yaml").is_file():
        raise NumerlabError(f"{root / CONFIG_DIR / CONFIG_NAME}.yaml not found: run this in the "
                            f"project root")
    try:
        compose_and_dump(output, str(root / CONFIG_DIR), None, CONFIG_NAME, str(root),
                         list(overrides))
    except (HydraException, OmegaConfBaseException, OSError, ValueError) as exc:
        raise NumerlabError(f"cannot compose {CONFIG_DIR}/{CONFIG_NAME}.yaml: "
                            f"{message_line(exc)}") from None
    return Path(output)


# --- inputs made by earlier stages --------------------------------------------------------

def need(path: Path, stage: str) -> Path:
    """`path` if it exists, else a one-line error naming the stage that makes it."""
    if not path.exists():
        raise NumerlabError(f"{path} is missing: run the '{stage}' stage first "
                            f"(`dvc repro {stage}`)")
    return path


def write_split(dataset: Dataset, path: Path) -> None:
    """`dataset` as a v5-layout parquet file (id, era, int8 features and the extra int8
    columns post-processing reads, float32 targets) that `data.load_split` reads back
    unchanged, written in row groups of WRITE_ROWS rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    int8_names = [*dataset.feature_names, *dataset.extra_names]
    names = ["id", "era", *int8_names, dataset.target_name, *dataset.aux_names]
    schema = pa.schema([("id", pa.string()), ("era", pa.string()),
                        *[(n, pa.int8()) for n in int8_names],
                        *[(n, pa.float32()) for n in [dataset.target_name, *dataset.aux_names]]])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, max(len(dataset), 1), WRITE_ROWS):
            rows = slice(start, start + WRITE_ROWS)
            columns = [pa.array(dataset.ids[rows].tolist(), pa.string()),
                       pa.array(dataset.eras[rows].tolist(), pa.string()),
                       *[pa.array(dataset.features[rows, j]) for j in
                         range(len(dataset.feature_names))],
                       *[pa.array(dataset.extra_features[rows, j]) for j in
                         range(len(dataset.extra_names))],
                       pa.array(dataset.target[rows]),
                       *[pa.array(dataset.aux[rows, j]) for j in range(len(dataset.aux_names))]]
            writer.write_table(pa.Table.from_arrays(columns, names=names))


def read_manifest(cfg: DictConfig) -> dict[str, Any]:
    """The features stage's manifest; refused when the params file in hand holds other
    values for the keys the features were made from (a stage run by hand after a change).
    Keys the params file does not hold are not compared: a stage reads only its own."""
    from numerlab.summary import flatten

    manifest = json.loads(need(FEATURES_MANIFEST, "features").read_text())
    made_from = flatten(manifest.get("params") or {})
    absent = object()  # a key set to null is compared; one the file lacks is not
    in_hand = flatten(selected(cfg, [k for k in FEATURE_PARAMS if OmegaConf.select(
        cfg, k, default=absent, throw_on_missing=False) is not absent]))
    changed = next((k for k, v in in_hand.items() if made_from.get(k, v) != v), None)
    if changed is not None:
        raise NumerlabError(f"{FEATURES_DIR} was made with another '{changed}' than "
                            f"params.yaml: rerun the 'features' stage (`dvc repro features`)")
    return manifest


def read_split(manifest: dict[str, Any], split: str) -> Dataset | None:
    """A split written by the features stage (None if the data has no such split)."""
    from numerlab.data import load_split

    if split not in manifest["splits"]:
        return None
    post_processed = split in POST_PROCESSED
    dataset = load_split(need(FEATURES_DIR / SPLIT_FILES[split], "features"),
                         manifest["feature_names"], manifest["target_name"],
                         manifest["aux_names"],
                         extra_names=manifest.get("extra_names", []) if post_processed else ())
    if post_processed:
        dataset.postprocess_columns = manifest.get("postprocess_columns")
    return dataset


def read_benchmarks(manifest: dict[str, Any]) -> pl.DataFrame | None:
    if not manifest.get("benchmark"):
        return None
    return pl.read_parquet(need(FEATURES_DIR / BENCHMARKS_FILE, "features"))


def read_meta_model(manifest: dict[str, Any]) -> pl.DataFrame | None:
    if not manifest.get("meta_model"):
        return None
    return pl.read_parquet(need(FEATURES_DIR / META_MODEL_FILE, "features"))


# --- stages -------------------------------------------------------------------------------

def stage_data(cfg: DictConfig) -> None:
    """Synthetic data generated into data.dir, or the v5 files there checked; writes
    artifacts/data.json listing them.

    data.dir is never a DVC output (DVC removes outputs before it reruns a stage and on
    checkout), so your downloaded files are only ever read. The stage always runs (it takes
    a moment) and the manifest fingerprints the files: what reads them reruns only when
    they changed, and a fresh copy (`dvc queue`, a clone) regenerates synthetic data. The
    synthetic dir is kept while its manifest matches data.synthetic, else
    regenerated into a temporary sibling and renamed into place (`data.prepare`)."""
    from numerlab import data

    data_dir = data.prepare(cfg.data)
    manifest = {"source": str(cfg.data._target_), "dir": str(cfg.data.dir),
                "files": data_fingerprint(data_dir)}
    with artifacts.staged(ARTIFACTS) as stage:
        (stage / DATA_MANIFEST.name).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("data ready in %s", data_dir)


def data_fingerprint(data_dir: Path) -> dict[str, Any]:
    """What changes when the data does, without reading it: the generator's manifest of a
    synthetic dir (the same bytes wherever it is regenerated), else each file's size and
    modification time (a new live.parquet shows, 10 GB are never hashed)."""
    from numerlab.data.synthetic import MANIFEST

    if (data_dir / MANIFEST).is_file():
        return {MANIFEST: json.loads((data_dir / MANIFEST).read_text())}
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(data_dir.iterdir()) if p.is_file() and not p.name.startswith(".")}


def stage_features(cfg: DictConfig) -> None:
    """The configured columns of each split as compact int8 parquet.

    Rows are those `load_splits` keeps (era_stride, embargo); columns are the model's
    features, the run's target and the targets the model fits (`load.targets`: an
    ensemble's members), and for validation and live the columns post-processing reads
    (`load.postprocess_*`). The manifest records the column names and the params used."""
    from numerlab import coverage, data, pipeline

    need(DATA_MANIFEST, "data")
    # data.dir is not DVC-managed: in a fresh copy (`dvc queue`, a new clone) the synthetic
    # dir is regenerated here from its seed (same bytes), v5 files are checked
    source = data.build_source(cfg.data)
    pipeline.check_embargo(cfg, source.embargo_eras)  # as run.py's check does
    source.prepare()
    splits = pipeline.with_benchmarks(cfg, data.load_splits(
        source, cfg.features, pipeline.target_config(cfg),
        extra_features=pipeline.postprocess_columns(cfg), post_processed=POST_PROCESSED))
    coverage.plan_scoring(cfg, splits, splits.validation, objective=False)  # before train
    extra = splits.validation if splits.validation is not None else splits.live
    manifest: dict[str, Any] = {
        "feature_names": splits.feature_names,
        "target_name": splits.target_name,
        "aux_names": splits.aux_names,
        # validation and live: the columns post-processing reads, and those of them that
        # are not model features (stored beside them)
        "postprocess_columns": None if extra is None else extra.postprocess_columns,
        "extra_names": [] if extra is None else extra.extra_names,
        "splits": {},
        "meta_model": False,
        "params": selected(cfg, FEATURE_PARAMS),
    }
    with artifacts.staged(ARTIFACTS) as stage:
        out = stage / FEATURES_DIR.name
        out.mkdir()
        for name, dataset in (("train", splits.train), ("validation", splits.validation),
                              ("live", splits.live)):
            if dataset is None:
                continue
            write_split(dataset, out / SPLIT_FILES[name])
            manifest["splits"][name] = {"rows": len(dataset), "eras": dataset.n_eras}
        if splits.meta_model is not None and splits.validation is not None:
            ids = pl.Series("id", splits.validation.ids, dtype=pl.String)
            splits.meta_model.filter(pl.col("id").is_in(ids.implode())).write_parquet(
                out / META_MODEL_FILE)
            manifest["meta_model"] = True
        if splits.benchmarks is not None and splits.validation is not None:
            ids = pl.Series("id", splits.validation.ids, dtype=pl.String)
            splits.benchmarks.filter(pl.col("id").is_in(ids.implode())).write_parquet(
                out / BENCHMARKS_FILE)
            manifest["benchmark"] = splits.benchmark_name
        (out / FEATURES_MANIFEST.name).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("features: %d columns, %s", len(splits.feature_names),
             ", ".join(f"{k} {v['rows']} rows" for k, v in manifest["splits"].items()))


def stage_train(cfg: DictConfig) -> None:
    """The configured model fitted on the train split (early stopping, if configured, on a
    holdout carved from its last eras: the validation split is never read here)."""
    from numerlab import pipeline
    from numerlab.models.base import save_model

    manifest = read_manifest(cfg)
    train = read_split(manifest, "train")
    if train is None:
        raise NumerlabError(f"{FEATURES_DIR} has no train split")
    with artifacts.staged(ARTIFACTS) as stage, \
            tempfile.TemporaryDirectory(prefix=".train-", dir=ARTIFACTS) as work:
        # `work` takes what a fit writes besides the model (Lightning logs, checkpoints).
        model = pipeline.fit_model(cfg, train, Path(work))
        save_model(model, stage / MODEL_DIR.name, manifest["feature_names"])
    log.info("model saved in %s", MODEL_DIR)


def load_trained_model(manifest: dict[str, Any]):
    from numerlab.models.base import MODEL_META, load_model

    need(MODEL_DIR / MODEL_META, "train")
    model, feature_names = load_model(MODEL_DIR)
    if feature_names != manifest["feature_names"]:
        raise NumerlabError(f"{MODEL_DIR} was trained on other features than {FEATURES_DIR}: "
                            f"rerun the 'train' stage (`dvc repro train`)")
    return model


def stage_predict(cfg: DictConfig) -> None:
    """Validation and live predictions (post-processed) and submission.csv."""
    from numerlab import pipeline
    from numerlab.postprocess import PostProcess
    from numerlab.registry import build

    manifest = read_manifest(cfg)
    model = load_trained_model(manifest)
    validation_ds = read_split(manifest, "validation")
    live_ds = read_split(manifest, "live")
    if validation_ds is None:
        raise NumerlabError(f"{FEATURES_DIR} has no validation split")
    postprocess = build(cfg.postprocess, "postprocess", PostProcess)
    validation, live = pipeline.predict_splits(postprocess, model, validation_ds, live_ds,
                                               read_meta_model(manifest),
                                               read_benchmarks(manifest))
    with artifacts.staged(ARTIFACTS) as stage:
        pipeline.write_predictions(stage, validation, live)
    log.info("predictions: %d validation rows, %d live rows", validation.height, live.height)


def per_era_plot_table(per_era: pl.DataFrame) -> pl.DataFrame:
    """Per-era scores with their running sums (`corr_cumulative`, ...) for `dvc plots`.
    Running sums are `report.running_sum`: eras where a score is undefined are skipped, and
    the sum is empty before a score's first era (MMC's curve starts where the meta model
    does)."""
    from numerlab.report import running_sum

    scores = [c for c in ("corr", "mmc", "bmc", "fnc") if c in per_era.columns]
    return per_era.with_columns(
        pl.Series(f"{c}_cumulative",
                  running_sum(per_era[c]),
                  nan_to_null=True)
        for c in scores)


def stage_evaluate(cfg: DictConfig) -> None:
    """metrics.json, per-era scores (parquet; csv for `dvc plots`), PNG plots and the
    feature (and ensemble member) diagnostics."""
    from numerlab import pipeline, tracking
    from numerlab.tracking import build_tracker

    manifest = read_manifest(cfg)
    frame = pl.read_parquet(need(VALIDATION_PREDICTIONS, "predict"))
    features = read_split(manifest, "validation")
    if features is None or not np.array_equal(features.ids, frame["id"].to_numpy()):
        raise NumerlabError(f"{VALIDATION_PREDICTIONS} does not match {FEATURES_DIR}: rerun "
                            f"the 'predict' stage (`dvc repro predict`)")
    model = load_trained_model(manifest)

    with artifacts.staged(ARTIFACTS) as stage:
        (stage / DIAGNOSTICS_DIR.name).mkdir()
        evaluation = pipeline.evaluate_run(cfg, stage, model, frame, features,
                                           model_name(cfg.model),
                                           manifest.get("benchmark"),
                                           diagnostics_dir=stage / DIAGNOSTICS_DIR.name)
        per_era_plot_table(evaluation.per_era).write_csv(stage / PER_ERA_PLOT.name)
    pipeline.show_evaluation(evaluation)
    tracker = build_tracker(cfg.logger)
    with tracking.job(tracker, cfg, ARTIFACTS, "train"):
        pipeline.log_to_tracker(tracker, evaluation.metrics, evaluation.per_era, ARTIFACTS,
                                evaluation.plots)


def stage_cv(cfg: DictConfig) -> None:
    """Walk-forward CV (pipelines/cv/dvc.yaml): task=cv's steps into artifacts/cv/."""
    from numerlab.tasks import cv

    cv.run(cfg, CV_DIR)


STAGES: dict[str, Callable[[DictConfig], None]] = {
    "data": stage_data,
    "features": stage_features,
    "train": stage_train,
    "predict": stage_predict,
    "evaluate": stage_evaluate,
    "cv": stage_cv,
}


# --- command line -------------------------------------------------------------------------

def run_stage(name: str, params_path: str | Path = PARAMS_FILE) -> None:
    refuse_params_of_killed_experiment(params_path)
    cfg = load_params(params_path)
    require(cfg, REQUIRED[name], params_path)
    try:
        STAGES[name](cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        if key:
            raise missing_key(params_path, key) from None
        raise NumerlabError(f"{params_path}: {message_line(exc)}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m numerlab.stages",
        description="numerlab's DVC stages (see dvc.yaml); each reads params.yaml.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, fn in STAGES.items():
        sub = commands.add_parser(name, help=(fn.__doc__ or name).splitlines()[0])
        sub.add_argument("--params", default=PARAMS_FILE, metavar="PATH",
                         help="params file to read (default: params.yaml)")
    sub = commands.add_parser("params", help="rewrite params.yaml from conf/ as `dvc exp run` "
                              "does (Hydra overrides allowed)")
    sub.add_argument("overrides", nargs="*", help="e.g. model=xgboost seed=3")
    sub.add_argument("--output", default=PARAMS_FILE, metavar="PATH")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        if args.command == "params":
            path = compose_params(args.overrides, args.output)
            print(f"wrote {path}")
        else:
            run_stage(args.command, args.params)
    except NumerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        restore_params_after_failed_experiment()
        return 2
    except BaseException:
        restore_params_after_failed_experiment()
        raise
    return 0


def restore_params_after_failed_experiment(path: str | Path = PARAMS_FILE) -> None:
    """Under `dvc exp run` in the workspace, put params.yaml back as the experiment's baseline
    commit has it when a stage fails: DVC writes the `-S` composition into the workspace's
    params.yaml before it runs the stages and leaves it there after a failure, so a failed
    experiment would silently become the params of the next `dvc repro`. The content it
    replaces is kept beside it (`params.yaml.failed`), never lost: it may hold edits of
    yours when the experiment set no `-S`."""
    import os
    import subprocess

    baseline = os.environ.get("DVC_EXP_BASELINE_REV")
    root = os.environ.get("DVC_ROOT")
    if not baseline or not root or Path(root).resolve() != Path.cwd().resolve():
        return  # not an experiment, or one in a temporary copy (queue, --temp)
    # `./` makes the path relative to this dir (the DVC root), not to the git root
    shown = subprocess.run(["git", "show", f"{baseline}:./{Path(path).as_posix()}"],
                           capture_output=True, check=False)
    if shown.returncode != 0 or not Path(path).is_file():
        return
    current = Path(path).read_bytes()
    if current != shown.stdout:
        kept = Path(f"{path}.failed")
        for n in range(1, 1000):  # an earlier failure's copy is never overwritten
            if not kept.exists():
                break
            kept = Path(f"{path}.failed.{n}")
        kept.write_bytes(current)
        Path(path).write_bytes(shown.stdout)
        print(f"{path} restored as commit {baseline[:7]} has it (the experiment failed); "
              f"what it held is in {kept}", file=sys.stderr)


# DVC's record of the experiment running in the workspace (`dvc exp run` without --temp or
# --queue): written when it starts, removed when it ends; a kill -9 leaves it (DVC 3.x)
WORKSPACE_EXP_INFO = Path(".dvc/tmp/exps/run/workspace/workspace.run")
UNFINISHED_EXP_STATUSES = (0, 1, 2)  # dvc_task TaskStatus PENDING, PREPARING, RUNNING


def refuse_params_of_killed_experiment(path: str | Path = PARAMS_FILE) -> None:
    """Outside `dvc exp run`, refuse to run with a params.yaml that a killed workspace
    experiment left: DVC writes the experiment's composition into params.yaml, and a kill -9
    of `dvc exp run` leaves it there with DVC's record of the unfinished run, so the next
    `dvc repro` would train the experiment's settings as if they were yours. Nothing is
    changed: the line says how to restore params.yaml, or to keep it."""
    import os
    import subprocess

    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return  # inside `dvc exp run`: the experiment's params are the ones meant
    root = Path(os.environ.get("DVC_ROOT") or ".")
    info_path = root / WORKSPACE_EXP_INFO
    try:
        info = json.loads(info_path.read_text())
        baseline = str(info["baseline_rev"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if info.get("status") not in UNFINISHED_EXP_STATUSES or _exp_process_alive(info_path):
        return
    params = root / Path(path)
    if not params.is_file() or Path(path).is_absolute():
        return
    current = params.read_bytes()
    for rev in (baseline, "HEAD"):
        shown = subprocess.run(["git", "show", f"{rev}:./{Path(path).as_posix()}"],
                               cwd=root, capture_output=True, check=False)
        if shown.returncode != 0 or shown.stdout == current:
            return  # not in git (nothing to compare with), or as committed
    raise NumerlabError(
        f"{path} holds the settings of experiment {info.get('name', '?')!r}, whose "
        f"`dvc exp run` was killed before it finished: restore yours with `git checkout "
        f"{baseline[:7]} -- {path}` (`git diff {path}` shows the difference), or delete "
        f"{WORKSPACE_EXP_INFO} to run with these")


def _exp_process_alive(info_path: Path) -> bool:
    """The workspace experiment's `dvc` process (its pid file beside the record) runs."""
    import os

    try:
        pid = int(json.loads(info_path.with_suffix(".json").read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        return isinstance(exc, PermissionError)
    return True


if __name__ == "__main__":
    sys.exit(main())
