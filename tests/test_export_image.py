"""task=export and the image Numerai runs the upload in: the pins of each image
(conf/export/images.yaml) against the exporting environment, the image and data version an
upload names, Numerai's validation of it (against the fake Numerai), and `export.verify`:
the pickle loaded and run in a local replica of the image (slow: pip installs the pins)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from conftest import FAST_GBDT, SMALL_DATA, compose, run_cli
from fakes.numerai_server import PUBLIC_ID, SECRET_KEY
from omegaconf import OmegaConf

from numerlab import images
from numerlab.errors import NumerlabError
from numerlab.export import live_rows
from numerlab.image_venv import ABSENT, VerifySettings, check_answer, replica, run_in
from numerlab.tasks.export import export_settings, run_data_version

pytest_plugins = ["fakes.numerai_server"]

KEYS = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}
SEGFAULT = "Segmentation fault! Ensure python and library versions match our environment."
PYTHON = images.python_minor()
# numerai-predict py3.11/requirements.txt (DESIGN.md's facts)
PY311 = {"lightgbm": "4.6.0", "xgboost": "3.0.2", "torch": "2.7.1", "pandas": "2.3.1",
         "numpy": "2.1.3", "cloudpickle": "3.1.1", "polars": "1.31.0", "pyarrow": "21.0.0"}


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return line


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def api(fake) -> list[str]:
    return [f"tournament.api_url={fake.url}", "tournament.backoff_s=0.01",
            "tournament.timeout_s=10", "tournament.model_name=my_model",
            "export.validation.poll_s=0"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, small_data_dir) -> Path:
    """A finished LightGBM run on the small synthetic data (read-only for the tests)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    ok(run_cli([f"data.dir={small_data_dir}", *SMALL_DATA, *FAST_GBDT,
                f"hydra.run.dir={run_dir}"]))
    return run_dir


def with_data(trained_run: Path, tmp_path: Path, data: dict) -> Path:
    """A copy of the trained run whose saved config says it trained on `data`."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.data = data
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run_dir


def v5(version: str | None, data_dir: Path) -> dict:
    return {"_target_": "numerlab.data.source.V5Source", "dir": str(data_dir),
            "version": version, "download": False, "era_stride": 1, "embargo_eras": 4}


# -- the pins ---------------------------------------------------------------------------------


def test_the_pins_file_holds_each_images_versions():
    pins = images.image_pins()
    assert {"3.10", "3.11", "3.12", "3.13"} <= set(pins)
    for python, image in pins.items():
        assert image.image == f"numerai_predict_py_{python.replace('.', '_')}"
        assert image.read[:4] == "2026" and "requirements.txt" in image.source
        assert {"numpy", "pandas", "scipy", "cloudpickle", "lightgbm", "xgboost", "torch",
                "pytorch-lightning"} <= set(image.pins)
        assert "lightning" not in image.pins and "numerlab" not in image.pins
    assert {k: pins["3.11"].pins[k] for k in PY311} == PY311


@pytest.mark.parametrize(("built", "warned"), [
    ({"lightgbm": "4.6.1", "cloudpickle": "3.1.2", "numpy": "2.4.6"}, []),  # patches, minors
    ({"lightgbm": "4.7.0", "cloudpickle": "3.1.1", "numpy": "2.1.3"}, ["lightgbm"]),
    ({"lightgbm": "4.6.0", "cloudpickle": "3.0.0", "numpy": "2.1.3"}, ["cloudpickle"]),
    ({"lightgbm": "4.6.0", "cloudpickle": "3.1.1", "numpy": "1.26.4"}, ["numpy"]),
    ({"lightgbm": "3.3.5", "cloudpickle": "2.2.1", "numpy": "1.26.4"},
     ["lightgbm", "cloudpickle", "numpy"]),
])
def test_only_the_differences_that_break_an_upload_are_warned(built, warned):
    pins = images.image_pins()["3.11"]
    lines = images.mismatches({**built, "pandas": "3.0.0"}, pins, ["lightgbm"])
    assert [line.split()[0] for line in lines] == warned
    for line in lines:
        name = line.split()[0]
        assert line.startswith(f"{name} {built[name]} here, {pins.pins[name]} in "
                               f"numerai_predict_py_3_11 (pins read {pins.read}): the ")


def test_torch_local_builds_and_unpinned_libraries():
    pins = images.ImagePins("3.11", "img", "2026-01-01", "here", {
        "numpy": "2.1.3", "cloudpickle": "3.1.1", "torch": "2.7.1"})
    built = {"numpy": "2.1.0", "cloudpickle": "3.1.1", "torch": "2.7.1+cpu",
             "xgboost": "3.0.2"}
    assert images.mismatches(built, pins, ["torch"]) == []
    assert images.mismatches(built, pins, ["xgboost"]) == [
        "xgboost 3.0.2 here, but img (pins read 2026-01-01) pins no xgboost: the upload cannot "
        "import it"]


def test_built_with_is_this_environment():
    import lightgbm

    built = images.built_with(["lightgbm"])
    assert set(built) == {"python", "numpy", "pandas", "cloudpickle", "lightgbm"}
    assert built["python"].startswith(PYTHON + ".")
    assert (built["numpy"], built["lightgbm"]) == (np.__version__, lightgbm.__version__)


@pytest.mark.parametrize(("text", "message"), [
    ("images: []", "holds no `images:` mapping"),
    ("images:\n  '3.11': {image: i, read: r, source: s, pins: {numpy: 2.1}}",
     "images.3.11.pins.numpy=2.1: write the version as a quoted string"),
    ("images:\n  py3.11: {image: i, read: r, source: s, pins: {numpy: '2'}}",
     "images.py3.11: must be a Python minor version"),
    ("images:\n  '3.11': {image: i, source: s, pins: {numpy: '2'}}", "images.3.11.read is missing"),
    ("images: [", "cannot read the image pins"),
])
def test_a_bad_pins_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "pins.yaml"
    path.write_text(text)
    with pytest.raises(NumerlabError) as err:
        images.image_pins(path)
    assert message in str(err.value) and "\n" not in str(err.value)


# -- settings and the run's data version -----------------------------------------------------


@pytest.mark.parametrize(("override", "message"), [
    ("export.verify=yes", "export.verify='yes' must be true or false"),
    ("export.validation.max_polls=0", "export.validation.max_polls=0 must be an integer >= 1"),
    ("+export.verfy=true", "export.verfy is not a setting of export (did you mean "
                           "export.verify?"),
    ("export.pip_args=--pre", "export.pip_args='--pre' must be a list of pip arguments"),
    ("export.run_timeout_s=0", "export.run_timeout_s=0 must be a number > 0"),
])
def test_bad_export_settings_are_one_line(override, message):
    with pytest.raises(NumerlabError) as err:
        export_settings(compose(["task=export", override]))
    assert str(err.value).startswith(message)


def test_export_settings_come_from_conf():
    chosen = export_settings(compose(["task=export"]))
    assert (chosen.verify, chosen.pins, chosen.max_polls) == (False, None, 40)
    assert chosen.replica.cache_dir == Path("~/.cache/numerlab/images")


def test_the_runs_data_version(tmp_path):
    synthetic = OmegaConf.create({"data": compose([]).data})
    assert run_data_version(synthetic) == (
        None, "the run trained on SyntheticSource data, not Numerai's")
    assert run_data_version(OmegaConf.create({"data": v5("v5.2", tmp_path)})) == (
        "v5.2", "data.version")
    assert run_data_version(OmegaConf.create({"data": v5(None, tmp_path)})) == (
        None, f"data.version is null and {tmp_path} has no download manifest")
    (tmp_path / ".numerlab-downloads.json").write_text(json.dumps({"files": {
        "train.parquet": {"source": "v5.1/train.parquet"},
        "live.parquet": {"source": "v5.1/live.parquet"}}}))
    assert run_data_version(OmegaConf.create({"data": v5(None, tmp_path)})) == (
        "v5.1", f"the downloads in {tmp_path}")


# -- task=export: a dry run, and the upload against the fake Numerai -------------------------


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_a_dry_run_records_the_versions_and_asks_numerai_nothing(trained_run, tmp_path):
    job = tmp_path / "export"
    proc = run_cli(["task=export", f"run_dir={trained_run}", f"hydra.run.dir={job}"],
                   env={"NUMERAI_PUBLIC_ID": "", "NUMERAI_SECRET_KEY": ""})
    ok(proc)
    record = read_json(job / "export.json")
    built = images.built_with(["lightgbm"])
    pins = images.image_pins().get(PYTHON)
    assert record["built_with"] == built and record["python"] == built["python"]
    assert (record["upload_id"], record["docker_image_id"], record["data_version"]) == (
        "dry run", None, None)
    assert record["image"] == (pins.image if pins else None)
    warnings = images.mismatches(built, pins, ["lightgbm"]) if pins else [
        f"no image pins for Python {PYTHON} in the pins file: the versions this pickle is "
        f"built with are not compared with Numerai's"]
    assert record["version_warnings"] == warnings
    for line in warnings:  # one log line each
        output = (proc.stdout + proc.stderr).splitlines()
        assert sum(line in out and "WARNING" in out for out in output) == 1


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_an_upload_names_the_image_of_this_python_and_waits_for_validation(
        fake_numerai, trained_run, tmp_path):
    model_id = fake_numerai.add_model("my_model")
    fake_numerai.pickles.list_images("3.10", "3.11", "3.12", PYTHON, default="3.12")
    fake_numerai.pickles.script(("pending", None), ("validating", "pending"),
                                ("valid", "success"))
    job = tmp_path / "export"
    proc = run_cli(["task=export", f"run_dir={trained_run}", *api(fake_numerai),
                    "tournament.submit=true", f"hydra.run.dir={job}"], env=KEYS)
    ok(proc)
    [upload] = fake_numerai.state.model_uploads
    created = fake_numerai.pickles.created[upload.id]
    assert (created.model_id, upload.content) == (model_id, (job / "model.pkl").read_bytes())
    # this interpreter's image, and the newest data version (synthetic data), said so
    assert created.docker_image_id == fake_numerai.pickles.image_id(PYTHON)
    assert created.data_version_id == fake_numerai.pickles.data_version_id("v5.3")
    assert ("data version: v5.3, the newest Numerai runs uploads on (the run trained on "
            "SyntheticSource data, not Numerai's)") in proc.stdout
    assert "Numerai validated the upload (validationStatus valid, triggerStatus success)" in (
        proc.stdout)
    record = read_json(job / "export.json")
    assert (record["upload_id"], record["image"], record["image_tag"],
            record["docker_image_id"], record["data_version"]) == (
        upload.id, f"numerai_predict_py_{PYTHON.replace('.', '_')}", "a78dedd",
        created.docker_image_id, "v5.3")
    assert (record["validation"]["state"], record["validation"]["polls"]) == ("valid", 3)


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_a_refused_upload_ends_with_numerais_words(fake_numerai, trained_run, tmp_path):
    fake_numerai.add_model("my_model")
    fake_numerai.pickles.script(("pending", None), ("invalid", "failed", SEGFAULT))
    job = tmp_path / "export"
    line = error_line(run_cli(["task=export", f"run_dir={trained_run}", *api(fake_numerai),
                               "tournament.submit=true", f"hydra.run.dir={job}"], env=KEYS))
    [upload] = fake_numerai.state.model_uploads
    assert line == (f"error: Numerai refused model upload {upload.id} for my_model "
                    f"(validationStatus invalid, triggerStatus failed): {SEGFAULT}")
    record = read_json(job / "export.json")  # the upload happened: it is recorded
    assert (record["upload_id"], record["validation"]["state"],
            record["validation"]["description"]) == (upload.id, "invalid", SEGFAULT)


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_an_undecided_validation_ends_after_its_polls(fake_numerai, trained_run, tmp_path):
    fake_numerai.add_model("my_model")
    fake_numerai.pickles.script(("pending", None))
    job = tmp_path / "export"
    proc = run_cli(["task=export", f"run_dir={trained_run}", *api(fake_numerai),
                    "tournament.submit=true", "export.validation.max_polls=2",
                    f"hydra.run.dir={job}"], env=KEYS)
    ok(proc)
    assert "Numerai has not validated the upload yet after 2 checks" in proc.stdout
    assert read_json(job / "export.json")["validation"]["state"] == "pending"


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_no_image_for_this_python_is_refused_before_the_export(fake_numerai, trained_run,
                                                               tmp_path):
    fake_numerai.add_model("my_model")
    others = [p for p in ("3.10", "3.12", "3.13", "3.14") if p != PYTHON]
    fake_numerai.pickles.list_images(*others, default="3.12")
    job = tmp_path / "export"
    line = error_line(run_cli(["task=export", f"run_dir={trained_run}", *api(fake_numerai),
                               "tournament.submit=true", f"hydra.run.dir={job}"], env=KEYS))
    assert line.startswith(f"error: Numerai runs model uploads on Python {', '.join(others)} "
                           f"(default 3.12), not on {PYTHON}, the Python exporting")
    assert not (job / "model.pkl").exists() and not (job / "export.json").exists()
    assert "computePickleUploadAuth" not in fake_numerai.operations()
    assert fake_numerai.state.uploads == {}


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_the_runs_data_version_is_the_uploads(fake_numerai, trained_run, tmp_path):
    fake_numerai.add_model("my_model")
    run_dir = with_data(trained_run, tmp_path, v5("v5.2", tmp_path / "numerai"))
    job = tmp_path / "export"
    ok(run_cli(["task=export", f"run_dir={run_dir}", *api(fake_numerai),
                "tournament.submit=true", f"hydra.run.dir={job}"], env=KEYS))
    [upload] = fake_numerai.state.model_uploads
    assert fake_numerai.pickles.created[upload.id].data_version_id == (
        fake_numerai.pickles.data_version_id("v5.2"))
    record = read_json(job / "export.json")
    assert (record["data_version"], record["data_version_from"]) == ("v5.2", "data.version")

    # a version Numerai does not run uploads on: refused before the export
    fake_numerai.pickles.list_data_versions("v5.0", "v5.1")
    line = error_line(run_cli(["task=export", f"run_dir={run_dir}", *api(fake_numerai),
                               "tournament.submit=true", f"hydra.run.dir={tmp_path / 'x'}"],
                              env=KEYS))
    assert line == ("error: Numerai runs model uploads on data versions v5.0, v5.1, not on "
                    "v5.2, the run's: retrain on a listed version (data.version=...)")
    assert len(fake_numerai.state.model_uploads) == 1


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_verify_without_pins_for_this_python_is_refused_first(trained_run, tmp_path):
    pins = tmp_path / "pins.yaml"
    pins.write_text("images:\n  '2.7': {image: old, read: '2010-07-03', source: s, "
                    "pins: {numpy: '1.16.6'}}\n")
    job = tmp_path / "export"
    line = error_line(run_cli(["task=export", f"run_dir={trained_run}", "export.verify=true",
                               f"export.pins={pins}", f"hydra.run.dir={job}"]))
    assert line == (f"error: export.verify: the pins file has no image for Python {PYTHON}, "
                    f"so there is no image to replicate")
    assert not (job / "model.pkl").exists()


@pytest.mark.slow  # a real run.py run (the shared trained run) or a process
def test_live_rows_are_the_first_rows_of_the_runs_live_file(trained_run, small_data_dir):
    run_cfg = OmegaConf.load(trained_run / ".hydra" / "config.yaml")
    live = pd.read_parquet(small_data_dir / "live.parquet")
    columns = [c for c in live.columns if c.startswith("feature")][::-3]
    frame, source = live_rows(run_cfg, columns, 7, "here")
    assert source == str(small_data_dir / "live.parquet")
    pd.testing.assert_frame_equal(frame, live[["era", *columns]].iloc[:7].astype(
        {"era": str}))
    run_cfg.data.dir = str(small_data_dir / "nowhere")
    frame, source = live_rows(run_cfg, columns, 7, "here")
    assert source.startswith("random 0..4 rows") and frame.index.name == "id"
    assert list(frame.columns) == ["era", *columns] and (frame[columns].dtypes == "int8").all()


# -- export.verify: the pickle in a replica of the image --------------------------------------


def replica_settings(cache: Path, **overrides) -> VerifySettings:
    values = {"rows": 50, "cache_dir": cache, "pip_args": (), "build_timeout_s": 1800,
              "run_timeout_s": 300, **overrides}
    return VerifySettings(**values)


def frame_of(n: int = 8) -> pd.DataFrame:
    frame = pd.DataFrame({"feature_a": np.arange(n, dtype=np.int8) % 5},
                         index=pd.Index([f"id{i}" for i in range(n)], name="id"))
    frame.insert(0, "era", ["0001"] * (n // 2) + ["0002"] * (n - n // 2))
    return frame


@pytest.mark.slow  # the runner in a fresh process
def test_the_runner_refuses_an_environment_with_numerlabs_stack(tmp_path):
    # this test environment holds hydra (and numerlab): not a replica of Numerai's image
    pickle = tmp_path / "model.pkl"
    pickle.write_bytes(b"not read")
    answer = run_in(Path(sys.executable), pickle, frame_of(), timeout_s=120)
    assert answer["error"].endswith("is importable in the replica, which the image lacks")
    assert answer["error"].split()[0] in ABSENT


@pytest.mark.parametrize(("answer", "message"), [
    ({"error": "loading the pickle: UnpicklingError: bad"}, "in here loading the pickle"),
    ({"columns": ["prediction"], "ids": ["id0"], "prediction": [0.5]}, "other ids"),
    ({"columns": ["p"], "ids": [f"id{i}" for i in range(8)], "prediction": [0.5] * 8},
     "column is ['p']"),
    ({"columns": ["prediction"], "ids": [f"id{i}" for i in range(8)],
      "prediction": [1.5] * 8}, "outside [0, 1]"),
])
def test_a_replicas_bad_answer_is_one_line(answer, message):
    with pytest.raises(NumerlabError) as err:
        check_answer(answer, frame_of(), np.full(8, 0.5), "here")
    assert message in str(err.value) and str(err.value).startswith("export.verify: ")


@pytest.mark.slow
def test_verify_runs_the_pickle_in_a_replica_of_the_image(trained_run, tmp_path_factory):
    """export.verify=true builds a venv of the image's pins (numpy, pandas, scipy,
    cloudpickle, lightgbm) once, loads the pickle there as numerai-predict does, predicts
    the run's live rows and matches this environment's predictions; then reuses it."""
    pins = images.image_pins().get(PYTHON)
    # conf/export/images.yaml pins every Python numerlab runs on (3.11+, Numerai's 3.10-3.13)
    assert pins is not None, f"no image pins for Python {PYTHON} in conf/export/images.yaml"
    cache = tmp_path_factory.mktemp("images")
    job = tmp_path_factory.mktemp("verify") / "export"
    ok(run_cli(["task=export", f"run_dir={trained_run}", "export.verify=true",
                f"export.cache_dir={cache}", f"hydra.run.dir={job}"], timeout=1800))
    verified = read_json(job / "export.json")["verify"]
    names = ["numpy", "pandas", "scipy", "cloudpickle", "lightgbm"]
    assert {k: verified["versions"][k] for k in names} == {k: pins.pins[k] for k in names}
    assert verified["versions"]["python"] == images.built_with([])["python"]
    assert "torch" not in verified["versions"]  # only what the pickle needs
    assert verified["rows"] == 100 and verified["rows_from"].endswith("live.parquet")
    assert verified["max_abs_difference"] < 1e-6
    assert verified["cached"] is False and verified["build_s"] > 0
    print(f"replica of {pins.image} built in {verified['build_s']}s")

    again = job.parent / "again"
    ok(run_cli(["task=export", f"run_dir={trained_run}", "export.verify=true",
                f"export.cache_dir={cache}", f"hydra.run.dir={again}"]))
    assert read_json(again / "export.json")["verify"]["cached"] is True
    assert len(list(cache.iterdir())) == 1  # one replica, no leftover build dir

    # the same replica refuses what numerai-predict refuses, in one line
    python, _ = replica(pins, ["lightgbm"], replica_settings(cache))
    garbage = job.parent / "garbage.pkl"
    garbage.write_bytes(b"\x80\x05 not a pickle")
    answer = run_in(python, garbage, frame_of(), timeout_s=300)
    assert answer["error"].startswith("loading the pickle: UnpicklingError")

    def constant(live_features, live_benchmark_models):
        return pd.DataFrame({"prediction": 2.0}, index=live_features.index)

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        outside = job.parent / "outside.pkl"
        outside.write_bytes(cloudpickle.dumps(constant))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    answer = run_in(python, outside, frame_of(), timeout_s=300)
    assert answer == {"error": "predict returned predictions outside [0, 1]"}
