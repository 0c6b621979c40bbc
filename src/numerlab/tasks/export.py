"""task=export: the finished run's model as the cloudpickle Numerai's model upload runs.

    python run.py task=export run_dir=outputs/...
    python run.py task=export run_dir=outputs/... tournament.model_name=my_model \
        tournament.submit=true

Writes `model.pkl` (`export.export_model`: `predict(live_features, live_benchmark_models)`,
numerlab's code pickled by value, post-processed as the run was: its `.hydra/config.yaml`,
else the current config; the columns `postprocess.features` names come from that config's
`data.dir` features.json) into the job dir, and uploads it for `tournament.model_name` only
with `tournament.submit=true`. `export.json` records the file, its sha256, the Python
version the pickle needs, and the upload id (or "dry run").
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts, runs
from numerlab.export import export_model
from numerlab.tasks import _send

log = logging.getLogger(__name__)

PICKLE_FILE = "model.pkl"
EXPORT_FILE = "export.json"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    job_dir = Path(run_dir)
    saved = runs.finished_run(cfg, artifacts.MODEL_DIR, job_dir)
    submit, model_name, client = _send.upload_client(cfg)  # checked before the export
    run_cfg = runs.saved_config(cfg, saved)  # postprocess and its columns' data dir
    with artifacts.staged(job_dir) as stage:
        export_model(saved, stage / PICKLE_FILE, run_cfg)
    pickle = job_dir / PICKLE_FILE
    record = _send.send_file(
        job_dir, pickle, EXPORT_FILE,
        (lambda: client.upload_model(pickle, model_name)) if submit else None,
        model=model_name, run_dir=str(saved), file=PICKLE_FILE,
        bytes=pickle.stat().st_size, python=platform.python_version())
    upload_id = record["upload_id"]
    print(f"model upload pickle {pickle} ({record['bytes']} bytes, needs Python "
          f"{platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]}): "
          + (f"uploaded for {model_name}, id {upload_id}" if submit
             else "dry run, not uploaded (tournament.submit=true uploads it)"))
    return {}
