"""The Models panel: each configured model's submission this round (from the history), its
per-round stake, open positions and locked NMR, and what is claimable (Numerai's
`AbsStakes.book` with keys, else the history's positions); under the table, the selected
model's submission in full (when, which run, the upload id or the error)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import DataTable, Static

from numerlab.dashboard import text
from numerlab.dashboard.data import ModelRow, Snapshot
from numerlab.history import DRY_RUN, FAILED, SENDING, SENT, UNKNOWN

STYLE = {SENT: "green", DRY_RUN: "cyan", FAILED: "red", UNKNOWN: "yellow", SENDING: "yellow"}


def submission_cell(row: ModelRow, this_round: int | None) -> Text:
    s = row.submission
    if s is None:
        return Text("not submitted" if this_round is not None else "—",
                    style="yellow" if this_round is not None else "dim")
    label = s.status if s.round == this_round else f"{s.status} (r{s.round})"
    return Text(label, style=STYLE.get(s.status, ""))


def submission_detail(row: ModelRow) -> Text:
    s = row.submission
    if s is None:
        return Text(f"{row.model}: no submission in the history", style="dim")
    line = Text.assemble((row.model, "bold"), f": round {s.round} {s.status} "
                         f"{text.stamp(s.finished_at or s.started_at)} UTC, run "
                         f"{text.short_path(s.run_dir)}")
    if s.upload_id:
        line.append(f", upload {s.upload_id}")
    if s.error:
        line.append(f"\n{s.error}", style="red")
    return line


class ModelsPanel(Container):
    DEFAULT_CSS = """
    ModelsPanel { height: auto; max-height: 100%; }
    ModelsPanel DataTable { height: auto; max-height: 12; }
    ModelsPanel #models-detail { height: auto; padding: 0 1; }
    """

    def __init__(self, wide: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.wide = wide

    def compose(self) -> ComposeResult:
        yield DataTable(id="models-table", cursor_type="row")
        yield Static(id="models-detail")

    @property
    def table(self) -> DataTable:
        return self.query_one("#models-table", DataTable)

    def on_mount(self) -> None:
        columns = ["model", "this round"]
        if self.wide:
            columns += ["at (UTC)"]
        self.table.add_columns(*columns, "stake/rnd", "open", "locked", "claimable", "from")
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    def show(self, snapshot: Snapshot) -> None:
        table = self.table
        if not table.columns:  # not mounted yet: on_mount shows it
            return
        table.clear()
        this_round = snapshot.round.status.number if snapshot.round.source == "api" else None
        for row in snapshot.models:
            s = row.submission
            cells: list[Any] = [Text(row.model, style="bold"), submission_cell(row, this_round)]
            if self.wide:
                cells.append(text.stamp(s.finished_at or s.started_at) if s else "—")
            cells += [text.nmr(row.per_round_stake), str(row.open_positions),
                      text.nmr(row.locked), text.nmr(row.claimable), row.source]
            table.add_row(*cells, key=row.model)
        models = [r.model for r in snapshot.models]
        selected = self.app.selected_model  # type: ignore[attr-defined]
        if selected in models:
            table.move_cursor(row=models.index(selected))
        self.show_detail(snapshot)

    def show_detail(self, snapshot: Snapshot) -> None:
        detail = self.query_one("#models-detail", Static)
        selected = self.app.selected_model  # type: ignore[attr-defined]
        rows = [r for r in snapshot.models if r.model == selected]
        if not snapshot.models:
            detail.update(Text("no models: set submit.models (conf/submit/) or "
                               "tournament.model_name", style="dim"))
        else:
            detail.update(submission_detail(rows[0]) if rows else "")

    def move_to(self, model: str) -> None:
        models = [r.model for r in self.app.snapshot.models]  # type: ignore[attr-defined]
        if model in models:
            self.table.move_cursor(row=models.index(model))
