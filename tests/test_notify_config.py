"""The `notify` group: composed by Hydra (none by default, apprise), checked by
numerlab.settings with one-line errors naming the key (and a URL's scheme only, never the URL:
it may hold a token), an apprise config file outside the repository, and `task=notify`."""

from __future__ import annotations

import json

import pytest
from conftest import compose, error_line, run_in_process
from fakes.webhook import Webhook, closed_port

from numerlab import notify
from numerlab.errors import NumerlabError
from numerlab.notify import EVENTS, Notifier

TOKEN = "SlackTokenSENTINEL77"
SECRET_KEY = "SECRETKEYSENTINEL9Z"


def config(**overrides):
    return {"urls": [], "urls_env": None, "config_file": None, "desktop": False,
            "events": list(EVENTS), "timeout_s": 5, **overrides}


def test_the_default_is_none_and_apprise_declares_every_setting():
    default = compose([]).notify
    assert not Notifier.from_config(default, environ={"NUMERLAB_NOTIFY_URLS": "json://x/y",
                                                      "DISPLAY": ":0"}).enabled
    chosen = compose(["notify=apprise"]).notify
    assert set(chosen) == set(notify.KEYS)
    assert list(chosen.events) == list(EVENTS)
    assert chosen.urls_env == "NUMERLAB_NOTIFY_URLS" and chosen.desktop == "auto"
    notify.check_settings(chosen)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"events": ["submitted", "submited"]}, "notify.events='submited' is unknown"),
    ({"events": "failed"}, "notify.events must be a list of event names"),
    ({"desktop": "maybe"}, "notify.desktop='maybe' is unknown (allowed: auto, true, false)"),
    ({"desktop": "true"}, "notify.desktop='true' is unknown"),
    ({"timeout_s": 0}, "notify.timeout_s=0 must be a number > 0"),
    ({"urls": "json://127.0.0.1/x"}, "notify.urls must be a list of apprise URLs"),
    ({"urls_env": 3}, "notify.urls_env=3 must be null or the name of an environment variable"),
])
def test_a_bad_value_is_one_line_naming_the_key(overrides, expected):
    with pytest.raises(NumerlabError) as raised:
        notify.check_settings(config(**overrides))
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_an_unknown_key_names_the_closest_one():
    cfg = config()
    cfg["url"] = cfg.pop("urls")
    with pytest.raises(NumerlabError, match=r"notify\.url is not a setting of notify \(did you "
                                            r"mean notify\.urls\?"):
        notify.check_settings(cfg)


def test_an_unparseable_url_names_the_key_and_the_scheme_only():
    with pytest.raises(NumerlabError) as raised:
        Notifier.from_config(config(urls_env="URLS"),
                             environ={"URLS": f"nosuchservice://host/{TOKEN}"})
    message = str(raised.value)
    assert message.startswith("notify.urls_env (URLS): apprise cannot parse a nosuchservice://")
    assert TOKEN not in message


@pytest.mark.parametrize("url", [f"slack://T0000AAAA/B0000BBBB/{TOKEN}",
                                 f"json://bot:{TOKEN}@127.0.0.1:8080/hook",
                                 f"mailto://bob:{TOKEN}@example.com"])
def test_a_url_with_a_secret_in_notify_urls_is_refused(url):
    """notify.urls lands in .hydra/config.yaml, params.yaml and trackers: no secret there."""
    with pytest.raises(NumerlabError) as raised:
        notify.check_settings(config(urls=[url]))
    message = str(raised.value)
    assert message.startswith(f"notify.urls has a {url.split(':')[0]}:// URL holding a secret")
    assert "notify.urls_env" in message and TOKEN not in message


def test_public_urls_pass_in_notify_urls():
    notify.check_settings(config(urls=["ntfy://ntfy.sh/numerlab-rounds",
                                       "json://127.0.0.1:8080/hook"]))


def test_desktop_true_without_the_command_is_one_line(tmp_path):
    with pytest.raises(NumerlabError, match=r"notify\.desktop=true but notify-send is not on "
                                            r"PATH"):
        Notifier.from_config(config(desktop=True), environ={"PATH": str(tmp_path)})


def test_desktop_auto_without_a_graphical_session_is_off(tmp_path):
    fake = tmp_path / "notify-send"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    environ = {"PATH": str(tmp_path)}  # no DISPLAY, WAYLAND_DISPLAY, DBUS_SESSION_BUS_ADDRESS
    assert not Notifier.from_config(config(desktop="auto"), environ=environ).enabled
    assert Notifier.from_config(config(desktop="auto"),
                                environ={**environ, "DISPLAY": ":0"}).enabled


# --- an apprise config file ------------------------------------------------------------------

def test_a_config_file_outside_the_repo_delivers_and_its_secrets_are_masked(tmp_path, caplog):
    caplog.set_level("DEBUG")
    caplog.set_level("DEBUG", logger="apprise")
    with Webhook.running() as hook:
        file = tmp_path / "apprise.yml"
        file.write_text(f"urls:\n  - {hook.url(f'/hook/{TOKEN}')}\n")
        notifier = Notifier.from_config(config(config_file=str(file)), environ={})
        (delivery,) = notifier.send("failed", "numerlab: failed", f"token {TOKEN}")
        assert delivery.ok and delivery.target == f"json://127.0.0.1:{hook.port}"
        (post,) = hook.posts
    assert post.path == f"/hook/{TOKEN}"
    assert TOKEN not in post.raw and TOKEN not in repr(delivery) and TOKEN not in caplog.text


def test_a_config_file_inside_a_git_work_tree_is_refused(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:8080/hook\n")
    with pytest.raises(NumerlabError, match=r"notify\.config_file .*apprise\.yml is inside "
                                            r"the git repository"):
        Notifier.from_config(config(config_file=str(repo / "apprise.yml")), environ={})


def test_a_missing_or_empty_config_file_is_one_line(tmp_path):
    with pytest.raises(NumerlabError, match=r"notify\.config_file .*nope\.yml does not exist"):
        Notifier.from_config(config(config_file=str(tmp_path / "nope.yml")), environ={})
    (tmp_path / "empty.yml").write_text("# nothing\n")
    with pytest.raises(NumerlabError, match="apprise found no notification URL"):
        Notifier.from_config(config(config_file=str(tmp_path / "empty.yml")), environ={})


# --- task=notify -----------------------------------------------------------------------------

def test_task_notify_sends_a_test_through_every_target(tmp_path):
    with Webhook.running() as hook:
        proc = run_in_process(["task=notify", "notify=apprise", f"notify.urls=[{hook.url()}]",
                               "notify.urls_env=MY_URLS", "notify.desktop=false",
                               "notify.events=[]", f"hydra.run.dir={tmp_path}"],
                              env={"MY_URLS": hook.url(f"/secret/{TOKEN}"),
                                   "NUMERAI_SECRET_KEY": SECRET_KEY})
        assert proc.returncode == 0, proc.stderr[-2000:]
        posts = sorted(hook.posts, key=lambda post: post.path)
    assert [post.path for post in posts] == ["/hook", f"/secret/{TOKEN}"]
    assert {post.body["title"] for post in posts} == {notify.TEST_TITLE}
    assert f"sent   json://127.0.0.1:{hook.port}" in proc.stdout
    record = json.loads((tmp_path / "notify.json").read_text())
    assert [d["ok"] for d in record["deliveries"]] == [True, True]
    for path in tmp_path.rglob("*"):  # the job dir: notify.json, .hydra/, the log
        if path.is_file():
            text = path.read_text(errors="replace")
            assert TOKEN not in text and SECRET_KEY not in text, path


def test_task_notify_fails_naming_the_target_that_did_not_take_it(tmp_path):
    dead = f"json://127.0.0.1:{closed_port()}/hook"
    proc = run_in_process(["task=notify", "notify=apprise", f"notify.urls=[{dead}]",
                           "notify.desktop=false", f"hydra.run.dir={tmp_path}"],
                          env={"NUMERLAB_NOTIFY_URLS": None})
    line = error_line(proc)
    assert line.startswith("error: task=notify: 1 of 1 targets failed: json://127.0.0.1:")


def test_task_notify_without_targets_says_how_to_set_them(tmp_path):
    proc = run_in_process(["task=notify", f"hydra.run.dir={tmp_path}"])
    assert "no notification target: choose notify=apprise" in error_line(proc)


def test_a_bad_notify_setting_stops_any_task_before_work(tmp_path):
    proc = run_in_process(["task=status", "notify=apprise", "notify.events=[won]",
                           f"hydra.run.dir={tmp_path}"])
    assert "notify.events='won' is unknown" in error_line(proc)
