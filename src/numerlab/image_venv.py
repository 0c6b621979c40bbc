"""`export.verify=true`: the upload pickle loaded and run as Numerai will, in a local replica
of the image it runs in.

The replica is a venv of this interpreter's Python (the image's minor version: the only one
a pickle of it loads under) holding the image's pins (conf/export/images.yaml) of numpy,
pandas, scipy, cloudpickle and the model libraries the pickle uses, every other pin of the
image as a pip constraint, and nothing else: no numerlab, hydra, polars or `lightning` (the
images carry `pytorch_lightning`, which a numerlab pickle does not need). It is built once
per image and package set under `export.cache_dir` (pip downloads the wheels: a minute or
more the first time) and reused; a build goes to a temporary dir renamed into place when
complete, so an interrupted one is never taken for a replica.

In it a runner does what numerai-predict's predict.py does: `pd.read_pickle`, one call per
era with the era's benchmark rows, and its checks of the answer (a DataFrame, one row per
input row, no NaN, values in [0, 1]); here the predictions are also compared with what the
pickle's predictor computes in this process for the same rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from numerlab.errors import NumerlabError
from numerlab.images import ImagePins

log = logging.getLogger(__name__)

STAMP = "numerlab-image.json"  # written last: a dir holding it is a complete replica
BASE_PACKAGES = ("numpy", "pandas", "scipy", "cloudpickle")  # in every image, as in Numerai's
ABSENT = ("numerlab", "hydra", "omegaconf", "polars", "lightning")  # must not be importable
DIFFERENCE_WARNING = 1e-4  # max |prediction here - prediction there| that goes unmentioned

RUNNER = r'''
import inspect, json, sys

pickle_path, rows_path, out_path, absent = sys.argv[1:5]


def finish(**result):
    with open(out_path, "w") as out:
        json.dump(result, out)
    sys.exit(0)


def fail(message):
    finish(error=" ".join(str(message).split())[:500])


for name in absent.split(","):
    try:
        __import__(name)
    except ImportError:
        continue
    fail(f"{name} is importable in the replica, which the image lacks")

import numpy as np
import pandas as pd

data = np.load(rows_path, allow_pickle=False)
columns = json.loads(str(data["columns"]))
live_features = pd.DataFrame(data["features"], columns=columns,
                             index=pd.Index(data["ids"].astype(str), name="id"))
live_features.insert(0, "era", data["eras"].astype(str))
benchmark_models = pd.DataFrame({"v5_lgbm_ender20": 0.5}, index=live_features.index)

try:  # numerai-predict: pd.read_pickle, then its checks
    model = pd.read_pickle(pickle_path)
except Exception as exc:
    fail(f"loading the pickle: {type(exc).__name__}: {exc}")
num_args = len(inspect.signature(model).parameters)
if num_args not in (1, 2):
    fail(f"the pickled function takes {num_args} arguments (1 or 2 expected)")
parts = []
for era, era_features in live_features.groupby("era"):
    try:
        if num_args == 1:
            era_predictions = model(era_features)
        else:
            era_predictions = model(era_features, benchmark_models.loc[era_features.index])
    except Exception as exc:
        fail(f"predict raised {type(exc).__name__}: {exc}")
    if era_predictions is None:
        fail("predict returned None")
    if type(era_predictions) is not pd.DataFrame:
        fail(f"predict returned {type(era_predictions).__name__}, not a pandas DataFrame")
    if len(era_predictions) != len(era_features):
        fail(f"predict returned {len(era_predictions)} predictions for "
             f"{len(era_features)} rows of era {era}")
    if era_predictions.isna().any().any():
        fail("predict returned NaN predictions")
    if not era_predictions.iloc[:, 0].between(0, 1).all():
        fail("predict returned predictions outside [0, 1]")
    parts.append(era_predictions)
predictions = pd.concat(parts)
versions = {"python": sys.version.split()[0]}
for name in ("numpy", "pandas", "scipy", "cloudpickle", "lightgbm", "xgboost", "torch"):
    try:
        versions[name] = __import__(name).__version__
    except ImportError:
        pass
finish(columns=[str(c) for c in predictions.columns],
       ids=[str(i) for i in predictions.index],
       prediction=[float(v) for v in predictions.iloc[:, 0]], versions=versions)
'''


@dataclass(frozen=True)
class VerifySettings:
    """`export.*` settings of the replica: live rows predicted, where replicas are kept,
    extra pip arguments, and time limits of a build and of a run."""

    rows: int
    cache_dir: Path
    pip_args: tuple[str, ...]
    build_timeout_s: float
    run_timeout_s: float


def requirements(pins: ImagePins, libraries: Iterable[str]) -> list[str]:
    """`name==version` of each package the replica needs, at the image's pin."""
    names = list(dict.fromkeys([*BASE_PACKAGES, *libraries]))
    missing = [name for name in names if name not in pins.pins]
    if missing:
        raise NumerlabError(f"export.verify: {pins.label} pins no {missing[0]}, which the "
                            f"pickle needs: the upload cannot import it")
    return [f"{name}=={pins.pins[name]}" for name in names]


def _bin(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def _call(command: list[str], what: str, timeout_s: float, cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        raise NumerlabError(f"export.verify: {what} took more than {timeout_s:g}s "
                            f"(export.build_timeout_s)") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()
                 if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
        raise NumerlabError(f"export.verify: {what} failed: "
                            f"{errors[0] if errors else f'exit status {done.returncode}'}")


def replica(pins: ImagePins, libraries: Iterable[str], settings: VerifySettings
            ) -> tuple[Path, dict[str, Any]]:
    """(python of the replica of `pins`' image for a pickle using `libraries`, its
    record): the cached one, else built now."""
    wanted = requirements(pins, libraries)
    constraints = [f"{name}=={version}" for name, version in sorted(pins.pins.items())]
    key = hashlib.sha256(json.dumps([platform.python_version(), wanted, constraints,
                                     list(settings.pip_args)]).encode()).hexdigest()[:12]
    cache_dir = settings.cache_dir.expanduser()
    venv = cache_dir / f"{pins.image}-{key}"
    python = _bin(venv) / "python"
    if (venv / STAMP).is_file():
        return python, {**json.loads((venv / STAMP).read_text()), "cached": True}
    cache_dir.mkdir(parents=True, exist_ok=True)
    temp = cache_dir / f".{venv.name}.{os.getpid()}.building"
    shutil.rmtree(temp, ignore_errors=True)
    log.info("building a replica of %s in %s: %s (a minute or more the first time)",
             pins.label, venv, " ".join(wanted))
    start = time.monotonic()
    try:
        _call([sys.executable, "-m", "venv", str(temp)], "creating a venv",
              settings.build_timeout_s)
        (temp / "constraints.txt").write_text("\n".join(constraints) + "\n")
        left = settings.build_timeout_s - (time.monotonic() - start)
        _call([str(_bin(temp) / "python"), "-m", "pip", "install", "--quiet", "--no-input",
               "--disable-pip-version-check", "--only-binary=:all:", "-c",
               str(temp / "constraints.txt"), *settings.pip_args, *wanted],
              f"pip install {' '.join(wanted)}", max(left, 1.0))
        record = {"image": pins.image, "pins_read": pins.read, "pins_source": pins.source,
                  "python": platform.python_version(), "requirements": wanted,
                  "build_s": round(time.monotonic() - start, 1), "venv": str(venv)}
        (temp / STAMP).write_text(json.dumps(record, indent=1))
        try:
            temp.rename(venv)
        except OSError:  # another process completed the same replica first
            if not (venv / STAMP).is_file():
                raise
            shutil.rmtree(temp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log.info("replica of %s built in %.0fs", pins.image, record["build_s"])
    return python, {**record, "cached": False}


def _rows_file(frame: pd.DataFrame, path: Path) -> None:
    """live_features as arrays numpy reads without pickle (any numpy version can)."""
    features = frame.drop(columns="era")
    np.savez(path, features=features.to_numpy(dtype=np.int8),
             columns=np.array(json.dumps([str(c) for c in features.columns])),
             ids=frame.index.astype(str).to_numpy(dtype=str),
             eras=frame["era"].astype(str).to_numpy(dtype=str))


def run_in(python: Path, pickle_path: Path, frame: pd.DataFrame, timeout_s: float
           ) -> dict[str, Any]:
    """Numerai's predict.py steps for `pickle_path` on `frame` (live_features: era and
    int8 feature columns, indexed by id), run by `python` isolated from this environment
    (`-I`: no PYTHONPATH, no user site); the runner's answer."""
    with tempfile.TemporaryDirectory(prefix="numerlab-verify-") as work_dir:
        work = Path(work_dir)
        _rows_file(frame, work / "rows.npz")
        (work / "runner.py").write_text(RUNNER)
        out = work / "out.json"
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(work),
               "LANG": "C.UTF-8"}
        try:
            done = subprocess.run(
                [str(python), "-I", str(work / "runner.py"), str(Path(pickle_path).resolve()),
                 str(work / "rows.npz"), str(out), ",".join(ABSENT)],
                cwd=work, env=env, capture_output=True, text=True, timeout=timeout_s,
                check=False)
        except subprocess.TimeoutExpired:
            raise NumerlabError(f"export.verify: the pickle ran more than {timeout_s:g}s in "
                                f"the replica (export.run_timeout_s)") from None
        if not out.is_file():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            detail = lines[-1].strip() if lines else f"exit status {done.returncode}"
            return {"error": f"the runner died: {detail}"}
        return json.loads(out.read_text())


def check_answer(answer: dict[str, Any], frame: pd.DataFrame, expected: np.ndarray,
                 where: str) -> float:
    """NumerlabError unless the replica predicted every row of `frame`, by id, within
    [0, 1]; the largest difference from `expected` (this process's predictions)."""
    if "error" in answer:
        raise NumerlabError(f"export.verify: in {where} {answer['error']}")
    ids, values = answer["ids"], np.asarray(answer["prediction"], dtype=np.float64)
    if sorted(ids) != sorted(frame.index.astype(str)) or len(ids) != len(frame):
        raise NumerlabError(f"export.verify: in {where} the predictions are indexed by "
                            f"other ids than live_features")
    if answer["columns"][:1] != ["prediction"]:
        raise NumerlabError(f"export.verify: in {where} the predictions' column is "
                            f"{answer['columns'][:1]}, not 'prediction'")
    if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        raise NumerlabError(f"export.verify: in {where} predictions fall outside [0, 1]")
    there = pd.Series(values, index=ids).loc[frame.index.astype(str)].to_numpy()
    return float(np.max(np.abs(there - expected)))


def verify(pickle_path: Path, predictor: Any, libraries: list[str], pins: ImagePins,
           frame: pd.DataFrame, rows_from: str, settings: VerifySettings) -> dict[str, Any]:
    """Run `pickle_path` on `frame` in the replica of `pins`' image (built if needed) and
    check it as Numerai does; the record of it (for export.json)."""
    python, built = replica(pins, libraries, settings)
    start = time.monotonic()
    answer = run_in(python, pickle_path, frame, settings.run_timeout_s)
    where = f"a replica of {pins.label}"
    expected = predictor(frame)["prediction"].to_numpy(dtype=np.float64)
    difference = check_answer(answer, frame, expected, where)
    if difference > DIFFERENCE_WARNING:
        log.warning("in %s the pickle predicts up to %.3g away from this environment's "
                    "predictions for the same rows (the image's library versions)", where,
                    difference)
    return {"image": pins.image, "pins_read": pins.read, "rows": len(frame),
            "rows_from": rows_from, "versions": answer.get("versions", {}),
            "max_abs_difference": difference, "run_s": round(time.monotonic() - start, 1),
            "venv": built.get("venv"), "build_s": built.get("build_s"),
            "cached": built.get("cached")}
