"""Desktop notifications through a fake `notify-send` on PATH (in tmp_path) that records its
argv: never the real desktop. Each test runs that script: slow."""

from __future__ import annotations

import json
import sys

import pytest

from numerlab import notify
from numerlab.notify import EVENTS, Notifier

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform == "darwin", reason="macOS uses osascript")]

SECRET_KEY = "SECRETKEYSENTINEL9Z"


def config(**overrides):
    return {"urls": [], "urls_env": None, "config_file": None, "desktop": "auto",
            "events": list(EVENTS), "timeout_s": 5, **overrides}


def fake_notify_send(bin_dir, record, status: int = 0, says: str = ""):
    """`notify-send` that appends its argv (as JSON) to `record`, prints `says` on stderr and
    exits with `status`."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "notify-send"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stderr.write({says!r})\n"
        f"sys.exit({status})\n")
    script.chmod(0o755)
    return script


def calls(record):
    return [json.loads(line) for line in record.read_text().splitlines()] \
        if record.exists() else []


def test_desktop_auto_shows_the_title_and_body_through_notify_send(tmp_path):
    record = tmp_path / "argv.jsonl"
    fake_notify_send(tmp_path / "bin", record)
    environ = {"PATH": str(tmp_path / "bin"), "DISPLAY": ":0",
               "NUMERAI_SECRET_KEY": SECRET_KEY}
    notifier = Notifier.from_config(config(), environ=environ)
    message = notify.message_failed("submit", f"refused ({SECRET_KEY})", "my_model", 812)
    (delivery,) = notifier.send(*message)
    assert delivery.ok and delivery.target == "desktop"
    (argv,) = calls(record)
    assert argv[-2:] == [message.title, "refused (***)"]
    assert "--" in argv  # a title starting with '-' is not an option
    assert SECRET_KEY not in json.dumps(argv)


def test_a_failing_notify_send_is_a_failed_delivery_with_its_last_line(tmp_path):
    record = tmp_path / "argv.jsonl"
    fake_notify_send(tmp_path / "bin", record, status=1,
                     says="GDBus.Error: no notification daemon\nCannot connect to bus\n")
    environ = {"PATH": str(tmp_path / "bin"), "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}
    (delivery,) = Notifier.from_config(config(desktop=True), environ=environ).send(
        *notify.message_submitted("m", 1, "id"))
    assert not delivery.ok
    assert delivery.error == "notify-send exited with status 1: Cannot connect to bus"
    assert len(calls(record)) == 1


def test_the_desktop_and_events_filter(tmp_path):
    record = tmp_path / "argv.jsonl"
    fake_notify_send(tmp_path / "bin", record)
    environ = {"PATH": str(tmp_path / "bin"), "WAYLAND_DISPLAY": "wayland-0"}
    notifier = Notifier.from_config(config(events=["round_resolved"]), environ=environ)
    assert notifier.send(*notify.message_submitted("m", 1, "id")) == []
    assert len(notifier.send(*notify.message_round_resolved("m", 1, {"corr": 0.01}))) == 1
    assert len(calls(record)) == 1
