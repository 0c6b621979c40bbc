"""No money or submission mutation is sent twice: a gateway in front of the fake Numerai
forwards a mutation and then loses its answer (502, 504, a dropped connection, no answer);
what reached Numerai is counted. And Numerai's own refusals, each one line saying what to do;
and whether a live.parquet is the current round's."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from fakes.numerai_server import (
    DEADLINE_PASSED,
    PUBLIC_ID,
    SECRET_KEY,
    SESSION_INVALID,
    parquet_bytes,
)
from omegaconf import OmegaConf

from numerlab.errors import NumerlabError
from numerlab.tournament import (
    NumeraiApiError,
    OutcomeUnknown,
    ReadBack,
    RoundStatus,
    TournamentClient,
)
from numerlab.tournament.live_data import check_live_file

pytest_plugins = ["fakes.numerai_server", "fakes.gateway"]

ENV = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}
LOSSES = ["502", "504", "drop", "hang"]


@pytest.fixture(autouse=True)
def not_on_abs_yet(fake_numerai):
    """These tests send v2 stake changes, as a tournament not migrated to ABS takes them."""
    fake_numerai.abs.migrated = False


def client_at(url: str, **overrides) -> TournamentClient:
    from pathlib import Path

    cfg = OmegaConf.to_container(OmegaConf.load(
        Path(__file__).resolve().parents[1] / "conf" / "tournament" / "default.yaml"))
    cfg.update({"api_url": url, "timeout_s": 0.5, "backoff_s": 0.001, **overrides})
    return TournamentClient.from_config(cfg, environ=ENV, sleep=lambda seconds: None)


def submission_csv(tmp_path):
    csv = tmp_path / "submission.csv"
    csv.write_text("id,prediction\na,0.25\nb,0.75\n")
    return csv


# --- stake changes ----------------------------------------------------------------------

@pytest.mark.parametrize("how", LOSSES)
def test_a_stake_change_whose_answer_is_lost_is_applied_once(fake_numerai, gateway, how):
    fake_numerai.add_model("alpha", stake=10)
    gateway.lose_answer("v2ChangeStake", how)  # every one, forwarded first
    change = client_at(gateway.url).change_stake("alpha", 50)

    assert fake_numerai.operations().count("v2ChangeStake") == 1
    assert [str(c.value) for c in fake_numerai.state.stake_changes] == ["50"]
    assert float(fake_numerai.state.models["alpha"].stake) == 60
    assert (change.action, change.amount) == ("increase", 50.0)  # from the read back


def test_a_stake_change_that_never_reached_numerai_is_sent_again_once(fake_numerai, gateway):
    fake_numerai.add_model("alpha", stake=10)
    gateway.unavailable("v2ChangeStake", count=1, status=504)  # not forwarded
    client_at(gateway.url).change_stake("alpha", 50)
    assert [w for op, w in gateway.log if op == "v2ChangeStake"] == [
        "504, not forwarded", "forwarded, 200 passed on"]
    assert [str(c.value) for c in fake_numerai.state.stake_changes] == ["50"]


def test_a_503_is_retried_for_a_mutation(fake_numerai, gateway):
    fake_numerai.add_model("alpha", stake=10)
    gateway.unavailable("v2ChangeStake", count=2)  # 503: unavailable, nothing applied
    client_at(gateway.url).change_stake("alpha", -5)
    assert [str(c.value) for c in fake_numerai.state.stake_changes] == ["5"]
    assert float(fake_numerai.state.models["alpha"].stake) == 5


def test_a_stake_change_never_answered_and_never_applied_stops(fake_numerai, gateway):
    fake_numerai.add_model("alpha", stake=10)
    gateway.unavailable("v2ChangeStake", status=502)  # every one, never forwarded
    with pytest.raises(NumeraiApiError) as caught:
        client_at(gateway.url, max_attempts=3).change_stake("alpha", 50)
    line = str(caught.value)
    assert line.startswith("Numerai API v2ChangeStake: not applied (stake 10 -> 10 NMR")
    assert "each of 3 sends lost its answer (last: HTTP 502" in line and "\n" not in line
    assert fake_numerai.state.stake_changes == []


def test_a_stake_change_that_cannot_be_read_back_says_it_may_have_been_applied(
        fake_numerai, gateway):
    fake_numerai.add_model("alpha", stake=10)
    gateway.lose_answer("v2ChangeStake", "504")
    client = client_at(gateway.url)
    reads = iter([None])  # the snapshot before sending reads; the read back fails

    original = client._stake_state

    def state(name, model_id):
        if next(reads, "after") == "after":
            raise NumerlabError("Numerai API v3UserProfile: no answer within 0.5s")
        return original(name, model_id)

    client._stake_state = state
    with pytest.raises(OutcomeUnknown) as caught:
        client.change_stake("alpha", 50)
    line = str(caught.value)
    assert line.startswith("Numerai API v2ChangeStake: HTTP 504 from 127.0.0.1:")
    assert "after it was sent; it may have been applied (reading it back failed: " in line
    assert line.endswith("check the stake of model 'alpha' on numer.ai before sending it again")
    assert fake_numerai.operations().count("v2ChangeStake") == 1


# --- submissions ------------------------------------------------------------------------

@pytest.mark.parametrize("how", LOSSES)
def test_a_submission_whose_answer_is_lost_is_created_once(fake_numerai, gateway, tmp_path,
                                                           how):
    fake_numerai.add_model("alpha")
    fake_numerai.open_round(1201)
    gateway.lose_answer("create_submission", how)
    submission_id = client_at(gateway.url).upload_predictions(submission_csv(tmp_path), "alpha")

    [submission] = fake_numerai.state.submissions
    assert submission_id == submission.id  # found by reading the model's submissions
    assert fake_numerai.operations().count("create_submission") == 1
    assert "submissions" in fake_numerai.operations()


def test_a_submission_that_never_reached_numerai_is_created_once(fake_numerai, gateway,
                                                                 tmp_path):
    fake_numerai.add_model("alpha")
    fake_numerai.open_round(1201)
    gateway.unavailable("create_submission", count=1, status=504)
    client_at(gateway.url).upload_predictions(submission_csv(tmp_path), "alpha")
    assert len(fake_numerai.state.submissions) == 1
    assert fake_numerai.operations().count("create_submission") == 1


def test_a_submission_that_cannot_be_read_back_says_what_to_check(fake_numerai, gateway,
                                                                  tmp_path):
    fake_numerai.add_model("alpha")
    fake_numerai.open_round(1201)
    gateway.lose_answer("create_submission", "drop")
    fake_numerai.fail_next(None, 500, operation="submissions")
    with pytest.raises(OutcomeUnknown) as caught:
        client_at(gateway.url, max_attempts=2).upload_predictions(submission_csv(tmp_path),
                                                                  "alpha")
    line = str(caught.value)
    assert line.startswith("Numerai API create_submission: connection to 127.0.0.1:")
    assert "closed without an answer after it was sent; it may have been applied (reading it " \
           "back failed: " in line
    assert line.endswith("check the latest submission of model 'alpha' on numer.ai before "
                         "sending it again")
    assert len(fake_numerai.state.submissions) == 1  # it was applied: never sent twice
    assert fake_numerai.operations().count("create_submission") == 1


def test_a_model_uploads_create_is_never_resent(fake_numerai, gateway, tmp_path):
    fake_numerai.add_model("alpha")
    pickle = tmp_path / "model.pkl"
    pickle.write_bytes(b"\x80\x05 a pickled predict function")
    gateway.lose_answer("createComputePickleUpload", "504")
    with pytest.raises(OutcomeUnknown, match="createComputePickleUpload: HTTP 504 .* after "
                                             "the request was sent; it may have been applied"):
        client_at(gateway.url).upload_model(pickle, "alpha")
    assert fake_numerai.operations().count("createComputePickleUpload") == 1


def test_mutate_is_generic(fake_numerai, gateway):
    """What another mutation (ABS staking) gets: a read back of its own."""
    fake_numerai.add_model("alpha", stake=10)
    model_id = fake_numerai.state.models["alpha"].id
    gateway.lose_answer("releaseStake", "504")
    client = client_at(gateway.url)
    query = ("mutation ($drain: Boolean!, $modelId: String) { releaseStake(drain: $drain, "
             "modelId: $modelId) { id } }")

    def released() -> ReadBack:
        stake = client.stake("alpha")
        return ReadBack(stake == 0, f"stake {stake}", {"id": "read back"})

    assert client.mutate(query, {"drain": True, "modelId": model_id},
                         read_back=released) == {"id": "read back"}
    assert fake_numerai.operations().count("releaseStake") == 1
    with pytest.raises(OutcomeUnknown, match=r"may have been applied \(nothing to read it back "
                                             r"from\): check numer.ai before sending it again"):
        client.mutate(query, {"drain": True, "modelId": model_id})
    assert fake_numerai.operations().count("releaseStake") == 2


# --- Numerai's refusals -----------------------------------------------------------------

@pytest.mark.parametrize("status", [200, 401])
def test_wrong_keys_say_which_variables_and_that_a_username_is_not_a_public_id(
        fake_numerai, status):
    fake_numerai.add_model("alpha")
    fake_numerai.reject_keys(status)
    with pytest.raises(NumerlabError) as caught:
        client_at(fake_numerai.url).models()
    line = str(caught.value)
    assert f"({SESSION_INVALID})" in line or status != 200
    assert "check the environment variables NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY" in line
    assert "or tournament.keys_file" in line and "not your username" in line
    assert fake_numerai.operations() == ["account"]  # never retried


@pytest.mark.parametrize(("granted", "call", "scope"), [
    (("read_user_info", "read_submission_info", "stake"), "submit", "upload_submission"),
    (("read_user_info", "read_submission_info", "upload_submission"), "stake", "stake"),
])
def test_a_key_without_the_scope_says_which_scope(fake_numerai, tmp_path, granted, call,
                                                   scope):
    fake_numerai.add_model("alpha", stake=10)
    fake_numerai.open_round(1201)
    fake_numerai.grant_scopes(*granted)
    client = client_at(fake_numerai.url)
    with pytest.raises(NumerlabError) as caught:
        if call == "submit":
            client.upload_predictions(submission_csv(tmp_path), "alpha")
        else:
            client.change_stake("alpha", 1)
    line = str(caught.value)
    assert f"lacks the '{scope}' scope; add it (or create a key with it) at numer.ai/account" \
        in line
    assert "the API key in the environment variables NUMERAI_PUBLIC_ID and " \
           "NUMERAI_SECRET_KEY" in line
    assert fake_numerai.state.submissions == [] and fake_numerai.state.stake_changes == []


def test_a_submission_after_the_deadline_says_to_wait_for_the_next_round(fake_numerai,
                                                                         tmp_path):
    """The round closes between numerlab's look at it and the create."""
    fake_numerai.add_model("alpha")
    fake_numerai.close_round(1201)
    client = client_at(fake_numerai.url)
    then = datetime.now(UTC) - timedelta(minutes=3)
    client.round_status = lambda now=None: RoundStatus(  # as it was a moment ago
        now=then, number=1201, is_open=True, open_time=then - timedelta(hours=1),
        close_time=then + timedelta(minutes=1), next_open_time=then + timedelta(days=1))
    with pytest.raises(NumeraiApiError) as caught:
        client.upload_predictions(submission_csv(tmp_path), "alpha")
    assert str(caught.value) == (
        f"Numerai API create_submission refused: the round is closed ({DEADLINE_PASSED}); "
        f"run it again once the next round opens (task=status shows when)")
    assert fake_numerai.state.submissions == []


def test_an_unknown_model_is_named_with_the_accounts_models(fake_numerai):
    fake_numerai.add_model("alpha")
    with pytest.raises(NumerlabError, match=r"^this Numerai account has no model 'ghost' "
                                            r"\(its models: alpha\)$"):
        client_at(fake_numerai.url).model_id("ghost")


@pytest.mark.parametrize("words", ["token bucket empty", "permission to retry later",
                                   "login service degraded"])
def test_other_errors_keep_numerais_words(fake_numerai, words):
    """No loose word matching: only Numerai's own sentence means wrong keys."""
    fake_numerai.answer_next(json.dumps({"errors": [{"message": words}], "data": None}),
                             operation="account")
    with pytest.raises(NumeraiApiError) as caught:
        client_at(fake_numerai.url).models()
    assert str(caught.value).endswith(f"account: {words}")


# --- is live.parquet the current round's ------------------------------------------------

def live_table(prefix: str) -> bytes:
    return parquet_bytes({"id": [f"{prefix}{i}" for i in range(20)], "era": ["X"] * 20,
                          "feature_a": [i % 5 for i in range(20)]})


@pytest.mark.parametrize(("local", "record", "current", "why"), [
    ("round2", None, True, "its MD5 is the ETag of Numerai's v5.3/live.parquet"),
    ("round1", None, False, "is not the ETag"),
    ("round1", "round1", False, "it was downloaded from an earlier v5.3/live.parquet"),
    ("round2", "round2", True, "which Numerai still serves"),
])
def test_a_live_file_is_compared_with_what_numerai_serves(fake_numerai, tmp_path, local,
                                                          record, current, why):
    files = {"round1": live_table("a"), "round2": live_table("b")}
    fake_numerai.add_dataset("v5.3/live.parquet", files["round2"])
    path = tmp_path / "live.parquet"
    path.write_bytes(files[local])
    entry = None if record is None else {
        "source": "v5.3/live.parquet", "size": len(files[record]),
        "etag": '"' + hashlib.md5(files[record]).hexdigest() + '"', "last_modified": None}
    verdict = check_live_file(client_at(fake_numerai.url), path, "v5.3/live.parquet", entry)
    assert (verdict.current, why in verdict.why) == (current, True), verdict.why
    [look] = fake_numerai.requests_to("/files/")
    assert look.headers.get("Range") == "bytes=0-0"  # one byte asked, nothing downloaded
    assert path.read_bytes() == files[local] and list(tmp_path.iterdir()) == [path]


def test_a_multipart_etag_compares_sizes(fake_numerai, tmp_path, monkeypatch):
    from numerlab.tournament import live_data
    from numerlab.tournament.downloads import RemoteFile

    path = tmp_path / "live.parquet"
    path.write_bytes(b"x" * 100)
    client = client_at(fake_numerai.url)
    for size, current in ((100, True), (101, False)):
        monkeypatch.setattr(live_data, "remote_file", lambda c, n, size=size: RemoteFile(
            size=size, etag='"0123456789abcdef0123456789abcdef-3"', last_modified=None))
        assert check_live_file(client, path, "v5.3/live.parquet", None).current is current
