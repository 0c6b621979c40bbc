"""numerlab.notify through real apprise to a JSON webhook on 127.0.0.1: every event arrives
with its title and body, a failing target is ok=False without raising, `notify.events`
filters, and no secret (Numerai keys, URL tokens and passwords) reaches the posted message,
a log record (apprise's own at DEBUG included) or a Delivery."""

from __future__ import annotations

import logging

import pytest
from fakes.webhook import Webhook, closed_port

from numerlab import notify
from numerlab.errors import NumerlabError
from numerlab.notify import EVENTS, Notifier

PUBLIC_ID = "PUBLICIDSENTINEL7Q"
SECRET_KEY = "SECRETKEYSENTINEL9Z"
URL_TOKEN = "hooktokenSENTINEL42"
URL_PASSWORD = "pw-SENTINEL-0815"
SECRETS = (PUBLIC_ID, SECRET_KEY, URL_TOKEN, URL_PASSWORD)


def config(**overrides):
    """A `notify` group as conf/notify/apprise.yaml declares it, with no desktop."""
    return {"urls": [], "urls_env": None, "config_file": None, "desktop": False,
            "events": list(EVENTS), "timeout_s": 5, **overrides}


@pytest.fixture
def hook():
    with Webhook.running() as running:
        yield running


MESSAGES = [
    notify.message_submitted("my_model", 812, "upload-abc", dry_run=False),
    notify.message_failed("submit", "Numerai refused it: the round is closed\nmore", "my_model",
                          812),
    notify.message_stake_changed("my_model", 10.0, 12.5, round_number=812),
    notify.message_round_resolved("my_model", 801, {"corr": 0.0123, "mmc": -0.004}, 0.42),
    notify.message_live_out_of_range("my_model", 812, "corr", 0.091, -0.02, 0.05),
]


def test_every_event_reaches_the_webhook_with_its_title_and_body(hook):
    notifier = Notifier.from_config(config(urls=[hook.url("/hook")]), environ={})
    assert notifier.enabled
    sent = [delivery for message in MESSAGES for delivery in notifier.send(*message)]
    assert [d.event for d in sent] == list(EVENTS)
    assert all(d.ok and d.error is None for d in sent), sent
    assert {d.target for d in sent} == {f"json://127.0.0.1:{hook.port}"}
    assert [post.path for post in hook.posts] == ["/hook"] * len(EVENTS)
    # apprise may post them in any order: match each by its title
    posted = {post.body["title"]: post.body for post in hook.posts}
    for message in MESSAGES:
        assert posted[message.title]["message"] == message.body
    assert posted[MESSAGES[1].title]["type"] == "failure"
    assert posted[MESSAGES[0].title]["type"] == "success"
    assert posted[MESSAGES[4].title]["type"] == "warning"


def test_messages_are_short_plain_and_name_what_happened():
    submitted = MESSAGES[0]
    assert submitted.event == "submitted"
    assert "my_model" in submitted.title and "812" in submitted.title
    assert "upload-abc" in submitted.body
    dry = notify.message_submitted("my_model", 812, None, dry_run=True)
    assert "dry run" in dry.title and "nothing uploaded" in dry.body
    failed = MESSAGES[1]
    assert failed.body == "Numerai refused it: the round is closed"  # the first line only
    assert "submit failed" in failed.title
    assert "10.0000 NMR" in MESSAGES[2].body and "12.5000 NMR" in MESSAGES[2].body
    assert "corr +0.0123" in MESSAGES[3].body and "mmc -0.0040" in MESSAGES[3].body
    assert "payout +0.4200 NMR" in MESSAGES[3].body
    out = MESSAGES[4]
    assert "above" in out.title and "+0.0910" in out.body and "[-0.0200, +0.0500]" in out.body
    below = notify.message_live_out_of_range("m", 1, "mmc", -0.5, -0.02, 0.05)
    assert "below" in below.title
    for message in [*MESSAGES, dry, below]:
        assert "\n" not in message.title and "\n" not in message.body
        assert len(message.title) <= 80


def test_an_unreachable_target_is_a_failed_delivery_and_the_others_still_get_it(hook):
    dead = f"json://127.0.0.1:{closed_port()}/hook"
    notifier = Notifier.from_config(config(urls=[dead, hook.url("/live")]), environ={})
    deliveries = notifier.send(*MESSAGES[0])
    assert [d.ok for d in deliveries] == [False, True]
    failed = deliveries[0]
    assert failed.target.startswith("json://127.0.0.1:")
    assert failed.error and "\n" not in failed.error
    assert [post.path for post in hook.posts] == ["/live"]


def test_a_target_answering_an_error_status_is_a_failed_delivery(hook):
    hook.status = 500
    notifier = Notifier.from_config(config(urls=[hook.url()]), environ={})
    (delivery,) = notifier.send(*MESSAGES[1])
    assert not delivery.ok
    assert "500" in delivery.error


def test_events_not_configured_are_skipped(hook):
    notifier = Notifier.from_config(config(urls=[hook.url()], events=["failed"]), environ={})
    assert notifier.send(*MESSAGES[0]) == []
    assert notifier.send(*MESSAGES[2]) == []
    assert hook.posts == []
    assert [d.ok for d in notifier.send(*MESSAGES[1])] == [True]
    assert len(hook.posts) == 1


def test_an_unknown_event_raises_one_line(hook):
    notifier = Notifier.from_config(config(urls=[hook.url()]), environ={})
    with pytest.raises(NumerlabError, match="unknown notification event 'submit'"):
        notifier.send("submit", "t", "b")


def test_no_target_means_disabled_and_nothing_sent():
    for notifier in (Notifier.from_config(None), Notifier.from_config(config(), environ={})):
        assert not notifier.enabled
        assert notifier.send(*MESSAGES[0]) == []


def _secret_environ(hook) -> dict[str, str]:
    """Numerai keys in the environment, and a webhook whose URL holds a token and a password
    in the variable `notify.urls_env` names."""
    return {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY,
            "MY_NOTIFY_URLS": hook.url(f"/hook/{URL_TOKEN}", userinfo=f"bot:{URL_PASSWORD}")}


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_no_secret_in_the_message_the_logs_or_the_delivery(hook, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("apprise", "urllib3", "numerlab"):  # apprise logs its request URLs at DEBUG
        caplog.set_level(logging.DEBUG, logger=name)
    environ = _secret_environ(hook)
    notifier = Notifier.from_config(config(urls_env="MY_NOTIFY_URLS"), environ=environ)
    # a careless caller: an error line holding a key and the webhook's token
    deliveries = notifier.send(*notify.message_failed(
        "submit", f"rejected {SECRET_KEY} by {PUBLIC_ID} at /hook/{URL_TOKEN} "
                  f"({URL_PASSWORD})", "my_model", 812))
    assert [d.ok for d in deliveries] == [True]
    (post,) = hook.posts
    assert post.path == f"/hook/{URL_TOKEN}"  # delivered to the real URL ...
    assert _leaks(post.raw) == []              # ... with no secret in what it says
    assert "rejected" in post.body["message"]
    assert deliveries[0].target == f"json://127.0.0.1:{hook.port}"
    assert _leaks(repr(deliveries)) == []
    assert any(r.name == "apprise" and r.levelno == logging.DEBUG for r in caplog.records)
    assert _leaks(caplog.text) == []
    assert _leaks(" ".join(str(r.msg) + repr(r.args) for r in caplog.records)) == []


def test_no_secret_in_the_error_of_a_failing_secret_target(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("apprise", "urllib3", "numerlab"):
        caplog.set_level(logging.DEBUG, logger=name)
    dead = f"json://bot:{URL_PASSWORD}@127.0.0.1:{closed_port()}/hook/{URL_TOKEN}"
    notifier = Notifier.from_config(config(urls_env="URLS"), environ={"URLS": dead})
    (delivery,) = notifier.send(*MESSAGES[1])
    assert not delivery.ok and delivery.error
    assert _leaks(repr(delivery)) == []
    assert any("Socket Exception" in r.getMessage() for r in caplog.records)  # apprise said
    assert _leaks(caplog.text) == []


def test_urls_env_holds_several_urls_space_or_comma_separated(hook):
    environ = {"URLS": f"{hook.url('/a')}, {hook.url('/b')}\n{hook.url('/c')}"}
    notifier = Notifier.from_config(config(urls_env="URLS"), environ=environ)
    assert [d.ok for d in notifier.send(*MESSAGES[0])] == [True, True, True]
    assert sorted(post.path for post in hook.posts) == ["/a", "/b", "/c"]
    unset = Notifier.from_config(config(urls_env="URLS"), environ={})
    assert not unset.enabled


def test_targets_are_named_by_scheme_and_host_only():
    environ = {"URLS": "slack://TAAAA1111/BBBBB2222/CCCCCCCCCCCC3333 "
                       "discord://123456789012/WebhookTokenDDDD4444 "
                       "mailto://bob:MailPassEEEE5555@example.com "
                       "ntfy://ntfy.example.org/private-topic-FFFF"}
    notifier = Notifier.from_config(config(urls_env="URLS"), environ=environ)
    assert [t.description for t in notifier.targets] == [
        "slack://", "discord://", "mailto://example.com", "ntfy://ntfy.example.org"]


def test_for_run_masks_the_keys_of_the_tournament_keys_file(hook, tmp_path):
    keys = tmp_path / "keys.env"
    keys.write_text(f"MY_ID={PUBLIC_ID}\nMY_SECRET={SECRET_KEY}\n")
    cfg = {"notify": config(urls=[hook.url()]),
           "tournament": {"public_id_env": "MY_ID", "secret_key_env": "MY_SECRET",
                          "keys_file": str(keys)}}
    notifier = Notifier.for_run(cfg, environ={})
    (delivery,) = notifier.send("failed", "t", f"{PUBLIC_ID} {SECRET_KEY}")
    assert delivery.ok
    assert _leaks(hook.posts[0].raw) == []


def test_a_target_that_never_answers_is_cut_at_timeout_s():
    """A webhook that accepts the connection and never answers: the delivery fails at
    `notify.timeout_s` (1 s here), not at apprise's own 4 s read timeout."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"json://127.0.0.1:{silent.getsockname()[1]}/hook"
        notifier = Notifier.from_config(config(urls=[url], timeout_s=1), environ={})
        (delivery,) = notifier.send(*MESSAGES[0])
    assert not delivery.ok
    assert "did not finish within" in delivery.error
