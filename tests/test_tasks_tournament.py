"""The tournament tasks (status, download, live, stake, backtest, export) as a user runs them:
real `python run.py`, real numerapi over HTTP to the fake Numerai on 127.0.0.1, small data."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FAST_GBDT, SMALL_DATA, compose, error_line, run_cli, run_in_process
from fakes.abs import WALLET
from fakes.numerai_server import KEYS_ENV
from numerai_tools.submissions import validate_submission_numerai

from numerlab import artifacts, pipeline
from numerlab.data.layout import (
    MANIFEST_FILE,
    META_MODEL_FILE,
    REQUIRED_FILES,
    SPLIT_NAMES,
    benchmark_file,
)
from numerlab.data.source import V5Source
from numerlab.errors import NumerlabError
from numerlab.live_round import write_checked_submission
from numerlab.staking import Caps, StakeProposal
from numerlab.tasks.stake import check_within_caps

ROOT = Path(__file__).resolve().parents[1]
KEYS = KEYS_ENV
NO_KEYS = {"NUMERAI_PUBLIC_ID": "", "NUMERAI_SECRET_KEY": ""}
VERSION = "v5.3"
# the files a v5 version lists, by their names in numerlab.data.layout
V5_FILES = [*REQUIRED_FILES, META_MODEL_FILE, *(benchmark_file(s) for s in SPLIT_NAMES)]
SMALL_PARAMS = {"n_train_eras": 48, "n_validation_eras": 16, "n_test_eras": 2,
                "rows_per_era": 150, "n_features": 24, "n_live_rows": 100}


# --- helpers ----------------------------------------------------------------------------

def api(fake) -> list[str]:
    """Point the tournament client at the fake, with quick retries."""
    return [f"tournament.api_url={fake.url}", "tournament.backoff_s=0.01",
            "tournament.timeout_s=10"]


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def register(fake, source_dir: Path, version: str = VERSION) -> None:
    """Serve the v5-layout files of `source_dir` as Numerai's `version`."""
    for name in V5_FILES:
        fake.add_dataset(f"{version}/{name}", source_dir / name)


def submitted_frame(content: bytes) -> pd.DataFrame:
    from io import BytesIO

    return pd.read_csv(BytesIO(content), dtype={"id": str})


def with_new_ids(live_file: Path, out: Path, prefix: str) -> list[str]:
    """A copy of live.parquet whose ids are new (the next round's live data)."""
    table = pq.read_table(live_file)
    ids = [f"{prefix}{i:05d}" for i in range(table.num_rows)]
    table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids))
    pq.write_table(table, out)
    return ids


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v5_source(tmp_path_factory) -> Path:
    """Synthetic data in the v5 layout (what the fake serves as Numerai's files)."""
    from numerlab.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("numerai") / "v5.3", SMALL_PARAMS, seed=0)


@pytest.fixture(scope="module")
def trained_run(trained_run) -> Path:
    """The session's finished train run on the small synthetic data (read-only for the
    tests): its run dir."""
    return trained_run[0]


# --- status -----------------------------------------------------------------------------

@pytest.mark.slow
def test_status_shows_the_round_the_multipliers_and_the_stakes(fake_numerai, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    fake_numerai.open_round(1001, open_time=now - timedelta(hours=1),
                            close_time=now + timedelta(hours=3))
    fake_numerai.add_upcoming_round(1002, now + timedelta(days=1))
    fake_numerai.add_model("alpha", stake="12.5")
    fake_numerai.add_model("beta")
    proc = run_cli(["task=status", "tournament.staking=v2", *api(fake_numerai),
                    f"hydra.run.dir={tmp_path}"], env=KEYS)
    ok(proc)
    status = read_json(tmp_path / "status.json")
    assert (status["round"], status["is_open"], status["times_from"]) == (1001, True, "api")
    assert datetime.fromisoformat(status["close_time"]) == now + timedelta(hours=3)
    assert datetime.fromisoformat(status["next_open_time"]) == now + timedelta(days=1)
    assert 2.9 * 3600 < status["time_left_s"] <= 3 * 3600
    assert status["payout_multipliers"] == {"canon_corr": 0.5, "canon_mmc": 2.0}
    assert {n: m["stake"] for n, m in status["models"].items()} == {"alpha": 12.5, "beta": 0}
    assert status["models"]["alpha"]["id"] == fake_numerai.state.models["alpha"].id
    assert status["wallet_nmr"] == 100
    assert "1001" in proc.stdout and "alpha" in proc.stdout and "12.5000" in proc.stdout


@pytest.mark.slow
def test_status_without_keys_still_shows_the_round(fake_numerai, tmp_path):
    fake_numerai.open_round(1001)
    proc = run_cli(["task=status", *api(fake_numerai), f"hydra.run.dir={tmp_path}"],
                   env=NO_KEYS)
    ok(proc)
    status = read_json(tmp_path / "status.json")
    assert (status["round"], status["keys"], status["models"]) == (1001, False, None)
    assert "NUMERAI_PUBLIC_ID" in proc.stdout and "1001" in proc.stdout
    assert not [r for r in fake_numerai.state.requests if r.operation == "account"]


@pytest.mark.slow
def test_status_with_wrong_keys_is_one_line(fake_numerai, tmp_path):
    fake_numerai.open_round(1001)
    fake_numerai.reject_keys()
    line = error_line(run_cli(["task=status", *api(fake_numerai),
                               f"hydra.run.dir={tmp_path}"], env=KEYS))
    assert "rejected the API keys" in line and "NUMERAI_PUBLIC_ID" in line
    assert not (tmp_path / "status.json").exists()


# --- download ---------------------------------------------------------------------------

@pytest.mark.slow
def test_download_fetches_the_version_and_then_only_what_changed(fake_numerai, tmp_path,
                                                                 v5_source):
    register(fake_numerai, v5_source)
    fake_numerai.add_dataset("v5.2/train.parquet", v5_source / "train.parquet")
    data_dir = tmp_path / "data"
    args = ["task=download", "data=v5", f"data.dir={data_dir}", *api(fake_numerai)]
    ok(run_cli([*args, f"hydra.run.dir={tmp_path / 'first'}"], env=NO_KEYS))  # no keys needed
    for name in V5_FILES:
        assert (data_dir / name).read_bytes() == (v5_source / name).read_bytes(), name
    record = read_json(tmp_path / "first" / "download.json")
    assert record["version"] == VERSION  # null = the newest listed
    assert sorted(record["files"]) == sorted(V5_FILES)

    before = {name: (data_dir / name).stat().st_mtime_ns for name in V5_FILES}
    new_live = with_new_ids(v5_source / "live.parquet", tmp_path / "live.parquet", "r2_")
    fake_numerai.add_dataset(f"{VERSION}/live.parquet", tmp_path / "live.parquet")
    ok(run_cli([*args, f"data.version={VERSION}", f"hydra.run.dir={tmp_path / 'again'}"],
               env=NO_KEYS))
    after = {name: (data_dir / name).stat().st_mtime_ns for name in V5_FILES}
    assert {n for n in V5_FILES if after[n] != before[n]} == {"live.parquet"}
    assert pq.read_table(data_dir / "live.parquet").column("id").to_pylist() == new_live


@pytest.mark.parametrize(("overrides", "needle"), [
    (["data=v5", "data.version=v9.9"], "no files for data version 'v9.9' (versions: v5.3)"),
    ([], "choose data=v5"),
])
def test_download_bad_input_is_one_line(fake_numerai, tmp_path, v5_source, overrides,
                                        needle):
    register(fake_numerai, v5_source)
    line = error_line(run_in_process(["task=download", f"data.dir={tmp_path / 'data'}",
                                      *overrides, *api(fake_numerai),
                                      f"hydra.run.dir={tmp_path / 'job'}"]))
    assert needle in line
    assert not (tmp_path / "data" / "train.parquet").exists()


def fetcher(fake):
    return pipeline.data_fetcher(compose(["data=v5", *api(fake)]))


def test_a_v5_source_downloads_into_an_empty_dir_and_refetches_another_version(
        fake_numerai, tmp_path, v5_source):
    register(fake_numerai, v5_source)
    data_dir = tmp_path / "fresh"
    V5Source(str(data_dir), 1, 4, version=VERSION, download=True).prepare(fetcher(fake_numerai))
    assert sorted(p.name for p in data_dir.glob("*.*") if p.name != MANIFEST_FILE) == sorted(
        V5_FILES)

    register(fake_numerai, v5_source, "v5.4")
    V5Source(str(data_dir), 1, 4, version="v5.4", download=True).prepare(fetcher(fake_numerai))
    sources = {r["source"] for r in read_json(data_dir / MANIFEST_FILE)["files"].values()}
    assert sources == {f"v5.4/{name}" for name in V5_FILES}


def test_a_null_version_refreshes_live_data_of_the_version_the_dir_holds(
        fake_numerai, tmp_path, v5_source):
    """data.version=null brings live.parquet up to date from the version the dir's files
    were downloaded at, not from a newer version Numerai lists since: one dir, one version."""
    register(fake_numerai, v5_source)
    data_dir = tmp_path / "held"
    V5Source(str(data_dir), 1, 4, version=VERSION, download=True).prepare(fetcher(fake_numerai))
    register(fake_numerai, v5_source, "v5.4")  # Numerai now lists a newer version
    V5Source(str(data_dir), 1, 4, version=None, download=True).prepare(
        fetcher(fake_numerai), fresh=("live.parquet",))
    sources = {r["source"] for r in read_json(data_dir / MANIFEST_FILE)["files"].values()}
    assert sources == {f"{VERSION}/{name}" for name in V5_FILES}


def test_a_failed_download_names_the_missing_file(fake_numerai, tmp_path):
    fake_numerai.add_dataset("v5.2/train.parquet", b"not the version asked for")
    source = V5Source(str(tmp_path / "fresh"), 1, 4, version=VERSION, download=True)
    with pytest.raises(NumerlabError) as caught:
        source.prepare(fetcher(fake_numerai))
    message = str(caught.value)
    assert message.startswith(f"missing {tmp_path / 'fresh' / 'train.parquet'}; fetching "
                              f"{VERSION} from Numerai failed: ")
    assert "no files for data version 'v5.3' (versions: v5.2)" in message
    assert "\n" not in message


def test_a_v5_dir_of_your_own_is_never_written(fake_numerai, tmp_path, v5_source):
    register(fake_numerai, v5_source)
    own = tmp_path / "own"
    shutil.copytree(v5_source, own)
    (own / "train.parquet").unlink()
    source = V5Source(str(own), 1, 4, version=VERSION, download=True)
    with pytest.raises(NumerlabError, match="train.parquet"):
        source.prepare(fetcher(fake_numerai))
    assert not (own / "train.parquet").exists()
    assert fake_numerai.state.requests == []  # not even a look at Numerai


# --- the whole week ---------------------------------------------------------------------

@pytest.mark.slow
def test_the_whole_week(fake_numerai, tmp_path, v5_source):
    """download -> train -> live (dry run) -> new round: live + submit -> stake (dry run)
    -> backtest -> export + upload, each as `python run.py`, against the fake Numerai."""
    register(fake_numerai, v5_source)
    fake_numerai.open_round(1001)
    model_id = fake_numerai.add_model("my_model", stake=10)
    data_dir, train = tmp_path / "data", tmp_path / "train"
    data = ["data=v5", f"data.dir={data_dir}", f"data.version={VERSION}"]
    keys = [*api(fake_numerai), "tournament.model_name=my_model"]

    ok(run_cli(["task=download", *data, *api(fake_numerai),
                f"hydra.run.dir={tmp_path / 'download'}"]))
    requests = len(fake_numerai.state.requests)
    ok(run_cli([*data, "data.era_stride=1", *FAST_GBDT, *api(fake_numerai),
                f"hydra.run.dir={train}"]))
    assert len(fake_numerai.state.requests) == requests  # files there: nothing fetched

    # live, dry run: the same predictions the train run made for live.parquet
    ok(run_cli(["task=live", f"run_dir={train}", *keys, f"hydra.run.dir={tmp_path / 'dry'}"],
               env=KEYS))
    dry = pl.read_csv(tmp_path / "dry" / "submission.csv", schema_overrides={"id": pl.String})
    trained = pl.read_parquet(train / "predictions" / "live.parquet")
    assert dry["id"].to_list() == trained["id"].to_list()
    np.testing.assert_allclose(dry["prediction"].to_numpy(), trained["prediction"].to_numpy())
    assert read_json(tmp_path / "dry" / "submission.json")["upload_id"] == "dry run"
    assert fake_numerai.state.submissions == []

    # a new round: Numerai serves new live data; live fetches it, predicts and submits
    new_ids = with_new_ids(v5_source / "live.parquet", tmp_path / "live.parquet", "r2_")
    fake_numerai.add_dataset(f"{VERSION}/live.parquet", tmp_path / "live.parquet")
    fake_numerai.open_round(1002)
    live = tmp_path / "live"
    ok(run_cli(["task=live", f"run_dir={train}", *keys, "tournament.submit=true",
                f"hydra.run.dir={live}"], env=KEYS))
    [submission] = fake_numerai.state.submissions
    assert submission.content == (live / "submission.csv").read_bytes()
    assert (submission.model_id, submission.round_number) == (model_id, 1002)
    sent = submitted_frame(submission.content)
    validate_submission_numerai(pd.Series(new_ids), sent.copy())  # numerai-tools' checks
    assert sorted(sent["id"]) == sorted(new_ids)
    record = read_json(live / "submission.json")
    assert (record["upload_id"], record["round"], record["model"]) == (
        submission.id, 1002, "my_model")
    import hashlib
    assert record["sha256"] == hashlib.sha256(submission.content).hexdigest()

    # stake, dry run: a fixed 30 NMR per round, no position yet -> +30, nothing asked
    ok(run_cli(["task=stake", "staking=fixed", "staking.stake=30", f"run_dir={train}", *keys,
                f"history.path={tmp_path / 'h.sqlite'}", f"hydra.run.dir={tmp_path / 'stake'}"],
               env=KEYS))
    stake = read_json(tmp_path / "stake" / "stake.json")
    assert (stake["staking"], stake["current"], stake["per_round_stake"], stake["change"],
            stake["executed"]) == ("abs", 0, 30, 30, False)
    assert fake_numerai.state.stake_changes == [] and fake_numerai.abs.authorizations == []
    # ... and executed for the wallet: Numerai's authorization for the round-1002 submission
    ok(run_cli(["task=stake", "staking=fixed", "staking.stake=30", f"run_dir={train}", *keys,
                "tournament.execute_stake=true", f"tournament.wallet_address={WALLET}",
                f"history.path={tmp_path / 'h.sqlite'}", f"hydra.run.dir={tmp_path / 'staked'}"],
               env=KEYS))
    [auth] = fake_numerai.abs.authorizations
    assert (auth["submissionId"], auth["roundId"], auth["maxAmount"]) == (
        submission.id, "1002", "30")
    assert read_json(tmp_path / "staked" / "stake.json")["authorization"]["contract"] == \
        fake_numerai.abs.state.contract
    assert "v2ChangeStake" not in fake_numerai.operations()

    # backtest (ABS): the fixed baseline's return, computed here from per_era.parquet with
    # the multipliers of the current round (the fake's: CORR 0.5, MMC 2)
    bt = tmp_path / "backtest"
    ok(run_cli(["task=backtest", "staking=sharpe_scaled", "staking.min_eras=4",
                f"run_dir={train}", *api(fake_numerai), f"hydra.run.dir={bt}"]))
    metrics = read_json(bt / "metrics.json")
    assert (metrics["corr_mult"], metrics["mmc_mult"], metrics["resolution_eras"]) == (
        0.5, 2.0, 4)
    assert metrics["capital"] == 400  # 100 NMR a round, 4 rounds open at once
    assert metrics["fixed_total_return"] == pytest.approx(fixed_baseline_oracle(
        pl.read_parquet(train / "per_era.parquet").sort("era"), 100.0, 0.5, 2.0, 4) / 400 - 1)
    assert metrics["policy_n_eras"] == metrics["fixed_n_eras"] == read_json(
        train / "metrics.json")["n_eras"]
    assert {"policy_total_return", "policy_worst_drawdown", "fixed_total_return",
            "fixed_worst_drawdown"} <= set(metrics)
    frame = pl.read_parquet(bt / "backtest.parquet")
    assert frame.group_by("strategy").len().sort("strategy").rows() == [
        ("fixed", metrics["fixed_n_eras"]), ("policy", metrics["policy_n_eras"])]
    assert (bt / "plots" / "backtest.png").stat().st_size > 0

    # export + upload: the pickle predicts the new live data as the live task did
    ex = tmp_path / "export"
    ok(run_cli(["task=export", f"run_dir={train}", *keys, "tournament.submit=true",
                f"hydra.run.dir={ex}"], env=KEYS))
    [upload] = fake_numerai.state.model_uploads
    assert upload.content == (ex / "model.pkl").read_bytes()
    assert read_json(ex / "export.json")["upload_id"] == upload.id
    import cloudpickle

    predict = cloudpickle.loads(upload.content)
    live_features = pd.read_parquet(tmp_path / "live.parquet")  # indexed by id, as v5's
    assert live_features.index.name == "id"
    exported = predict(live_features, None)["prediction"]
    ours = sent.set_index("id")["prediction"]
    np.testing.assert_allclose(exported.loc[ours.index].to_numpy(), ours.to_numpy())


def fixed_baseline_oracle(per_era: pl.DataFrame, per_round: float, corr_mult: float,
                          mmc_mult: float, horizon: int) -> float:
    """Atomic Blockchain Staking by hand: a position of `per_round` NMR each era while the
    wallet (per_round x horizon at the start) holds it, each back with stake * (1 +
    clip(corr_mult * CORR + mmc_mult * MMC, -1, 1)) `horizon` eras later; the NMR held once
    every position resolved."""
    corr = per_era["corr"].to_numpy()
    mmc = np.nan_to_num(per_era["mmc"].fill_null(np.nan).to_numpy(), nan=0.0)
    back = 1 + np.clip(corr_mult * corr + mmc_mult * mmc, -1, 1)
    wallet, stakes = per_round * horizon, []
    for t in range(len(corr)):
        if t >= horizon:
            wallet += stakes[t - horizon] * back[t - horizon]
        stakes.append(min(per_round, wallet))
        wallet -= stakes[-1]
    return wallet + sum(stakes[e] * back[e] for e in range(max(0, len(corr) - horizon),
                                                           len(corr)))


# --- live: bad input --------------------------------------------------------------------

@pytest.mark.slow  # trained_run
@pytest.mark.parametrize(("setup", "overrides", "env", "needle"), [
    ("open", ["tournament.model_name=ghost"], KEYS,
     "this Numerai account has no model 'ghost' (its models: my_model)"),
    ("closed", ["tournament.model_name=my_model"], KEYS, "the Numerai round is closed"),
    ("open", ["tournament.model_name=my_model"], NO_KEYS, "Numerai API keys missing"),
    ("open", [], KEYS, "tournament.model_name is not set (your models: my_model)"),
])
def test_live_submit_bad_input_is_one_line_and_uploads_nothing(
        fake_numerai, tmp_path, trained_run, setup, overrides, env, needle):
    fake_numerai.add_model("my_model")
    if setup == "open":
        fake_numerai.open_round(1001)
    else:
        fake_numerai.close_round(1001)
    line = error_line(run_in_process(["task=live", f"run_dir={trained_run}",
                                      "tournament.submit=true", *overrides, *api(fake_numerai),
                                      f"hydra.run.dir={tmp_path}"], env=env))
    assert needle in line
    assert fake_numerai.state.uploads == {} and fake_numerai.state.submissions == []
    assert not (tmp_path / "submission.csv").exists()


@pytest.mark.slow  # trained_run
def test_live_predictions_that_are_constant_are_not_written(tmp_path, small_data_dir,
                                                            trained_run):
    """Every live row alike -> every prediction alike: Numerai would reject it. The run dir
    holds only model/ (as DVC's artifacts/), so the current config's data is used."""
    data_dir = tmp_path / "data"
    shutil.copytree(small_data_dir, data_dir)
    table = pq.read_table(data_dir / "live.parquet")
    for name in table.column_names:
        if name.startswith("feature_"):
            column = table.column(name)
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pa.array([column[0].as_py()] * table.num_rows,
                                              column.type))
    pq.write_table(table, data_dir / "live.parquet")
    run_dir = tmp_path / "artifacts"
    shutil.copytree(trained_run / "model", run_dir / "model")
    shutil.copy2(trained_run / "metrics.json", run_dir / "metrics.json")  # a finished run
    job = tmp_path / "job"
    line = error_line(run_in_process(["task=live", f"run_dir={run_dir}", f"data.dir={data_dir}",
                                      *SMALL_DATA, f"hydra.run.dir={job}"]))
    assert "predictions are constant" in line
    assert not (job / "submission.csv").exists()
    assert not (job / "predictions").exists()


def live_frame(ids: list[str], predictions: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "era": ["X"] * len(ids), "prediction": predictions})


@pytest.mark.parametrize(("ids", "predictions", "needle"), [
    (["a", "b", "z"], [0.2, 0.5, 0.8], "1 ids are not live ids"),
    (["a", "b", "c"], [0.2, float("nan"), 0.8], "1 predictions are NaN"),
    (["a", "b", "c"], [0.5, 0.5, 0.5], "predictions are constant"),
])
def test_a_live_submission_failing_numerais_checks_leaves_nothing(tmp_path, ids, predictions,
                                                                  needle):
    with pytest.raises(NumerlabError, match="fail Numerai's submission checks") as caught, \
            artifacts.staged(tmp_path) as stage:
        write_checked_submission(live_frame(ids, predictions), np.array(["a", "b", "c"]),
                                 stage)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


# --- runs that are not there ------------------------------------------------------------

@pytest.mark.parametrize(("task", "needs"), [
    ("live", "model"), ("export", "model"), ("stake", "per_era.parquet"),
    ("backtest", "per_era.parquet")])
def test_a_run_dir_without_what_the_task_needs_is_one_line(tmp_path, task, needs):
    (tmp_path / "empty").mkdir()
    line = error_line(run_in_process([f"task={task}", f"run_dir={tmp_path / 'empty'}",
                                      "tournament.model_name=my_model",
                                      f"hydra.run.dir={tmp_path / 'job'}"], env=NO_KEYS))
    assert f"has no {needs} (task={task} needs a finished run" in line


@pytest.mark.slow  # trained_run
def test_a_task_never_writes_into_the_finished_run_it_reads(tmp_path, trained_run):
    finished = tmp_path / "run"  # a copy: Hydra writes its .hydra/ and run.log into the dir
    shutil.copytree(trained_run, finished)
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    line = error_line(run_in_process(["task=backtest", f"run_dir={finished}",
                                      f"hydra.run.dir={finished}"]))
    assert "is also this job's output dir" in line
    after = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()
             if ".hydra" not in p.parts and p.name != "run.log"}
    assert after == {p: b for p, b in before.items()
                     if ".hydra" not in p.parts and p.name != "run.log"}


@pytest.mark.parametrize("door", [run_in_process, pytest.param(run_cli, marks=pytest.mark.slow)])
def test_no_run_dir_is_one_line(tmp_path, door):
    line = error_line(door(["task=backtest", f"hydra.run.dir={tmp_path}"]))
    assert "run_dir is not set: task=backtest needs a finished run's dir" in line


# --- stake ------------------------------------------------------------------------------

@pytest.mark.slow
def test_stake_executes_within_the_caps(fake_numerai, tmp_path, trained_run):
    """The legacy continuous stake of a tournament not migrated to ABS."""
    fake_numerai.abs.migrated = False
    model_id = fake_numerai.add_model("my_model", stake=10)
    ok(run_cli(["task=stake", "staking=fixed", "staking.stake=500", f"run_dir={trained_run}",
                "tournament.staking=v2", "tournament.model_name=my_model",
                "tournament.execute_stake=true",
                *api(fake_numerai), f"history.path={tmp_path / 'h.sqlite'}",
                f"hydra.run.dir={tmp_path}"], env=KEYS))
    record = read_json(tmp_path / "stake.json")
    assert (record["current"], record["target"], record["change"], record["capped_by"]) == (
        10, 60, 50, "max_change")  # conf/staking/caps/default.yaml: max_change 50
    assert record["executed"] and record["request"]["action"] == "increase"
    [change] = fake_numerai.state.stake_changes
    assert (change.model_id, change.type, float(change.value)) == (model_id, "increase", 50)
    assert float(fake_numerai.state.models["my_model"].stake) == 60
    assert "max_change" in (tmp_path / "stake.json").read_text()


@pytest.mark.slow  # trained_run
@pytest.mark.parametrize(("setup", "model", "needle"), [
    ("keys", "ghost", "this Numerai account has no model 'ghost'"),
    ("reject", "my_model", "rejected the API keys"),
    ("none", "my_model", "Numerai API keys missing"),
])
def test_stake_bad_input_is_one_line_and_changes_nothing(fake_numerai, tmp_path, trained_run,
                                                         setup, model, needle):
    fake_numerai.add_model("my_model", stake=10)
    if setup == "reject":
        fake_numerai.reject_keys()
    line = error_line(run_in_process(["task=stake", "staking=fixed", f"run_dir={trained_run}",
                                      f"tournament.model_name={model}",
                                      "tournament.execute_stake=true",
                                      f"tournament.wallet_address={WALLET}",
                                      *api(fake_numerai), f"hydra.run.dir={tmp_path}"],
                                     env=NO_KEYS if setup == "none" else KEYS))
    assert needle in line
    assert fake_numerai.state.stake_changes == [] and fake_numerai.abs.authorizations == []
    assert not (tmp_path / "stake.json").exists()


def proposal(current: float, target: float) -> StakeProposal:
    return StakeProposal(current=current, target=target, change=target - current,
                         capped_by=None, reason="test", wish=target)


@pytest.mark.parametrize(("current", "target", "wallet", "needle"), [
    (10, 70, 100, "max_change 50"),
    (990, 1020, 100, "max_stake 1000"),
    (10, 40, 20, "min_wallet 5"),
    (10, -1, 100, "target stake -1"),
    (10, 40, None, "wallet unknown, so staking.caps.min_wallet 5 cannot be kept"),
])
def test_a_stake_change_beyond_the_caps_is_refused(current, target, wallet, needle):
    caps = Caps(max_stake=1000.0, max_locked=None, max_change=50.0, min_wallet=5.0)
    with pytest.raises(NumerlabError, match="stake change refused, nothing sent") as caught:
        check_within_caps(proposal(current, target), caps, wallet)
    assert needle in str(caught.value)


def test_a_stake_change_within_the_caps_passes():
    caps = Caps(max_stake=1000.0, max_locked=None, max_change=50.0, min_wallet=5.0)
    check_within_caps(proposal(10, 60), caps, 55)  # right at max_change and min_wallet
    check_within_caps(proposal(950, 1000), caps, 100)  # right at max_stake
    check_within_caps(proposal(1200, 1150), caps, 0)  # coming down from above max_stake


# --- secrets ----------------------------------------------------------------------------

@pytest.mark.slow
def test_api_keys_never_reach_a_file_or_the_output(fake_numerai, tmp_path, v5_source):
    """Sentinel keys in the environment; train (downloading its data first), status, live +
    submit, stake (executed): no written file and no output holds them."""
    public, secret = f"PUBSENTINEL{uuid.uuid4().hex}", f"SECSENTINEL{uuid.uuid4().hex}"
    fake_numerai.state.public_id, fake_numerai.state.secret_key = public, secret
    env = {"NUMERAI_PUBLIC_ID": public, "NUMERAI_SECRET_KEY": secret}
    register(fake_numerai, v5_source)
    fake_numerai.open_round(1001)
    fake_numerai.add_model("my_model", stake=10)
    data_dir, train = tmp_path / "data", tmp_path / "train"
    runs = [
        ["data=v5", f"data.dir={data_dir}", f"data.version={VERSION}", "data.era_stride=1",
         *FAST_GBDT, f"hydra.run.dir={train}"],
        ["task=status", f"hydra.run.dir={tmp_path / 'status'}"],
        ["task=live", f"run_dir={train}", "tournament.model_name=my_model",
         "tournament.submit=true", f"hydra.run.dir={tmp_path / 'live'}"],
        ["task=stake", "staking=fixed", f"run_dir={train}", "tournament.model_name=my_model",
         "tournament.execute_stake=true", f"tournament.wallet_address={WALLET}",
         f"history.path={tmp_path / 'h.sqlite'}", f"hydra.run.dir={tmp_path / 'stake'}"],
    ]
    outputs = []
    for args in runs:
        proc = run_cli([*args, *api(fake_numerai)], env=env)
        ok(proc)
        outputs += [proc.stdout, proc.stderr]
    # the keys were used (so the runs could have leaked them) ...
    assert sorted(p.name for p in data_dir.glob("*.*") if p.name != MANIFEST_FILE) == sorted(
        V5_FILES)  # the train run downloaded its data first
    assert len(fake_numerai.state.submissions) == 1 and fake_numerai.abs.authorizations
    assert any(r.headers.get("Authorization") == f"Token {public}${secret}"
               for r in fake_numerai.state.requests)
    # ... and are nowhere: every file under tmp_path (run dirs, .hydra/, logs, data dir)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.parent.name == ".hydra" for p in written)
    for path in written:
        content = path.read_bytes()
        for key in (public, secret):
            assert key.encode() not in content, path
    for text in outputs:
        assert public not in text and secret not in text
