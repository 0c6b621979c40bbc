"""A whole `python run.py` against a plain pandas + LightGBM + numerai-tools script doing
the same load, fit, predict and scoring: wall time and peak memory.

    python benchmarks/whole_run.py [--rows-per-era 2500] [--train-eras 160]
        [--validation-eras 40] [--features 400] [--rounds 300] [--repeat 3] [--data-dir DIR]

Generates numerlab's synthetic data once (default 200 eras x 2,500 rows = 500k rows x 400
int8 features; kept in --data-dir when given), then --repeat times, back to back, runs:

- numerlab: `python run.py features=all model.num_boost_round=<rounds>` on that data (the
  default task=train: LightGBM, predictions for validation and live, CORR, MMC, BMC, FNC,
  feature exposure, diagnostics, plots, artifacts);
- plain: this script with --plain: pandas reads train and validation (the `all` features
  and the target), LightGBM fits the same parameters (conf/model/lgbm.yaml) for the same
  rounds, predicts validation, numerai-tools scores CORR and FNC era by era (pandas
  groupby-apply) over the eras numerlab scores (the first `embargo_eras` validation eras
  left out, as numerlab's loader does), and writes the predictions to parquet.

Each side is a fresh process; its wall time and peak RSS (`os.wait4`'s ru_maxrss of that
child) are printed with the ratios numerlab / plain, and the min and median over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMBARGO_ERAS = 4  # conf/data/synthetic.yaml: data.embargo_eras


def synthetic_params(args: argparse.Namespace) -> dict[str, int]:
    return {"n_train_eras": args.train_eras, "n_validation_eras": args.validation_eras,
            "n_test_eras": 2, "rows_per_era": args.rows_per_era,
            "n_features": args.features, "n_live_rows": 250}


def child(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process, which must succeed."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            sys.stderr.write(log.read().decode()[-4000:])
            raise SystemExit(f"{command[:3]} failed with status {proc.returncode}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def plain(data_dir: Path, rounds: int) -> None:
    """The baseline: what a user writes by hand with pandas, LightGBM and numerai-tools."""
    import warnings

    import lightgbm as lgb
    import pandas as pd
    import yaml
    from numerai_tools.scoring import feature_neutral_corr, numerai_corr

    features = json.loads((data_dir / "features.json").read_text())["feature_sets"]["all"]
    params = yaml.safe_load((ROOT / "conf/model/lgbm.yaml").read_text())["params"]
    params = {**params, "seed": 42, "verbosity": -1}
    train = pd.read_parquet(data_dir / "train.parquet", columns=["era", *features, "target"])
    model = lgb.train(params, lgb.Dataset(train[features], train["target"]),
                      num_boost_round=rounds)
    del train
    validation = pd.read_parquet(data_dir / "validation.parquet",
                                 columns=["id", "era", *features, "target"]).reset_index()
    validation = validation[validation["target"].notna()]
    scored_eras = sorted(validation["era"].unique())[EMBARGO_ERAS:]
    validation = validation[validation["era"].isin(scored_eras)]
    validation["prediction"] = model.predict(validation[features])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' groupby-apply deprecation chatter
        per_era = validation.groupby("era").apply(lambda era: pd.Series({
            "corr": numerai_corr(era[["prediction"]], era["target"]).iloc[0],
            "fnc": feature_neutral_corr(era[["prediction"]], era[features],
                                        era["target"]).iloc[0]}))
    with tempfile.TemporaryDirectory(prefix="plain-") as out:
        validation[["id", "era", "prediction", "target"]].to_parquet(
            Path(out) / "validation.parquet")
        per_era.to_parquet(Path(out) / "per_era.parquet")
    print(per_era.mean().to_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-era", type=int, default=2_500)
    parser.add_argument("--train-eras", type=int, default=160)
    parser.add_argument("--validation-eras", type=int, default=40)
    parser.add_argument("--features", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the generated data here (reused when it matches)")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain(args.data_dir, args.rounds)
        return

    from numerlab.data import synthetic

    params = synthetic_params(args)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        synthetic.ensure(data_dir, params, seed=0)
        overrides = [f"data.synthetic.{k}={v}" for k, v in params.items()]
        n_rows = (args.train_eras + args.validation_eras) * args.rows_per_era
        print(f"{n_rows:,} rows x {args.features} features, LightGBM {args.rounds} rounds")
        env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                              os.environ.get("PYTHONPATH", "")])}
        time_ratios, memory_ratios = [], []
        for i in range(args.repeat):
            ours_s, ours_mb = child([sys.executable, "run.py", f"data.dir={data_dir}",
                                     *overrides, "features=all",
                                     f"model.num_boost_round={args.rounds}",
                                     f"hydra.run.dir={Path(tmp) / f'run-{i}'}"], env)
            base_s, base_mb = child([sys.executable, __file__, "--plain",
                                     f"--data-dir={data_dir}", f"--rounds={args.rounds}"], env)
            time_ratios.append(ours_s / base_s)
            memory_ratios.append(ours_mb / base_mb)
            phases = json.loads((Path(tmp) / f"run-{i}" / "timings.json").read_text())
            print(f"  run {i + 1}: numerlab {ours_s:6.1f} s {ours_mb:7.0f} MiB   plain "
                  f"{base_s:6.1f} s {base_mb:7.0f} MiB   time {time_ratios[-1]:.2f}x   "
                  f"memory {memory_ratios[-1]:.2f}x")
            print("         numerlab phases: " + ", ".join(
                f"{name} {seconds:.1f} s" for name, seconds in phases.items()))
    print(f"numerlab / plain: time min {min(time_ratios):.2f}x median "
          f"{statistics.median(time_ratios):.2f}x   peak memory min {min(memory_ratios):.2f}x "
          f"median {statistics.median(memory_ratios):.2f}x")


if __name__ == "__main__":
    main()
