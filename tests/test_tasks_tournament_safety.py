"""task=live and task=stake when Numerai's answer to what they send is lost, and task=live
refusing a live.parquet that is not the current round's: real `python run.py`, the red-team
gateway in front of the fake Numerai on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FAST_GBDT, run_cli
from fakes.numerai_server import KEYS_ENV

from numerlab.data.layout import (
    META_MODEL_FILE,
    REQUIRED_FILES,
    SPLIT_NAMES,
    benchmark_file,
)
from numerlab.errors import NumerlabError
from numerlab.live_round import check_live_is_current

pytest_plugins = ["fakes.numerai_server", "fakes.gateway"]

KEYS = KEYS_ENV
VERSION = "v5.3"
# the files a v5 version lists, by their names in numerlab.data.layout
V5_FILES = [*REQUIRED_FILES, META_MODEL_FILE, *(benchmark_file(s) for s in SPLIT_NAMES)]
SMALL_PARAMS = {"n_train_eras": 48, "n_validation_eras": 16, "n_test_eras": 2,
                "rows_per_era": 150, "n_features": 24, "n_live_rows": 100}

pytestmark = pytest.mark.slow  # python run.py as a user runs it, against the fake


@pytest.fixture(autouse=True)
def not_on_abs_yet(fake_numerai):
    """These tests send v2 stake changes, as a tournament not migrated to ABS takes them."""
    fake_numerai.abs.migrated = False


def error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def own_v5(tmp_path_factory) -> tuple[Path, Path]:
    """(a v5 dir of the user's own files, a run trained on it with data.download=false)."""
    from numerlab.data.synthetic import generate

    data_dir = generate(tmp_path_factory.mktemp("own") / VERSION, SMALL_PARAMS, seed=0)
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    ok(run_cli(["data=v5", f"data.dir={data_dir}", "data.download=false",
                f"data.version={VERSION}", "data.era_stride=1", *FAST_GBDT,
                f"hydra.run.dir={run_dir}"]))
    return data_dir, run_dir


def serve(fake, data_dir: Path, live: Path | None = None) -> None:
    """Numerai serves the files of `data_dir` (live.parquet: `live` when given)."""
    for name in V5_FILES:
        fake.add_dataset(f"{VERSION}/{name}",
                         live if name == "live.parquet" and live else data_dir / name)
    fake.open_round(1001)
    fake.add_model("my_model", stake=10)


def new_round_live(live_file: Path, out: Path) -> Path:
    table = pq.read_table(live_file)
    ids = pa.array([f"r2_{i:05d}" for i in range(table.num_rows)])
    pq.write_table(table.set_column(table.schema.get_field_index("id"), "id", ids), out)
    return out


def live(url: str, run_dir: Path, job: Path, *extra: str):
    return run_cli(["task=live", f"run_dir={run_dir}", "tournament.model_name=my_model",
                    "tournament.submit=true", f"tournament.api_url={url}",
                    "tournament.backoff_s=0.01", "tournament.timeout_s=10", *extra,
                    f"hydra.run.dir={job}"], env=KEYS)


# --- the answer is lost -----------------------------------------------------------------

def test_a_submission_whose_answer_is_lost_is_sent_once_and_recorded(
        fake_numerai, gateway, tmp_path, own_v5):
    data_dir, run_dir = own_v5
    serve(fake_numerai, data_dir)
    gateway.lose_answer("create_submission", "504")
    ok(live(gateway.url, run_dir, tmp_path / "job"))

    [submission] = fake_numerai.state.submissions
    assert fake_numerai.operations().count("create_submission") == 1
    record = read_json(tmp_path / "job" / "submission.json")
    assert (record["outcome"], record["upload_id"], record["round"]) == (
        "sent", submission.id, 1001)


def test_a_submission_that_may_have_been_applied_stops_with_one_line_and_a_record(
        fake_numerai, gateway, tmp_path, own_v5):
    data_dir, run_dir = own_v5
    serve(fake_numerai, data_dir)
    gateway.lose_answer("create_submission", "drop")
    fake_numerai.fail_next(None, 500, operation="submissions")  # the read back fails
    job = tmp_path / "job"
    line = error_line(live(gateway.url, run_dir, job, "tournament.max_attempts=2"))

    assert "Numerai API create_submission: connection to 127.0.0.1:" in line
    assert "it may have been applied" in line
    assert "check the latest submission of model 'my_model' on numer.ai" in line
    assert line.endswith(f"recorded in {job / 'submission.json'} (outcome: unknown)")
    record = read_json(job / "submission.json")
    assert (record["outcome"], record["upload_id"], record["model"]) == (
        "unknown", None, "my_model")
    assert "may have been applied" in record["error"]
    assert len(fake_numerai.state.submissions) == 1  # applied once, never resent
    assert (job / "submission.csv").is_file()


@pytest.mark.parametrize("read_back", ["works", "fails"])
def test_a_stake_change_whose_answer_is_lost_reaches_numerai_once(
        fake_numerai, gateway, tmp_path, own_v5, read_back):
    _, run_dir = own_v5
    fake_numerai.add_model("my_model", stake=10)
    gateway.lose_answer("v2ChangeStake", "504")
    if read_back == "fails":  # task's stake look, snapshot before sending; then 502s
        gateway.unavailable("v3UserProfile", status=502, skip=2)
    proc = run_cli(["task=stake", "staking=fixed", "staking.stake=500", f"run_dir={run_dir}",
                    "tournament.model_name=my_model", "tournament.execute_stake=true",
                    "tournament.staking=v2",
                    f"tournament.api_url={gateway.url}", "tournament.backoff_s=0.01",
                    "tournament.max_attempts=2", f"history.path={tmp_path / 'h.sqlite'}",
                    f"hydra.run.dir={tmp_path}"], env=KEYS)

    assert fake_numerai.operations().count("v2ChangeStake") == 1
    assert [float(c.value) for c in fake_numerai.state.stake_changes] == [50.0]  # capped
    record = read_json(tmp_path / "stake.json")
    assert (record["change"], record["capped_by"]) == (50, "max_change")
    if read_back == "works":
        ok(proc)
        assert (record["outcome"], record["executed"]) == ("sent", True)
        return
    line = error_line(proc)
    assert "Numerai API v2ChangeStake: HTTP 504 from 127.0.0.1:" in line
    assert "it may have been applied (reading it back failed: " in line
    assert "check the stake of model 'my_model' on numer.ai before sending it again" in line
    assert line.endswith(f"recorded in {tmp_path / 'stake.json'} (outcome: unknown)")
    assert (record["outcome"], record["executed"]) == ("unknown", None)


# --- is live.parquet this round's -------------------------------------------------------

def test_a_live_file_of_an_earlier_round_is_not_submitted(fake_numerai, tmp_path, own_v5):
    data_dir, run_dir = own_v5
    serve(fake_numerai, data_dir, new_round_live(data_dir / "live.parquet",
                                                 tmp_path / "next_live.parquet"))
    line = error_line(live(fake_numerai.url, run_dir, tmp_path / "job"))
    assert line.startswith(f"error: not submitting: {data_dir / 'live.parquet'} is not the "
                           f"current round's live data (its MD5 ")
    assert line.endswith("run task=download to fetch the current one, or set "
                         "tournament.allow_stale_live=true to submit this file")
    assert fake_numerai.state.uploads == {} and fake_numerai.state.submissions == []
    assert not (tmp_path / "job" / "submission.csv").exists()  # refused before predicting
    assert not [r for r in fake_numerai.requests_to("/files/") if r.headers.get("Range")
                != "bytes=0-0"]  # looked at, never downloaded

    ok(live(fake_numerai.url, run_dir, tmp_path / "anyway",
            "tournament.allow_stale_live=true"))
    assert len(fake_numerai.state.submissions) == 1
    assert read_json(tmp_path / "anyway" / "submission.json")["outcome"] == "sent"


def test_the_current_live_file_is_submitted(fake_numerai, tmp_path, own_v5):
    data_dir, run_dir = own_v5
    serve(fake_numerai, data_dir)
    ok(live(fake_numerai.url, run_dir, tmp_path / "job"))
    assert len(fake_numerai.state.submissions) == 1


def test_a_source_that_is_not_numerais_is_never_current(tmp_path):
    path = tmp_path / "live.parquet"
    path.write_bytes(b"synthetic")
    with pytest.raises(NumerlabError, match=r"is not the current round's live data \(it is "
                                            r"not Numerai's data \(object; data=v5"):
        check_live_is_current(None, object(), path, allow_stale=False)
    check_live_is_current(None, object(), path, allow_stale=True)  # warned, not refused


def test_allow_stale_live_must_be_a_boolean(fake_numerai, tmp_path, own_v5):
    data_dir, run_dir = own_v5
    serve(fake_numerai, data_dir)
    line = error_line(live(fake_numerai.url, run_dir, tmp_path / "job",
                           "tournament.allow_stale_live=maybe"))
    assert "tournament.allow_stale_live='maybe' must be true or false" in line
    assert fake_numerai.state.submissions == []
