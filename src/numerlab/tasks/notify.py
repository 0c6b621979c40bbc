"""task=notify: a test notification through every target the `notify` group declares, to
check a setup (Slack, Discord, ntfy, email, a webhook, the desktop) before a daily round
depends on it. Prints one line per target, writes `notify.json` (targets redacted), and fails
with one line naming each target that did not take it.

    NUMERLAB_NOTIFY_URLS='ntfy://ntfy.sh/my-topic' python run.py task=notify notify=apprise
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts
from numerlab.errors import NumerlabError
from numerlab.notify import Notifier

log = logging.getLogger(__name__)

NOTIFY_FILE = "notify.json"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    notifier = Notifier.for_run(cfg)
    if not notifier.enabled:
        raise NumerlabError("task=notify: no notification target: choose notify=apprise and "
                            "set notify.urls, the variable notify.urls_env names, "
                            "notify.config_file or notify.desktop=true")
    deliveries = notifier.send_test()
    for delivery in deliveries:
        print(f"{'sent' if delivery.ok else 'FAILED':6} {delivery.target}"
              + (f": {delivery.error}" if delivery.error else ""))
    artifacts.write_record(Path(run_dir), NOTIFY_FILE,
                           {"deliveries": [asdict(d) for d in deliveries]})
    failed = [d for d in deliveries if not d.ok]
    if failed:
        raise NumerlabError(f"task=notify: {len(failed)} of {len(deliveries)} targets failed: "
                            + "; ".join(f"{d.target} ({d.error})" for d in failed))
    return {}
