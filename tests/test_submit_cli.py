"""`python run.py task=submit` as a user (or numerai-cli's container, TRIGGER_ID set) runs it,
against the fake Numerai: a dry run, then the submission with one model failing (exit status
2, one error line), then a rerun that skips what was sent."""

from __future__ import annotations

import pytest
from conftest import error_line, run_cli
from fakes.numerai_server import KEYS_ENV, PUBLIC_ID, SECRET_KEY

from numerlab import history

pytestmark = pytest.mark.slow  # python run.py processes


def test_task_submit_through_run_py(tmp_path, trained_run, fake_numerai):
    run_dir = trained_run[0]
    for name in ("alpha", "beta"):
        fake_numerai.add_model(name)
    fake_numerai.open_round(1001)
    store = tmp_path / "history.sqlite"
    models = f"submit.models={{alpha: '{run_dir}', beta: '{tmp_path / 'no-such-run'}'}}"
    common = ["task=submit", models, f"tournament.api_url={fake_numerai.url}",
              "tournament.allow_stale_live=true", f"history.path={store}"]
    env = {**KEYS_ENV, "TRIGGER_ID": "trigger-42"}

    dry = run_cli([*common, "submit.models.beta=" + str(run_dir),
                   f"hydra.run.dir={tmp_path / 'dry'}"], env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert fake_numerai.requests_to("/uploads/") == []
    assert [s.status for s in history.History(store).submissions()] == [history.DRY_RUN] * 2
    assert (tmp_path / "dry" / "alpha" / "submission.csv").is_file()

    sent = run_cli([*common, "tournament.submit=true", f"hydra.run.dir={tmp_path / 'sent'}"],
                   env=env)
    line = error_line(sent)
    assert line.startswith("error: 1 of 2 models submitted; failed: beta (submit.models.beta=")
    assert "no-such-run does not exist" in line
    assert "TRIGGER_ID=trigger-42" in sent.stdout
    [submission] = fake_numerai.state.submissions
    assert submission.content == (tmp_path / "sent" / "alpha" / "submission.csv").read_bytes()
    creates = [r for r in fake_numerai.state.requests if r.operation == "create_submission"]
    assert [r.variables["triggerId"] for r in creates] == ["trigger-42"]
    rows = history.History(store).submissions(round_number=1001)
    assert [(r.model, r.status, r.trigger_id) for r in rows[2:]] == [
        ("alpha", history.SENT, "trigger-42"), ("beta", history.FAILED, "trigger-42")]
    assert rows[2].upload_id == submission.id

    again = run_cli([*common, "tournament.submit=true", "submit.models.beta=" + str(run_dir),
                     f"hydra.run.dir={tmp_path / 'again'}"], env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(fake_numerai.state.submissions) == 2  # beta now; alpha skipped
    statuses = [(r.model, r.status) for r in history.History(store).submissions()[4:]]
    assert statuses == [("alpha", history.SKIPPED), ("beta", history.SENT)]
    for where in ("dry", "sent", "again"):  # no key in any file the runs wrote
        for path in (tmp_path / where).rglob("*"):
            if path.is_file():
                text = path.read_bytes()
                assert PUBLIC_ID.encode() not in text and SECRET_KEY.encode() not in text
