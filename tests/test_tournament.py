"""numerlab.tournament against a fake Numerai: real numerapi, real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes.numerai_server import PUBLIC_ID, SECRET_KEY, FakeNumerai, parquet_bytes
from omegaconf import OmegaConf

from numerlab.data.layout import MANIFEST_FILE
from numerlab.errors import NumerlabError
from numerlab.tournament import (
    CircuitOpenError,
    RetryPolicy,
    TournamentClient,
    schedule_at,
)

pytest_plugins = ["fakes.numerai_server"]

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "tournament" / "default.yaml"
ENV = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}
VERSION = "v5.2"
DEFAULT_FILES = ["train.parquet", "validation.parquet", "live.parquet", "features.json",
                 "meta_model.parquet", "live_benchmark_models.parquet",
                 "train_benchmark_models.parquet", "validation_benchmark_models.parquet"]


def tournament_cfg(url: str, **overrides) -> dict:
    """conf/tournament/default.yaml pointed at the fake, with quick timeouts."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF))
    cfg.update({"api_url": url, "timeout_s": 2, "backoff_s": 0.001})
    cfg.update(overrides)
    return cfg


def make_client(fake: FakeNumerai, environ: dict | None = None, sleep=None, clock=None,
                **overrides) -> TournamentClient:
    extra = {"sleep": sleep or (lambda seconds: None)}
    if clock is not None:
        extra["clock"] = clock
    return TournamentClient.from_config(tournament_cfg(fake.url, **overrides),
                                        environ=ENV if environ is None else environ, **extra)


def table(seed: int, rows: int = 50) -> bytes:
    return parquet_bytes({"id": [f"n{seed}_{i:04d}" for i in range(rows)],
                          "feature_a": [(i * seed) % 5 for i in range(rows)]})


def add_version(fake: FakeNumerai, version: str = VERSION) -> dict[str, bytes]:
    """Register a v5-like version (plus files sync must not take by default)."""
    files = {name: table(i + 1) for i, name in enumerate(DEFAULT_FILES)
             if name.endswith(".parquet")}
    files["features.json"] = json.dumps({"feature_sets": {"small": ["feature_a"]},
                                         "targets": ["target"]}).encode()
    for name, content in files.items():
        fake.add_dataset(f"{version}/{name}", content)
    fake.add_dataset(f"{version}/live_example_preds.parquet", table(99))
    return files


def stat_of(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


# --- datasets ---------------------------------------------------------------------------

def test_list_datasets_and_latest_version_come_from_the_api(fake_numerai):
    for name in ["v4.3/train.parquet", "v5.0/train.parquet", "v5.2/live.parquet",
                 "v5.10/live.parquet", "v6.0/live.parquet"]:
        fake_numerai.add_dataset(name, b"x")
    client = make_client(fake_numerai)
    assert client.list_datasets("v5.2") == ["v5.2/live.parquet"]
    assert len(client.list_datasets()) == 5
    assert client.latest_version() == "v5.10"  # numeric order, v5 only
    with pytest.raises(NumerlabError, match=r"no files for data version 'v9.9' \(versions: "
                                            r"v4.3, v5.0, v5.2, v5.10, v6.0\)"):
        client.list_datasets("v9.9")


def test_sync_downloads_the_version_files_and_nothing_else(fake_numerai, tmp_path):
    files = add_version(fake_numerai)
    add_version(fake_numerai, "v5.1")
    (tmp_path / "notes.txt").write_text("mine")
    paths = make_client(fake_numerai).sync_dataset(VERSION, tmp_path, progress=False)

    assert sorted(p.name for p in paths) == sorted(DEFAULT_FILES)
    for path in paths:
        assert path.read_bytes() == files[path.name]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob("*.temp"))
    assert not (tmp_path / "live_example_preds.parquet").exists()


def test_sync_again_leaves_unchanged_files_alone(fake_numerai, tmp_path):
    add_version(fake_numerai)
    client = make_client(fake_numerai)
    paths = client.sync_dataset(VERSION, tmp_path, progress=False)
    before = {p.name: stat_of(p) for p in paths}
    gets = len(fake_numerai.requests_to("/files/"))

    client.sync_dataset(VERSION, tmp_path, progress=False)
    assert {p.name: stat_of(p) for p in paths} == before
    assert len(fake_numerai.requests_to("/files/")) == gets + len(paths)  # one look each


def test_sync_replaces_a_changed_file_only(fake_numerai, tmp_path):
    add_version(fake_numerai)
    client = make_client(fake_numerai)
    client.sync_dataset(VERSION, tmp_path, progress=False)
    train = stat_of(tmp_path / "train.parquet")
    fake_numerai.add_dataset(f"{VERSION}/live.parquet", table(42, rows=80))

    client.sync_dataset(VERSION, tmp_path, progress=False)
    assert (tmp_path / "live.parquet").read_bytes() == table(42, rows=80)
    assert stat_of(tmp_path / "train.parquet") == train


def test_sync_keeps_a_file_already_there_with_the_same_size(fake_numerai, tmp_path):
    files = add_version(fake_numerai)
    (tmp_path / "live.parquet").write_bytes(files["live.parquet"])
    before = stat_of(tmp_path / "live.parquet")
    make_client(fake_numerai).sync_dataset(VERSION, tmp_path, files=["live.parquet"],
                                           progress=False)
    assert stat_of(tmp_path / "live.parquet") == before
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["files"]["live.parquet"]["size"] == len(files["live.parquet"])


def test_sync_never_replaces_a_file_it_did_not_download(fake_numerai, tmp_path):
    add_version(fake_numerai)
    mine = b"my own live file, not Numerai's"
    (tmp_path / "live.parquet").write_bytes(mine)
    with pytest.raises(NumerlabError, match="was not downloaded by numerlab"):
        make_client(fake_numerai).sync_dataset(VERSION, tmp_path, files=["live.parquet"],
                                               progress=False)
    assert (tmp_path / "live.parquet").read_bytes() == mine


def test_sync_of_chosen_files(fake_numerai, tmp_path):
    add_version(fake_numerai)
    client = make_client(fake_numerai)
    paths = client.sync_dataset(VERSION, tmp_path, files=["live.parquet", "v5.2/features.json"],
                                progress=False)
    assert [p.name for p in paths] == ["live.parquet", "features.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["live.parquet", "features.json", MANIFEST_FILE])
    with pytest.raises(NumerlabError, match=r"no dataset 'v5.2/live.csv' \(files of v5.2: "):
        client.sync_dataset(VERSION, tmp_path, files=["live.csv"], progress=False)


def test_truncated_download_resumes_with_range(fake_numerai, tmp_path):
    files = add_version(fake_numerai)
    fake_numerai.truncate_next_download(f"{VERSION}/live.parquet", after_bytes=100)
    make_client(fake_numerai).sync_dataset(VERSION, tmp_path, files=["live.parquet"],
                                           progress=False)

    assert (tmp_path / "live.parquet").read_bytes() == files["live.parquet"]
    gets = fake_numerai.requests_to("/files/")
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == "bytes=100-"
    assert gets[1].headers["If-Range"] == fake_numerai.state.datasets[
        f"{VERSION}/live.parquet"].etag
    assert not (tmp_path / "live.parquet.temp").exists()


def test_interrupted_download_is_never_under_the_final_name_and_resumes_next_run(
        fake_numerai, tmp_path):
    files = add_version(fake_numerai)
    fake_numerai.truncate_next_download(f"{VERSION}/live.parquet", after_bytes=100)
    with pytest.raises(NumerlabError, match=r"download of v5.2/live.parquet: .*1 attempt"):
        make_client(fake_numerai, max_attempts=1).sync_dataset(
            VERSION, tmp_path, files=["live.parquet"], progress=False)
    assert not (tmp_path / "live.parquet").exists()
    assert (tmp_path / "live.parquet.temp").stat().st_size == 100

    make_client(fake_numerai).sync_dataset(VERSION, tmp_path, files=["live.parquet"],
                                           progress=False)
    assert (tmp_path / "live.parquet").read_bytes() == files["live.parquet"]
    assert fake_numerai.requests_to("/files/")[-1].headers["Range"] == "bytes=100-"


def test_resume_of_a_changed_file_starts_over(fake_numerai, tmp_path):
    add_version(fake_numerai)
    fake_numerai.truncate_next_download(f"{VERSION}/live.parquet", after_bytes=100)
    with pytest.raises(NumerlabError):
        make_client(fake_numerai, max_attempts=1).sync_dataset(
            VERSION, tmp_path, files=["live.parquet"], progress=False)
    old_etag = fake_numerai.state.datasets[f"{VERSION}/live.parquet"].etag
    fake_numerai.add_dataset(f"{VERSION}/live.parquet", table(7, rows=300))

    make_client(fake_numerai).sync_dataset(VERSION, tmp_path, files=["live.parquet"],
                                           progress=False)
    assert (tmp_path / "live.parquet").read_bytes() == table(7, rows=300)
    last = fake_numerai.requests_to("/files/")[-1]
    assert last.headers["If-Range"] == old_etag  # asked to resume, got the new file whole


def test_download_that_does_not_open_is_not_kept(fake_numerai, tmp_path):
    files = add_version(fake_numerai)
    client = make_client(fake_numerai)
    client.sync_dataset(VERSION, tmp_path, files=["live.parquet"], progress=False)
    fake_numerai.add_dataset(f"{VERSION}/live.parquet", b"PAR1 this is no parquet file")

    with pytest.raises(NumerlabError, match="downloaded v5.2/live.parquet is not a readable "
                                            "parquet file"):
        client.sync_dataset(VERSION, tmp_path, files=["live.parquet"], progress=False)
    assert (tmp_path / "live.parquet").read_bytes() == files["live.parquet"]
    assert not (tmp_path / "live.parquet.temp").exists()

    fake_numerai.add_dataset(f"{VERSION}/features.json", b"{not json")
    with pytest.raises(NumerlabError, match="features.json is not a readable JSON file"):
        client.sync_dataset(VERSION, tmp_path, files=["features.json"], progress=False)
    assert not (tmp_path / "features.json").exists()


def test_download_retries_a_hanging_and_a_failing_file_server(fake_numerai, tmp_path):
    files = add_version(fake_numerai)
    fake_numerai.hang_next(1, path="/files/")
    fake_numerai.fail_next(1, 503, path="/files/")
    make_client(fake_numerai, timeout_s=0.5).sync_dataset(
        VERSION, tmp_path, files=["live.parquet"], progress=False)
    assert (tmp_path / "live.parquet").read_bytes() == files["live.parquet"]
    assert len(fake_numerai.requests_to("/files/")) == 3


def test_sync_with_a_progress_bar(fake_numerai, tmp_path, capsys):
    add_version(fake_numerai)
    paths = make_client(fake_numerai).sync_dataset(VERSION, tmp_path, files=["live.parquet"],
                                                   progress=True)
    assert paths == [tmp_path / "live.parquet"]


# --- rounds -----------------------------------------------------------------------------

TUESDAY = datetime(2026, 3, 3, tzinfo=UTC)  # a Tuesday


def at(day_offset: int, hour: int, minute: int = 0) -> datetime:
    return TUESDAY + timedelta(days=day_offset, hours=hour, minutes=minute)


@pytest.mark.parametrize(("now", "opened", "closes", "next_open"), [
    (at(0, 12, 30), at(0, 12), at(0, 13), at(1, 12)),     # Tuesday round open
    (at(0, 13, 30), at(0, 12), at(0, 13), at(1, 12)),     # Tuesday round closed
    (at(0, 12), at(0, 12), at(0, 13), at(1, 12)),         # opens on the hour
    (at(3, 11), at(2, 12), at(2, 13), at(3, 12)),         # Friday before the open
    (at(4, 15), at(4, 12), at(5, 14), at(7, 12)),         # Saturday: weekend round
    (at(5, 9), at(4, 12), at(5, 14), at(7, 12)),          # Sunday: still the weekend round
    (at(5, 13, 59), at(4, 12), at(5, 14), at(7, 12)),     # Sunday, a minute before it closes
    (at(5, 14), at(4, 12), at(5, 14), at(7, 12)),         # Sunday 14:00: closed
    (at(6, 13, 30), at(4, 12), at(5, 14), at(7, 12)),     # Monday: no round open
])
def test_weekday_schedule(now, opened, closes, next_open):
    assert schedule_at(now) == (opened, closes, next_open)


def test_round_status_takes_times_and_multipliers_from_the_api(fake_numerai):
    fake_numerai.open_round(1201, open_time=at(0, 13), close_time=at(0, 14, 5))
    fake_numerai.add_upcoming_round(1202, at(1, 13))
    status = make_client(fake_numerai).round_status(now=at(0, 13, 20))

    assert (status.number, status.is_open, status.source) == (1201, True, "api")
    assert status.close_time == at(0, 14, 5)  # not the schedule's 13:00
    assert status.time_left == timedelta(minutes=45)
    assert status.next_open_time == at(1, 13)
    assert status.multipliers == {"canon_corr": 0.5, "canon_mmc": 2.0}  # FNC is no payout
    assert (status.corr_multiplier, status.mmc_multiplier) == (0.5, 2.0)
    assert status.payout_factor == 1.0
    assert "round 1201 is open" in status.lines()[0]


def test_round_status_of_a_closed_round(fake_numerai):
    fake_numerai.open_round(1201, open_time=at(0, 13), close_time=at(0, 14))
    status = make_client(fake_numerai).round_status(now=at(0, 15))
    assert (status.number, status.is_open, status.time_left) == (1201, False, None)
    assert status.next_open_time == at(1, 12)  # no upcoming round listed: the schedule
    assert "closed" in status.lines()[0]


def test_round_status_falls_back_to_the_schedule_when_the_api_is_silent(fake_numerai):
    fake_numerai.no_round()
    status = make_client(fake_numerai).round_status(now=at(4, 15))
    assert (status.source, status.number, status.is_open) == ("rule", None, True)
    assert (status.open_time, status.close_time) == (at(4, 12), at(5, 14))
    assert status.multipliers == {}


def test_multipliers_keep_unfamiliar_score_names(fake_numerai):
    fake_numerai.open_round(1201, open_time=at(0, 13), close_time=at(0, 14), payout_scores=[
        {"name": "alpha", "displayName": "Alpha", "isPayout": True, "defaultMultiplier": "1"},
        {"name": "mpc", "displayName": "MPC", "isPayout": True, "defaultMultiplier": "3"}])
    status = make_client(fake_numerai).round_status(now=at(0, 13, 30))
    assert status.multipliers == {"alpha": 1.0, "mpc": 3.0}
    assert (status.corr_multiplier, status.mmc_multiplier) == (None, None)


# --- account and stakes -----------------------------------------------------------------

def test_models_stake_and_wallet(fake_numerai):
    model_id = fake_numerai.add_model("alpha_model", stake="12.5")
    fake_numerai.add_model("beta_model")
    client = make_client(fake_numerai)
    assert client.models() == {"alpha_model": model_id,
                               "beta_model": fake_numerai.state.models["beta_model"].id}
    assert client.model_id("alpha_model") == model_id
    assert client.stake("alpha_model") == 12.5
    assert client.stake("beta_model") == 0.0
    assert client.wallet_balance() == 100.0
    with pytest.raises(NumerlabError, match=r"no model 'gamma' \(its models: alpha_model, "
                                            r"beta_model\)"):
        client.model_id("gamma")
    with pytest.raises(NumerlabError, match="stake of model 'gamma'.*Model not found"):
        client.stake("gamma")


def test_change_stake_increases_and_decreases(fake_numerai):
    fake_numerai.abs.migrated = False  # the v2 mutations of a tournament not on ABS yet
    fake_numerai.add_model("alpha_model", stake="10")
    client = make_client(fake_numerai)
    up = client.change_stake("alpha_model", 2.25)
    assert (up.action, up.amount) == ("increase", 2.25)
    assert client.stake("alpha_model") == 12.25
    down = client.change_stake("alpha_model", -0.1 - 0.2)  # 0.30000000000000004
    assert (down.action, down.amount) == ("decrease", 0.3)
    assert down.due_date is not None
    assert [(c.type, str(c.value)) for c in fake_numerai.state.stake_changes] == [
        ("increase", "2.25"), ("decrease", "0.3")]
    with pytest.raises(NumerlabError, match="Cannot decrease stake below zero"):
        client.change_stake("alpha_model", -100)
    requests_before = len(fake_numerai.state.requests)
    with pytest.raises(NumerlabError, match="must be a non-zero number of NMR, got 0"):
        client.change_stake("alpha_model", 0)
    assert len(fake_numerai.state.requests) == requests_before


def test_stake_change_is_not_repeated_when_its_answer_is_lost(fake_numerai):
    fake_numerai.abs.migrated = False  # the v2 mutations of a tournament not on ABS yet
    fake_numerai.add_model("alpha_model", stake="10")
    fake_numerai.fail_next(1, 500, operation="v2ChangeStake")  # answered before applying
    client = make_client(fake_numerai)
    change = client.change_stake("alpha_model", 1)  # read back: not applied, sent again
    assert fake_numerai.operations().count("v2ChangeStake") == 2
    assert [str(c.value) for c in fake_numerai.state.stake_changes] == ["1"]
    assert (change.action, change.amount) == ("increase", 1.0)


# --- uploads ----------------------------------------------------------------------------

def test_upload_predictions_while_the_round_is_open(fake_numerai, tmp_path):
    model_id = fake_numerai.add_model("alpha_model")
    fake_numerai.open_round(1201)
    csv = tmp_path / "submission.csv"
    csv.write_text("id,prediction\na,0.25\nb,0.75\n")
    submission_id = make_client(fake_numerai).upload_predictions(csv, "alpha_model")

    [submission] = fake_numerai.state.submissions
    assert submission_id == submission.id
    assert (submission.model_id, submission.content, submission.round_number) == (
        model_id, csv.read_bytes(), 1201)


def test_upload_predictions_refused_when_the_round_is_closed(fake_numerai, tmp_path):
    fake_numerai.add_model("alpha_model")
    fake_numerai.close_round(1201)
    csv = tmp_path / "submission.csv"
    csv.write_text("id,prediction\na,0.25\nb,0.75\n")
    with pytest.raises(NumerlabError, match="round is closed; the next one opens"):
        make_client(fake_numerai).upload_predictions(csv, "alpha_model")
    assert fake_numerai.state.uploads == {}
    assert "create_submission" not in fake_numerai.operations()


def test_submission_is_retried_when_the_gateway_says_it_was_not_applied(fake_numerai,
                                                                       tmp_path):
    fake_numerai.add_model("alpha_model")
    fake_numerai.open_round(1201)
    fake_numerai.fail_next(1, 503, operation="create_submission")
    csv = tmp_path / "submission.csv"
    csv.write_text("id,prediction\na,0.25\nb,0.75\n")
    make_client(fake_numerai).upload_predictions(csv, "alpha_model")
    assert fake_numerai.operations().count("create_submission") == 2
    assert len(fake_numerai.state.submissions) == 1


def test_refused_upload_put_is_an_error(fake_numerai, tmp_path):
    fake_numerai.add_model("alpha_model")
    fake_numerai.open_round(1201)
    fake_numerai.fail_next(1, 403, path="/uploads/", body="AccessDenied")
    csv = tmp_path / "submission.csv"
    csv.write_text("id,prediction\na,0.25\nb,0.75\n")
    with pytest.raises(NumerlabError, match="refused: HTTP 403"):
        make_client(fake_numerai).upload_predictions(csv, "alpha_model")
    assert "create_submission" not in fake_numerai.operations()


def test_upload_model(fake_numerai, tmp_path):
    model_id = fake_numerai.add_model("alpha_model")
    pickle = tmp_path / "model.pkl"
    pickle.write_bytes(b"\x80\x05 a pickled predict function")
    client = make_client(fake_numerai)
    upload_id = client.upload_model(pickle, "alpha_model")
    [upload] = fake_numerai.state.model_uploads
    assert (upload.id, upload.model_id, upload.content) == (upload_id, model_id,
                                                            pickle.read_bytes())
    csv = tmp_path / "model.csv"
    csv.write_text("x")
    with pytest.raises(NumerlabError, match=r"as a \.pkl file"):
        client.upload_model(csv, "alpha_model")


# --- faults -----------------------------------------------------------------------------

def test_server_errors_are_retried_until_success(fake_numerai):
    fake_numerai.add_dataset("v5.2/live.parquet", b"x")
    fake_numerai.fail_next(2, 503, operation="listDatasets")
    assert make_client(fake_numerai).list_datasets() == ["v5.2/live.parquet"]
    assert fake_numerai.operations().count("listDatasets") == 3


def test_server_errors_give_up_after_max_attempts(fake_numerai):
    fake_numerai.fail_next(None, 502)
    with pytest.raises(NumerlabError, match=r"listDatasets: HTTP 502 from 127\.0\.0\.1:\d+ "
                                            r"\(3 attempts, tournament.max_attempts\)$"):
        make_client(fake_numerai, max_attempts=3).list_datasets()
    assert fake_numerai.operations().count("listDatasets") == 3


def test_backoff_grows_exponentially_with_jitter(fake_numerai):
    fake_numerai.fail_next(3, 503)
    waits: list[float] = []
    make_client(fake_numerai, sleep=waits.append, max_attempts=4,
                backoff_s=0.5).list_datasets()
    assert len(waits) == 3
    for k, wait in enumerate(waits):  # backoff * 2**k + jitter in [0, backoff]
        assert 0.5 * 2**k <= wait <= 0.5 * 2**k + 0.5


def test_hanging_answer_times_out_and_is_retried(fake_numerai):
    fake_numerai.add_dataset("v5.2/live.parquet", b"x")
    fake_numerai.hang_next(1, operation="listDatasets")
    assert make_client(fake_numerai, timeout_s=0.5).list_datasets() == ["v5.2/live.parquet"]
    assert fake_numerai.operations().count("listDatasets") == 2


def test_hanging_server_gives_a_timeout_message(fake_numerai):
    fake_numerai.hang_next(None, operation="listDatasets")
    with pytest.raises(NumerlabError, match=r"no answer within 0.3s \(2 attempts\); raise "
                                            r"tournament.timeout_s"):
        make_client(fake_numerai, timeout_s=0.3, max_attempts=2).list_datasets()


def test_unreachable_server_is_retried_even_for_a_mutation(fake_numerai):
    fake_numerai.abs.migrated = False  # the v2 mutations of a tournament not on ABS yet
    client = make_client(fake_numerai, max_attempts=2)
    fake_numerai.stop()
    with pytest.raises(NumerlabError, match=r"v2ChangeStake: cannot connect to 127\.0\.0\.1:"
                                            r"\d+/ \(\[Errno 111\] Connection refused\) \(2 "
                                            r"attempts; not applied\); check your network "
                                            r"and tournament.api_url$"):
        client.mutate("mutation { v2ChangeStake { status } }")  # never sent: retried


@pytest.mark.parametrize("status", [200, 401, 403])
def test_rejected_keys_name_the_variables_and_are_not_retried(fake_numerai, status):
    fake_numerai.add_model("alpha_model")
    fake_numerai.reject_keys(status)
    with pytest.raises(NumerlabError, match="rejected the API keys for account .*"
                                            "NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY"):
        make_client(fake_numerai).models()
    assert fake_numerai.operations() == ["account"]


def test_missing_keys_name_the_variables_and_send_nothing(fake_numerai):
    client = make_client(fake_numerai, environ={"NUMERAI_PUBLIC_ID": PUBLIC_ID},
                         secret_key_env="MY_SECRET")
    with pytest.raises(NumerlabError, match="the secret key is not set; set the environment "
                                            "variables NUMERAI_PUBLIC_ID and MY_SECRET"):
        client.models()
    assert fake_numerai.operations() == []


@pytest.mark.parametrize(("body", "message"), [
    ("{}", "listDatasets: the answer has no data"),
    ("<html>gateway</html>", "listDatasets: the answer is not JSON"),
    ('{"data": {"listDatasets": null}}', None),
    ('{"errors": [{"message": "rate limited"}], "data": null}', "listDatasets: rate limited"),
])
def test_odd_answers_become_one_line_errors(fake_numerai, body, message):
    fake_numerai.answer_next(body, operation="listDatasets")
    client = make_client(fake_numerai)
    if message is None:
        assert client.list_datasets() == []
        return
    with pytest.raises(NumerlabError) as caught:
        client.list_datasets()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and "KeyError" not in str(caught.value)


def test_unexpected_answer_shape_never_leaks_numerapi_errors(fake_numerai):
    fake_numerai.answer_next('{"data": {"account": {"models": null}}}', operation="account")
    with pytest.raises(NumerlabError, match=r"Numerai API account: unexpected answer \("
                                            r"TypeError"):
        make_client(fake_numerai).models()


def test_circuit_breaker_opens_then_lets_a_trial_through(fake_numerai):
    now = [1000.0]
    client = make_client(fake_numerai, clock=lambda: now[0], max_attempts=2,
                         breaker_threshold=3, breaker_reset_s=60)
    fake_numerai.fail_next(None, 503, operation="listDatasets")
    with pytest.raises(NumerlabError, match="HTTP 503"):
        client.list_datasets()  # failures 1, 2
    with pytest.raises(CircuitOpenError, match=r"failed 3 times in a row \(last: HTTP 503 "
                                               r".*breaker open for another 60s"):
        client.list_datasets()  # failure 3 opens it; the retry is refused
    sent = len(fake_numerai.state.requests)
    with pytest.raises(CircuitOpenError):
        client.list_datasets()
    assert len(fake_numerai.state.requests) == sent  # failed fast: nothing sent

    fake_numerai.state.faults.clear()
    now[0] += 61
    assert client.list_datasets() == []  # the trial succeeds and closes the breaker
    assert not client.transport.breaker.is_open


def test_client_errors_do_not_open_the_breaker(fake_numerai):
    client = make_client(fake_numerai, breaker_threshold=2)
    for _ in range(3):
        with pytest.raises(NumerlabError, match="dataset not found"):
            client.dataset_url("v5.2/nothing.parquet")
    assert not client.transport.breaker.is_open


# --- keys and config --------------------------------------------------------------------

def test_keys_never_reach_logs_or_messages(fake_numerai, tmp_path, caplog):
    public, secret = "SENTINELPUBLIC4242", "SENTINELSECRET4242"
    fake_numerai.state.public_id, fake_numerai.state.secret_key = public, secret
    fake_numerai.abs.migrated = False  # a v2 stake change goes through
    fake_numerai.add_model("alpha_model", stake=1)
    fake_numerai.open_round(1201)
    add_version(fake_numerai)
    environ = {"NUMERAI_PUBLIC_ID": public, "NUMERAI_SECRET_KEY": secret}
    caplog.set_level(logging.DEBUG)
    client = make_client(fake_numerai, environ=environ, max_attempts=2, timeout_s=0.3)
    messages = [repr(client)]

    client.models()
    client.change_stake("alpha_model", 1)
    client.sync_dataset(VERSION, tmp_path, files=["live.parquet"], progress=False)
    fake_numerai.fail_next(1, 503)
    client.wallet_balance()
    faults = [
        lambda: fake_numerai.answer_next(json.dumps({"errors": [
            {"message": f"bad token {public}${secret}"}]}), operation="account"),
        lambda: fake_numerai.fail_next(1, 400, operation="v2ChangeStake", body=json.dumps(
            {"errors": [{"message": f"echo {secret}"}]})),
        lambda: fake_numerai.hang_next(2, operation="v3UserProfile")]
    for fault, call in zip(faults, (client.wallet_balance,
                                    lambda: client.change_stake("alpha_model", 1),
                                    lambda: client.stake("alpha_model")), strict=True):
        fault()
        with pytest.raises(NumerlabError) as caught:
            call()
        messages.append(str(caught.value))
    fake_numerai.reject_keys(401)
    with pytest.raises(NumerlabError) as caught:
        make_client(fake_numerai, environ=environ).models()
    messages.append(str(caught.value))

    assert fake_numerai.state.requests[0].headers["Authorization"] == f"Token {public}${secret}"
    text = caplog.text + "\n".join(messages)
    assert "***" in text  # the echoed keys were there, redacted
    assert public not in text and secret not in text


def test_keys_from_a_keys_file_outside_the_repo(fake_numerai, tmp_path):
    fake_numerai.add_model("alpha_model")
    keys = tmp_path / "keys.env"
    keys.write_text(f"# numerai\nexport NUMERAI_PUBLIC_ID={PUBLIC_ID}\n"
                    f"NUMERAI_SECRET_KEY='{SECRET_KEY}'\n")
    client = make_client(fake_numerai, environ={}, keys_file=str(keys))
    assert list(client.models()) == ["alpha_model"]

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "keys.env").write_text(keys.read_text())
    with pytest.raises(NumerlabError, match="is inside the git repository .*; move it outside"):
        make_client(fake_numerai, keys_file=str(repo / "keys.env"))
    with pytest.raises(NumerlabError, match="keys_file .*missing.env does not exist"):
        make_client(fake_numerai, keys_file=str(tmp_path / "missing.env"))


@pytest.mark.parametrize(("override", "message"), [
    ({"timeout_s": 0}, r"tournament.timeout_s=0 must be a number > 0"),
    ({"max_attempts": 0}, r"tournament.max_attempts=0 must be an integer >= 1"),
    ({"breaker_threshold": 1.5}, r"tournament.breaker_threshold=1.5 must be an integer"),
    ({"public_id_env": ""},
     r"tournament.public_id_env='' must be the name of an environment variable"),
    ({"api_url": "api-tournament.numer.ai"}, r"tournament.api_url must be an http\(s\) URL"),
])
def test_config_errors_are_one_line(override, message):
    cfg = tournament_cfg("http://127.0.0.1:9", **override)
    with pytest.raises(NumerlabError, match=message):
        TournamentClient.from_config(cfg, environ=ENV)


def test_missing_config_key():
    cfg = tournament_cfg("http://127.0.0.1:9")
    del cfg["backoff_s"]
    with pytest.raises(NumerlabError, match="tournament.backoff_s is missing"):
        TournamentClient.from_config(cfg, environ=ENV)


def test_config_has_no_secrets_and_is_dry_run_by_default():
    cfg = OmegaConf.load(CONF)
    assert (cfg.submit, cfg.execute_stake, cfg.model_name, cfg.keys_file) == (
        False, False, None, None)
    assert cfg.api_url == "https://api-tournament.numer.ai"
    assert (cfg.public_id_env, cfg.secret_key_env) == ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY")
    assert cfg.allow_stale_live is False
    assert sorted(cfg) == sorted(["api_url", "model_name", "submit", "execute_stake",
                                  "allow_stale_live", "timeout_s", "max_attempts",
                                  "backoff_s", "breaker_threshold", "breaker_reset_s",
                                  "public_id_env", "secret_key_env", "keys_file", "staking",
                                  "wallet_address"])
    assert (cfg.staking, cfg.wallet_address) == ("abs", None)


def test_the_client_reads_the_fields_of_its_settings_classes_and_each_is_required():
    from dataclasses import fields

    from numerlab.tournament import KeySource

    read = ["api_url", *(f.name for cls in (RetryPolicy, KeySource) for f in fields(cls))]
    assert set(read) <= set(OmegaConf.load(CONF))
    for key in read:
        cfg = tournament_cfg("http://127.0.0.1:9")
        del cfg[key]
        with pytest.raises(NumerlabError, match=rf"^tournament\.{key} is missing"):
            TournamentClient.from_config(cfg, environ=ENV)


def test_numerapi_module_url_is_never_touched(fake_numerai):
    import numerapi.base_api

    before = numerapi.base_api.API_TOURNAMENT_URL
    other = FakeNumerai().start()
    try:
        fake_numerai.add_dataset("v5.2/a.parquet", b"x")
        other.add_dataset("v5.1/b.parquet", b"x")
        first, second = make_client(fake_numerai), make_client(other)
        assert (first.list_datasets(), second.list_datasets()) == (["v5.2/a.parquet"],
                                                                  ["v5.1/b.parquet"])
    finally:
        other.stop()
    assert numerapi.base_api.API_TOURNAMENT_URL == before


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_module_imports_no_network_library():
    code = ("import sys, numerlab.tournament; "
            "print(sorted(m for m in ('numerapi', 'requests', 'tenacity') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT / "src")})
    assert out.stdout.strip() == "[]"


def test_policy_can_be_given_directly(fake_numerai):
    fake_numerai.add_dataset("v5.2/a.parquet", b"x")
    client = TournamentClient(fake_numerai.url, policy=RetryPolicy(
        timeout_s=2, max_attempts=1, backoff_s=0, breaker_threshold=5, breaker_reset_s=1))
    assert client.list_datasets() == ["v5.2/a.parquet"]
    assert "without keys" in repr(client)
