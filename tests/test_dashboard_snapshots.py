"""SVG snapshots of each panel at 80×24 and 160×48 (pytest-textual-snapshot), reviewed by eye
once and held: a fixed clock (time-machine, Paris as the local zone), a history with known
rows and run dirs with metrics we wrote, shown relative to the working dir. In the large
layout Round and Models stay in view above the tabs, so each large shot holds them.

    pytest tests/test_dashboard_snapshots.py --snapshot-update   # after a deliberate change
"""

from __future__ import annotations

import pytest
import time_machine
from conftest import compose
from dashboard_world import MODELS, NOW, write_history, write_runs
from fakes.numerai_server import KEYS_ENV

from numerlab.dashboard import build_app

SMALL, LARGE = (80, 24), (160, 48)
SHOTS = [
    ("round", SMALL, ["1"]), ("models", SMALL, ["2"]), ("live", SMALL, ["3"]),
    ("runs", SMALL, ["4"]), ("events", SMALL, ["5"]), ("run", SMALL, ["4", "enter"]),
    ("round-models-live", LARGE, []), ("runs", LARGE, ["4"]), ("events", LARGE, ["5"]),
    ("run", LARGE, ["4", "down", "enter"]),
]


@pytest.mark.parametrize(("panel", "size", "keys"), SHOTS,
                         ids=[f"{p}-{s[0]}x{s[1]}" for p, s, _ in SHOTS])
def test_panel(panel, size, keys, snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in KEYS_ENV:
        monkeypatch.delenv(name, raising=False)
    models = ", ".join(f"{m}: outputs/2026-12-07/10-00-00-lgbm" for m in MODELS)
    cfg = compose(["task=dashboard", "history.path=history/numerlab.sqlite",
                   f"++submit.models={{{models}}}"])
    with time_machine.travel(NOW, tick=False):
        write_history(tmp_path / "history/numerlab.sqlite", write_runs(tmp_path))
        app = build_app(cfg, tmp_path / "outputs/.dashboard/snap")
        assert snap_compare(app, press=keys, terminal_size=size)
