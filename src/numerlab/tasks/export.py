"""task=export: the finished run's model as the cloudpickle Numerai's model upload runs.

    python run.py task=export run_dir=outputs/...
    python run.py task=export run_dir=outputs/... export.verify=true
    python run.py task=export run_dir=outputs/... tournament.model_name=my_model \
        tournament.submit=true

Writes `model.pkl` (`export.export_pickle`: `predict(live_features, live_benchmark_models)`,
numerlab's code pickled by value, post-processed as the run was: its `.hydra/config.yaml`,
else the current config; the columns `postprocess.features` names come from that config's
`data.dir` features.json) into the job dir.

Numerai runs the pickle in the numerai-predict image of the Python minor version that wrote
it. The image's package pins (conf/export/images.yaml) are compared with this environment's:
one warning per difference that can break the upload (`numerlab.images`). With
`export.verify=true` the pickle is loaded and run on live rows in a cached local replica of
the image first (`numerlab.image_venv`); a failure there stops the export.

With `tournament.submit=true`, before anything is exported, the image for this Python and
the run's data version are taken from Numerai's lists (refused in one line when Numerai has
none for them); the upload names both, then Numerai's validation of it is polled
(`export.validation`), its own words on a failure. `export.json` records the file, its
sha256, the versions it was built with, the image and data version, the verification, the
upload id (or "dry run") and the validation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from numerlab import artifacts, images, runs, settings
from numerlab.errors import NumerlabError
from numerlab.export import export_pickle, live_rows
from numerlab.image_venv import VerifySettings, verify
from numerlab.tasks import _send

log = logging.getLogger(__name__)

PICKLE_FILE = "model.pkl"
EXPORT_FILE = "export.json"
GROUP = "export"
EXPORT_KEYS = ("verify", "verify_rows", "cache_dir", "pip_args", "build_timeout_s",
               "run_timeout_s", "pins", "validation")
VALIDATION_KEYS = ("poll_s", "max_polls", "timeout_s")


@dataclass(frozen=True)
class ExportSettings:
    verify: bool
    replica: VerifySettings
    pins: str | None
    poll_s: float
    max_polls: int
    timeout_s: float


def export_settings(cfg: DictConfig) -> ExportSettings:
    """The `export` group (conf/task/export.yaml), checked before any work."""
    group = cfg.get(GROUP)
    if group is None:
        raise NumerlabError("export is missing: task=export composes it (conf/task/export.yaml)")
    values = OmegaConf.to_container(group, resolve=True)
    settings.keys(GROUP, values, EXPORT_KEYS)
    settings.required(GROUP, values, EXPORT_KEYS)
    poll = values["validation"]
    if not isinstance(poll, dict):
        raise NumerlabError(f"export.validation={poll!r} must be a mapping of "
                            f"{', '.join(VALIDATION_KEYS)}")
    settings.keys("export.validation", poll, VALIDATION_KEYS)
    settings.required("export.validation", poll, VALIDATION_KEYS)
    pip_args = values["pip_args"]
    if not isinstance(pip_args, list) or not all(isinstance(a, str) for a in pip_args):
        raise NumerlabError(f"export.pip_args={pip_args!r} must be a list of pip arguments")
    replica = VerifySettings(
        rows=settings.integer("export.verify_rows", values["verify_rows"], minimum=1),
        cache_dir=Path(settings.text("export.cache_dir", values["cache_dir"])),
        pip_args=tuple(pip_args),
        build_timeout_s=settings.number("export.build_timeout_s", values["build_timeout_s"],
                                        above=0),
        run_timeout_s=settings.number("export.run_timeout_s", values["run_timeout_s"],
                                      above=0))
    return ExportSettings(
        verify=settings.boolean("export.verify", values["verify"]), replica=replica,
        pins=settings.text("export.pins", values["pins"], optional=True),
        poll_s=settings.number("export.validation.poll_s", poll["poll_s"], minimum=0),
        max_polls=settings.integer("export.validation.max_polls", poll["max_polls"],
                                   minimum=1),
        timeout_s=settings.number("export.validation.timeout_s", poll["timeout_s"],
                                  minimum=0))


def run_data_version(run_cfg: DictConfig) -> tuple[str | None, str]:
    """(the Numerai data version the run trained on, how that is known): `data.version`,
    else the version the data dir's downloads are of (its manifest); None for synthetic
    data or a dir of unknown version (the upload then runs on the newest Numerai lists)."""
    from numerlab.data.source import V5Source, build_source

    try:
        source = build_source(run_cfg.data)
    except Exception as exc:  # noqa: BLE001 - a run config of another numerlab version
        log.info("the run's data config does not build (%s)", exc)
        return None, "the run's data config names no data version"
    if not isinstance(source, V5Source):
        return None, f"the run trained on {type(source).__name__} data, not Numerai's"
    if source.version:
        return source.version, "data.version"
    held = source.held_version()
    if held:
        return held, f"the downloads in {source.dir}"
    return None, f"data.version is null and {source.dir} has no download manifest"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    job_dir = Path(run_dir)
    saved = runs.finished_run(cfg, artifacts.MODEL_DIR, job_dir)
    chosen = export_settings(cfg)
    pins_by_python = images.image_pins(chosen.pins)
    submit, model_name, client = _send.upload_client(cfg)  # checked before the export
    run_cfg = runs.saved_config(cfg, saved)  # postprocess and its columns' data dir
    python = images.python_minor()
    version, known_from = run_data_version(run_cfg)
    target = choose_target(client, python, version, known_from) if submit else None
    pins = pins_by_python.get(python)
    if chosen.verify and pins is None:
        raise NumerlabError(f"export.verify: the pins file has no image for Python {python}, "
                            f"so there is no image to replicate")
    with artifacts.staged(job_dir) as stage:
        exported = export_pickle(saved, stage / PICKLE_FILE, run_cfg)
    pickle = job_dir / PICKLE_FILE
    built = images.built_with(exported.libraries)
    differences = compare_versions(built, pins, python, exported.libraries)
    verified = None
    if chosen.verify:
        verified = verify_pickle(pickle, exported, pins, run_cfg, chosen.replica)
    fields = {"model": model_name, "run_dir": str(saved), "file": PICKLE_FILE,
              "bytes": pickle.stat().st_size, "python": built["python"], "built_with": built,
              "image": pins.image if pins else None, "image_tag": None,
              "docker_image_id": None, "pins_read": pins.read if pins else None,
              "version_warnings": differences, "data_version": version,
              "data_version_id": None, "data_version_from": known_from, "verify": verified,
              **(target or {})}
    upload = None
    if submit:
        def upload() -> str:
            return client.upload_model(pickle, model_name, target["data_version_id"],
                                       target["docker_image_id"])
    record = _send.send_file(job_dir, pickle, EXPORT_FILE, upload, **fields)
    upload_id = record["upload_id"]
    print(f"model upload pickle {pickle} ({record['bytes']} bytes, needs Python {python}, "
          f"{fields['image'] or 'no known image'}"
          + (f", verified in a replica of it on {verified['rows']} rows" if verified else "")
          + "): " + (f"uploaded for {model_name}, id {upload_id}" if submit
                     else "dry run, not uploaded (tournament.submit=true uploads it)"))
    if submit:
        await_validation(client, model_name, upload_id, chosen, job_dir, record)
    return {}


def choose_target(client: Any, python: str, version: str | None, known_from: str
                  ) -> dict[str, Any]:
    """The image for Python `python` and the data version `version` (None: the newest)
    from Numerai's lists, by id; a one-line refusal when Numerai lists none for them."""
    from numerlab.tournament import model_uploads

    image = model_uploads.image_for_python(model_uploads.docker_images(client), python)
    data = model_uploads.data_version_named(model_uploads.data_versions(client), version)
    if version is None:
        print(f"data version: {data.name}, the newest Numerai runs uploads on ({known_from})")
    return {"image": image.image or image.name, "image_tag": image.tag,
            "docker_image_id": image.id, "data_version": data.name, "data_version_id": data.id}


def compare_versions(built: dict[str, str], pins: images.ImagePins | None, python: str,
                     libraries: list[str]) -> list[str]:
    """The differences from the image's pins that can break the upload, each logged as a
    warning (or the lack of pins for this Python)."""
    if pins is None:
        lines = [f"no image pins for Python {python} in the pins file: the versions this "
                 f"pickle is built with are not compared with Numerai's"]
    else:
        lines = images.mismatches(built, pins, libraries)
    for line in lines:
        log.warning("%s", line)
    return lines


def verify_pickle(pickle: Path, exported: Any, pins: images.ImagePins, run_cfg: DictConfig,
                  replica: VerifySettings) -> dict[str, Any]:
    """`image_venv.verify` on the run's first live rows, said in one line."""
    frame, rows_from = live_rows(run_cfg, exported.predictor.columns(), replica.rows,
                                 "the run's config")
    result = verify(pickle, exported.predictor, exported.libraries, pins, frame, rows_from,
                    replica)
    print(f"verified: {pickle.name} loads and predicts {result['rows']} live rows in a replica "
          f"of {pins.label} ({', '.join(f'{k} {v}' for k, v in result['versions'].items())}; "
          + ("cached" if result["cached"] else f"built in {result['build_s']:.0f}s") + ")")
    return result


def await_validation(client: Any, model_name: str, upload_id: str, chosen: ExportSettings,
                     job_dir: Path, record: dict[str, Any]) -> None:
    """Poll Numerai's validation of the upload; export.json gets its outcome (also when
    polling fails); a refused upload ends the task with Numerai's words."""
    from numerlab.tournament import model_uploads

    fields = {k: v for k, v in record.items() if k != "time"}
    try:
        status = model_uploads.wait_for_validation(
            client, client.model_id(model_name), upload_id, max_polls=chosen.max_polls,
            poll_s=chosen.poll_s, timeout_s=chosen.timeout_s)
    except NumerlabError as exc:
        artifacts.write_record(job_dir, EXPORT_FILE, {**fields, "validation": {
            "state": "unknown", "error": str(exc)}})
        raise NumerlabError(f"uploaded for {model_name} (id {upload_id}), but reading "
                            f"Numerai's validation of it failed: {exc}") from None
    artifacts.write_record(job_dir, EXPORT_FILE, {**fields, "validation": status.record()})
    said = f"validationStatus {status.validation}, triggerStatus {status.trigger}"
    if status.state == "invalid":
        raise NumerlabError(f"Numerai refused model upload {upload_id} for {model_name} "
                            f"({said}): {status.description or 'no reason given'}")
    if status.state == "valid":
        print(f"Numerai validated the upload ({said})"
              + (f": {status.description}" if status.description else ""))
    else:
        print(f"Numerai has not validated the upload yet after {status.polls} checks in "
              f"{status.waited_s:.0f}s ({said}): see numer.ai/models")
