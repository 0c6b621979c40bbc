"""The Events panel: the history's log of submissions, failures, stake decisions and
notifications, newest first (History.events)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from numerlab.dashboard import text
from numerlab.dashboard.data import Snapshot

STATUS_STYLE = {"failed": "red", "unknown": "yellow", "sending": "yellow", "sent": "green",
                "ok": "green"}


class EventsPanel(DataTable):
    """All columns in a large terminal; time, status and what in a small one (the text
    names the model and round)."""

    DEFAULT_CSS = """
    EventsPanel { height: 1fr; }
    """

    def __init__(self, wide: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.wide = wide

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        if self.wide:
            self.add_columns("time (UTC)", "kind", "model", "round", "status", "what")
        else:
            self.add_columns("time (UTC)", "status", "what")
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    def show(self, snapshot: Snapshot) -> None:
        if not self.columns:  # not mounted yet: on_mount shows it
            return
        self.clear()
        for i, event in enumerate(snapshot.events):
            status = Text(event.status or "—", style=STATUS_STYLE.get(event.status, ""))
            if self.wide:
                self.add_row(text.stamp(event.time), event.kind, Text(event.model or "—"),
                             "—" if event.round is None else str(event.round), status,
                             Text(event.text), key=str(i))
            else:
                self.add_row(text.stamp(event.time, short=True), status, Text(event.text),
                             key=str(i))
        if not snapshot.events:
            empty = ["—"] + [""] * (len(self.columns) - 2) + ["no events in the history yet"]
            self.add_row(*empty)
