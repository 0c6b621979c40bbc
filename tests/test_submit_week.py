"""A week of task=submit against the fake Numerai with a controlled clock (time-machine): rounds
opening Tuesday to Saturday, a 503 storm, one model failing, a second invocation at the same
time, a crash mid-upload and the rerun after it. Each day drives `submit_round` in this
process with two models predicted by the shared train run (`trained_run`: slow tier)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from conftest import compose
from fakes.numerai_server import KEYS_ENV

from numerlab import history, live_round
from numerlab.errors import NumerlabError
from numerlab.tasks import submit as submit_task
from numerlab.tasks.submit import submit_round
from numerlab.tournament import TournamentClient, scheduled_window

pytestmark = pytest.mark.slow  # the shared train run is a `python run.py` process

MONDAY = date(2026, 12, 7)
DAYS = [MONDAY + timedelta(days=d) for d in range(1, 6)]  # Tuesday .. Saturday
FIRST_ROUND = 1200
MODELS = ("alpha", "beta")


class Killed(BaseException):
    """The process dying mid-upload (nothing in task=submit may catch it)."""


@pytest.fixture
def week(tmp_path, trained_run, fake_numerai, monkeypatch):
    """(the fake, a config maker, the history) for two models of one account."""
    for name, value in KEYS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRIGGER_ID", raising=False)
    for name in MODELS:
        fake_numerai.add_model(name)
    run_dir = trained_run[0]
    store_path = tmp_path / "history" / "numerlab.sqlite"

    def config(models: dict[str, Path] | None = None, *extra: str):
        models = models or {name: run_dir for name in MODELS}
        entries = ", ".join(f"{name}: '{path}'" for name, path in models.items())
        return compose(["task=submit", f"submit.models={{{entries}}}",
                        "tournament.submit=true", "tournament.allow_stale_live=true",
                        f"tournament.api_url={fake_numerai.url}", "tournament.backoff_s=0",
                        f"history.path={store_path}", *extra])

    return fake_numerai, config, history.History(store_path)


def at_noon_thirty(day: date) -> time_machine.travel:
    return time_machine.travel(datetime(day.year, day.month, day.day, 12, 30, tzinfo=UTC),
                               tick=True)


def open_day(fake, day: date) -> int:
    number = FIRST_ROUND + DAYS.index(day)
    opens, closes = scheduled_window(day)
    fake.open_round(number, open_time=opens, close_time=closes)
    return number


def sent_to_fake(fake) -> list[tuple[str, int]]:
    ids = {model.id: model.name for model in fake.state.models.values()}
    return sorted((ids[s.model_id], s.round_number) for s in fake.state.submissions)


def statuses(outcomes) -> dict[str, str]:
    return {o.model: o.status for o in outcomes}


def test_a_week_of_rounds(week, tmp_path, capsys):
    """Monday: closed, nothing recorded. Tue-Sat: each round submitted once per model; a rerun
    on the same day skips; Wednesday's 503 storm is retried without a duplicate; Thursday one
    model's run is gone: the other is submitted and the task fails with one line."""
    fake, config, store = week
    cfg = config()

    with at_noon_thirty(MONDAY):
        fake.close_round(FIRST_ROUND - 1, closed_ago=timedelta(days=2))
        fake.add_upcoming_round(FIRST_ROUND, scheduled_window(DAYS[0])[0])
        assert submit_round(cfg, tmp_path / "monday") == []
        assert "next one opens Tue 2026-12-08 12:00 UTC" in capsys.readouterr().out
        assert store.submissions() == [] and fake.state.submissions == []

    for day in DAYS:
        with at_noon_thirty(day):
            number = open_day(fake, day)
            if day == DAYS[1]:  # Wednesday: a storm of 503s on the upload's three steps
                fake.fail_next(3, 503, operation="submission_upload_auth")
                fake.fail_next(2, 503, path="/uploads/")
                fake.fail_next(3, 503, operation="create_submission")
            if day == DAYS[2]:  # Thursday: beta's run dir is gone
                broken = config({"alpha": Path(cfg.submit.models.alpha),
                                 "beta": tmp_path / "deleted-run"})
                with pytest.raises(NumerlabError, match=r"^1 of 2 models submitted; failed: "
                                   r"beta \(submit\.models\.beta=.*deleted-run does not exist"):
                    submit_task.run(broken, tmp_path / f"job-{number}")
                assert store.latest_submission(number, "beta").status == history.FAILED
                outcomes = submit_round(cfg, tmp_path / f"job-{number}-again")
                assert statuses(outcomes) == {"alpha": history.SKIPPED, "beta": history.SENT}
            else:
                outcomes = submit_round(cfg, tmp_path / f"job-{number}")
                assert statuses(outcomes) == {m: history.SENT for m in MODELS}
            again = submit_round(cfg, tmp_path / f"job-{number}-rerun")
            assert statuses(again) == {m: history.SKIPPED for m in MODELS}
            for o in again:
                latest = store.latest_submission(number, o.model, [history.SENT])
                assert o.upload_id == latest.upload_id

    rounds = [FIRST_ROUND + i for i in range(5)]
    assert sent_to_fake(fake) == sorted((m, r) for m in MODELS for r in rounds)
    for name in MODELS:
        sent = store.submissions(model=name, status=history.SENT)
        assert sorted(s.round for s in sent) == rounds
        assert {s.upload_id for s in sent} == {s.id for s in fake.state.submissions
                                               if fake.state.models[name].id == s.model_id}
    assert store.submissions(status=history.SENDING) == []
    sent_files = {s.content for s in fake.state.submissions}
    assert len(sent_files) == 1  # the same run, the same live data: the same file each day


def test_a_second_invocation_at_the_same_time_refuses_or_waits(week, tmp_path, monkeypatch):
    """While one task=submit predicts, another refuses at once (lock_wait_s=0) or waits for
    it (lock_wait_s=30) and then skips what the first sent: one upload per model."""
    fake, config, store = week
    inside, go_on = threading.Event(), threading.Event()
    predict = live_round.predict

    def slow_predict(run, data_dir):
        inside.set()
        assert go_on.wait(60)
        return predict(run, data_dir)

    day = DAYS[3]
    with at_noon_thirty(day):
        number = open_day(fake, day)
        monkeypatch.setattr(live_round, "predict", slow_predict)
        results: dict[str, object] = {}

        def invoke(key: str, cfg, job: str) -> None:
            try:
                results[key] = submit_round(cfg, tmp_path / job)
            except Exception as exc:  # noqa: BLE001 - the test reads it
                results[key] = exc

        first = threading.Thread(target=invoke, args=("first", config(), "first"))
        first.start()
        assert inside.wait(60)
        with pytest.raises(NumerlabError, match=r"another task=submit is running \(process "
                           r"\d+ holds the lock .*numerlab\.sqlite\.submit\.lock\); nothing"):
            submit_round(config(), tmp_path / "second")
        waiting = threading.Thread(target=invoke, args=(
            "waiting", config(None, "submit.lock_wait_s=30"), "waiting"))
        waiting.start()
        go_on.set()
        first.join(60)
        waiting.join(60)

    assert statuses(results["first"]) == {m: history.SENT for m in MODELS}
    assert statuses(results["waiting"]) == {m: history.SKIPPED for m in MODELS}
    assert sent_to_fake(fake) == [(m, number) for m in MODELS]
    assert len(fake.requests_to("/uploads/")) == len(MODELS)
    assert not (tmp_path / "second").exists()


@pytest.mark.parametrize("crash_after", ["create_submission", "put"])
def test_a_crash_mid_upload_then_a_rerun_sends_nothing_twice(week, tmp_path, monkeypatch,
                                                             crash_after):
    """The process dies after Numerai created the submission (or after the PUT, before
    create_submission): the history row is left `sending`. The rerun reads the model's
    submissions back: it landed -> settled `sent`, nothing sent again; it did not -> settled
    `failed` and sent once. Nothing is lost from the history."""
    fake, config, store = week
    day = DAYS[4]  # Saturday: the weekend round
    upload = TournamentClient.upload_predictions
    mutate = TournamentClient.mutate

    def crash_after_create(self, path, model_name):
        upload(self, path, model_name)
        raise Killed

    def crash_before_create(self, query, *args, **kwargs):
        if "create_submission" in query:
            raise Killed
        return mutate(self, query, *args, **kwargs)

    with at_noon_thirty(day):
        number = open_day(fake, day)
        with monkeypatch.context() as patch:
            if crash_after == "create_submission":
                patch.setattr(TournamentClient, "upload_predictions", crash_after_create)
            else:
                patch.setattr(TournamentClient, "mutate", crash_before_create)
            with pytest.raises(Killed):
                submit_round(config(), tmp_path / "crashed")
        left = store.submissions(model="alpha", round_number=number)
        assert [s.status for s in left] == [history.SENDING]
        assert store.submissions(model="beta") == []  # the crash stopped the invocation
        landed = crash_after == "create_submission"
        assert sent_to_fake(fake) == ([("alpha", number)] if landed else [])

        outcomes = submit_round(config(), tmp_path / "rerun")

    assert sent_to_fake(fake) == [(m, number) for m in MODELS]  # each exactly once
    rows = store.submissions(model="alpha", round_number=number)
    alpha_id = next(s.id for s in fake.state.submissions
                    if s.model_id == fake.state.models["alpha"].id)
    if landed:
        assert statuses(outcomes) == {"alpha": history.SKIPPED, "beta": history.SENT}
        assert [(s.id, s.status) for s in rows] == [(left[0].id, history.SENT),
                                                    (rows[1].id, history.SKIPPED)]
        assert rows[0].upload_id == alpha_id and rows[1].upload_id == alpha_id
    else:
        assert statuses(outcomes) == {m: history.SENT for m in MODELS}
        assert [(s.id, s.status) for s in rows] == [(left[0].id, history.FAILED),
                                                    (rows[1].id, history.SENT)]
        assert "did not land" in rows[0].error and rows[1].upload_id == alpha_id
    assert len({s.sha256 for s in rows}) == 1


def test_an_upload_numerai_refuses_fails_that_model_only(week, tmp_path):
    """Numerai refuses alpha's create_submission: alpha `failed` (the error line kept), beta
    sent; the next invocation sends alpha (a failed row holds nothing back)."""
    fake, config, store = week
    refusal = '{"errors": [{"message": "Submission rejected: fake refusal"}], "data": null}'
    with at_noon_thirty(DAYS[0]):
        number = open_day(fake, DAYS[0])
        fake.answer_next(refusal, operation="create_submission")
        with pytest.raises(NumerlabError, match=r"^1 of 2 models submitted; failed: alpha "
                                                r"\(.*Submission rejected: fake refusal"):
            submit_task.run(config(), tmp_path / "refused")
        [row] = store.submissions(model="alpha")
        assert (row.status, sent_to_fake(fake)) == (history.FAILED, [("beta", number)])
        assert "Submission rejected: fake refusal" in row.error
        outcomes = submit_round(config(), tmp_path / "again")
    assert statuses(outcomes) == {"alpha": history.SENT, "beta": history.SKIPPED}
    assert sent_to_fake(fake) == [(m, number) for m in MODELS]


def test_notifications_for_what_was_sent_and_what_failed(week, tmp_path):
    """`submitted` for each submission sent and `failed` for each failure reach the webhook,
    each delivery recorded in the history; a dry run and a skip notify nobody."""
    from fakes.webhook import Webhook

    fake, config, store = week
    run_dir = Path(config().submit.models.alpha)
    with Webhook.running() as hook, at_noon_thirty(DAYS[1]):
        number = open_day(fake, DAYS[1])
        notify = ["notify=apprise", f"notify.urls=['{hook.url('/hook')}']",
                  "notify.urls_env=null", "notify.desktop=false"]
        models = {"alpha": run_dir, "beta": tmp_path / "deleted-run"}
        dry = submit_round(config(models, *notify), tmp_path / "dry", submit=False)
        assert statuses(dry) == {"alpha": history.DRY_RUN, "beta": history.FAILED}
        assert [p.body["title"] for p in hook.posts] == [
            f"numerlab: submit failed (beta, round {number})"]
        outcomes = submit_round(config(models, *notify), tmp_path / "sent")
        again = submit_round(config({"alpha": run_dir}, *notify), tmp_path / "again")
        posts = [(p.body["type"], p.body["title"], p.body["message"]) for p in hook.posts]
    assert statuses(again) == {"alpha": history.SKIPPED}
    upload = next(o.upload_id for o in outcomes if o.model == "alpha")
    assert sorted(posts[1:]) == sorted([
        ("success", f"numerlab: alpha submitted for round {number}",
         f"Predictions for alpha uploaded to Numerai for round {number}; upload id {upload}."),
        ("failure", f"numerlab: submit failed (beta, round {number})",
         f"failed: submit.models.beta={tmp_path / 'deleted-run'} does not exist")])
    kinds = {"success": "submitted", "failure": "failed"}
    recorded = [(n.event, n.ok, n.title) for n in store.notifications()]
    assert sorted(recorded) == sorted((kinds[kind], True, title) for kind, title, _ in posts)
    for post in hook.posts:
        assert all(key not in post.raw for key in KEYS_ENV.values())


def test_resolved_scores_arrive_later_in_the_history_and_the_live_view(week, tmp_path):
    """The week's five rounds submitted; two weeks on Numerai reports them scoring (pending),
    a month on resolved: they land in the history (a resolved score is final) and in the
    live-vs-validation view beside the metrics.json of the run that submitted them."""
    import json

    import numpy as np

    from numerlab import live_results

    fake, config, store = week
    cfg = config()
    run_dir = str(cfg.submit.models.alpha)
    rounds = []
    for day in DAYS:
        with at_noon_thirty(day):
            rounds.append(open_day(fake, day))
            assert statuses(submit_round(cfg, tmp_path / f"job-{day}")) == {
                m: history.SENT for m in MODELS}
    corr = [0.012, -0.004, 0.021, 0.008, 0.015]
    mmc = [0.002, 0.001, -0.003, 0.004, 0.0]

    with at_noon_thirty(MONDAY + timedelta(days=14)):
        for number, value in zip(rounds, corr, strict=True):
            fake.scores.add("alpha", number, "canon_corr", value / 2, day=5)
        client = TournamentClient.from_config(cfg.tournament)
        assert len(live_results.refresh_scores(client, store, MODELS)) == 5
        [view] = live_results.live_vs_validation(store, ["alpha"])
        assert (view.n_rounds, view.pending, view.run_dir) == (0, 5, run_dir)

    with at_noon_thirty(MONDAY + timedelta(days=40)):
        for number, c, m in zip(rounds, corr, mmc, strict=True):
            fake.scores.add("alpha", number, "canon_corr", c, day=20, resolved=True)
            fake.scores.add("alpha", number, "canon_mmc", m, day=20, resolved=True)
        client = TournamentClient.from_config(cfg.tournament)
        assert len(live_results.refresh_scores(client, store, MODELS)) == 10
        assert live_results.refresh_scores(client, store, MODELS) == []

    stored = {(s.round, s.name): (s.value, s.resolved) for s in store.scores(model="alpha")}
    assert stored == {**{(r, "canon_corr"): (c, True) for r, c in zip(rounds, corr, strict=True)},
                      **{(r, "canon_mmc"): (m, True) for r, m in zip(rounds, mmc, strict=True)}}
    [view] = live_results.live_vs_validation(store, ["alpha"])
    assert (view.n_rounds, view.pending, view.run_dir) == (5, 0, run_dir)
    assert view.live["corr_mean"] == pytest.approx(np.mean(corr))
    assert view.live["corr_sharpe"] == pytest.approx(np.mean(corr) / np.std(corr))
    assert view.live["mmc_mean"] == pytest.approx(np.mean(mmc))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert view.validation["corr_mean"] == pytest.approx(metrics["corr_mean"])
    assert view.validation["corr_sharpe"] == pytest.approx(metrics["corr_sharpe"])
    frame = live_results.per_round(store, "alpha")
    assert frame["round"].to_list() == rounds
    assert frame["cum_corr"][-1] == pytest.approx(sum(corr))
