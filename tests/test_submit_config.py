"""task=submit's config: `submit.models` entries (a run dir, or the best run of a dir of runs as
the sweep summary ranks them), one error line naming the bad entry, and the checks made
before anything is sent (the account's model names, the lock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose
from fakes.numerai_server import KEYS_ENV
from omegaconf import OmegaConf

from numerlab import history, locks
from numerlab.errors import NumerlabError
from numerlab.tasks.submit import LOCK_SUFFIX, configured_models, submit_round


def fake_run(path: Path, **metrics: float) -> Path:
    """A finished run dir as the summary reads it: metrics.json and a model/ dir."""
    (path / "model").mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def submit_cfg(models: str, *extra: str):
    return compose(["task=submit", f"submit.models={models}", *extra])


def test_a_run_dir_on_the_command_line_is_the_model_s_run():
    cfg = submit_cfg("{my_model: outputs/2026-12-01/10-00-00-lgbm}")
    assert configured_models(cfg) == {"my_model": "outputs/2026-12-01/10-00-00-lgbm"}
    assert configured_models(compose(["task=submit"])) == {}


@pytest.mark.parametrize("direction, best", [("maximize", "2-lgbm"), ("minimize", "0-lgbm")])
def test_best_of_picks_the_sweep_s_best_run_by_the_metric(tmp_path, direction, best):
    sweep = tmp_path / "sweep"
    fake_run(sweep / "0-lgbm", corr_sharpe=0.5, corr_mean=0.03)
    fake_run(sweep / "1-lgbm", corr_sharpe=0.9, corr_mean=0.01)
    fake_run(sweep / "2-lgbm", corr_sharpe=1.4, corr_mean=0.02)
    (sweep / "3-lgbm").mkdir()
    (sweep / "3-lgbm" / "error.txt").write_text("error: it failed\n")
    cfg = submit_cfg(f"{{mine: {{best_of: '{sweep}', metric: corr_sharpe, "
                     f"direction: {direction}}}}}")
    assert configured_models(cfg) == {"mine": str(sweep / best)}
    by_mean = submit_cfg(f"{{mine: {{best_of: '{sweep}', metric: corr_mean}}}}")
    assert configured_models(by_mean) == {"mine": str(sweep / "0-lgbm")}


def test_best_of_skips_a_best_run_without_a_model(tmp_path):
    sweep = tmp_path / "sweep"
    fake_run(sweep / "0-lgbm", corr_sharpe=0.5)
    (sweep / "1-cv").mkdir(parents=True)  # a CV run: scores, no model
    (sweep / "1-cv" / "metrics.json").write_text(json.dumps({"corr_sharpe": 2.0}))
    cfg = submit_cfg(f"{{mine: {{best_of: '{sweep}'}}}}")
    assert configured_models(cfg) == {"mine": str(sweep / "0-lgbm")}


@pytest.mark.parametrize("entry, message", [
    ("{mine: 3}", r"^submit\.models\.mine=3 must be a run dir or \{best_of"),
    ("{mine: {best_of: SWEEP, metrc: corr_mean}}", r"^submit\.models\.mine\.metrc is not a "
                                                   r"setting .*did you mean "
                                                   r"submit\.models\.mine\.metric"),
    ("{mine: {best_of: SWEEP, direction: up}}", r"^submit\.models\.mine\.direction='up'"),
    ("{mine: {metric: corr_mean}}", r"^submit\.models\.mine\.best_of=None must be a dir"),
    ("{mine: {best_of: SWEEP, metric: payout}}", r"^submit\.models\.mine: metric 'payout' "
                                                 r"is in no run's metrics\.json"),
    ("{mine: {best_of: EMPTY}}", r"^submit\.models\.mine: .*empty: no runs"),
])
def test_a_bad_entry_is_one_line_naming_it(tmp_path, entry, message):
    sweep = tmp_path / "sweep"
    fake_run(sweep / "0-lgbm", corr_sharpe=0.5, corr_mean=0.01)
    (tmp_path / "empty").mkdir()
    cfg = submit_cfg(entry.replace("SWEEP", f"'{sweep}'")
                     .replace("EMPTY", f"'{tmp_path / 'empty'}'"))
    with pytest.raises(NumerlabError, match=message) as error:
        configured_models(cfg)
    assert "\n" not in str(error.value)


def test_a_name_numerai_cannot_have_is_refused():
    cfg = OmegaConf.create({"submit": {"models": {"my model": "outputs/x"}}})
    with pytest.raises(NumerlabError, match=r"^submit\.models\.my model: 'my model' is not "
                                            r"a Numerai model name"):
        configured_models(cfg)


def test_a_typo_in_the_submit_group_is_refused():
    cfg = compose(["task=submit", "+submit.lock_wait=5"])
    with pytest.raises(NumerlabError, match=r"^submit\.lock_wait is not a setting of submit "
                                            r"\(did you mean submit\.lock_wait_s"):
        configured_models(cfg)


@pytest.fixture
def account(fake_numerai, monkeypatch, tmp_path):
    for name, value in KEYS_ENV.items():
        monkeypatch.setenv(name, value)
    fake_numerai.add_model("alpha")
    fake_numerai.open_round(1001)
    store = tmp_path / "history.sqlite"
    return fake_numerai, [f"tournament.api_url={fake_numerai.url}", "tournament.submit=true",
                          f"history.path={store}"], history.History(store)


def test_a_model_the_account_lacks_stops_everything_before_any_upload(account, tmp_path):
    fake, overrides, store = account
    cfg = submit_cfg(f"{{alpha: '{tmp_path}/run', ghost: '{tmp_path}/run'}}", *overrides)
    with pytest.raises(NumerlabError, match=r"^submit\.models\.ghost: this Numerai account "
                                            r"has no model 'ghost' \(its models: alpha\)"):
        submit_round(cfg, tmp_path / "job")
    assert fake.requests_to("/uploads/") == [] and store.submissions() == []
    assert "submission_upload_auth" not in fake.operations()


def test_the_round_closed_records_nothing_and_says_when_the_next_opens(account, tmp_path,
                                                                        capsys):
    from datetime import UTC, datetime, timedelta

    fake, overrides, store = account
    fake.close_round(1001)
    opens = (datetime.now(UTC) + timedelta(hours=20)).replace(second=0, microsecond=0)
    fake.add_upcoming_round(1002, opens)
    cfg = submit_cfg(f"{{alpha: '{tmp_path}/run'}}", *overrides)
    assert submit_round(cfg, tmp_path / "job") == []
    out = capsys.readouterr().out
    assert f"the next one opens {opens.strftime('%a %Y-%m-%d %H:%M')} UTC" in out
    assert opens.astimezone().strftime("%H:%M") in out.split("UTC", 1)[1]
    assert store.submissions() == [] and not (tmp_path / "job").exists()


def test_a_held_lock_refuses_at_once_or_after_waiting(account, tmp_path):
    fake, overrides, store = account
    cfg = submit_cfg(f"{{alpha: '{tmp_path}/run'}}", *overrides, "submit.lock_wait_s=0.5")
    with locks.exclusive(Path(f"{store.path}{LOCK_SUFFIX}"), 0, "a test"), \
            pytest.raises(NumerlabError, match=r"^another task=submit is running \(process "
                                               r"\d+ holds the lock .* after waiting 0\.5s; "
                                               r"nothing was done$"):
        submit_round(cfg, tmp_path / "job")
    assert fake.operations() == [] and store.submissions() == []
