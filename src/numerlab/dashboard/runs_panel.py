"""The Runs panel: the leaderboard of the runs under `dashboard.runs` (numerlab.summary's
reading and ranking), sortable by any metric (`s`, `S` flips the direction), filterable by
model and task (`/`: `model=lgbm task=cv` or any words), with the eras each was scored on;
enter opens a run."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from numerlab.dashboard import data
from numerlab.dashboard.data import Snapshot
from numerlab.report import NARROW
from numerlab.summary import FAILED, format_number, shown_columns


class RunsPanel(Container):
    DEFAULT_CSS = """
    RunsPanel { height: 1fr; }
    RunsPanel #runs-title { height: 1; padding: 0 1; }
    RunsPanel #runs-filter { display: none; }
    RunsPanel #runs-filter.-shown { display: block; }
    RunsPanel DataTable { height: 1fr; }
    """

    class Opened(Message):
        """A run was chosen (enter)."""

        def __init__(self, run_dir: str) -> None:
            super().__init__()
            self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title")
        yield Input(placeholder="filter: model=lgbm task=cv, or any words (enter)",
                    id="runs-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        state = self.app.runs_state  # type: ignore[attr-defined]
        if state.filter:
            field = self.query_one("#runs-filter", Input)
            field.value = state.filter
            field.add_class("-shown")
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    def show(self, snapshot: Snapshot) -> None:
        if not self.query("#runs-table"):  # not composed yet: on_mount shows it
            return
        state = self.app.runs_state  # type: ignore[attr-defined]
        view = snapshot.runs
        title = self.query_one("#runs-title", Static)
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        if view.frame is None:
            lines = view.errors or [f"no runs under {', '.join(state.roots)}"]
            title.update(Text(" · ".join(lines), style="dim" if not view.errors else "red"))
            return
        frame = data.filter_runs(view.frame, state.filter) if state.filter else view.frame
        metric = state.metric if state.metric in view.metrics else None
        shown = shown_columns(frame, metric)
        note = f" · filter: {state.filter}" if state.filter else ""
        title.update(Text.assemble(
            (f"{frame.height} of {view.frame.height} runs", "bold"),
            f" ranked by {metric or '—'} ({state.direction}){note}  · s sort  / filter  "
            "enter open"))
        first = [metric] if metric else []
        rest = [c for c in shown if c not in first]
        table.add_column("#", key="rank")
        table.add_column("run", key="name")
        for column in first:
            table.add_column(Text(NARROW.get(column, column), style="bold"), key=column)
        table.add_column("task", key="task")
        table.add_column("model", key="model")
        table.add_column("eras", key="eras")
        for column in rest:
            table.add_column(NARROW.get(column, column), key=column)
        table.add_column("status", key="status")
        for row in frame.iter_rows(named=True):
            table.add_row(*_cells(row, first, rest), key=row["run_dir"])
        for errors in view.errors:
            title.update(Text(errors, style="red"))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.Opened(str(event.row_key.value)))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a metric's header ranks the runs by it (again: flips the direction)."""
        event.stop()
        metric = str(event.column_key.value)
        if metric in self.app.snapshot.runs.metrics:  # type: ignore[attr-defined]
            self.app.sort_by(metric)  # type: ignore[attr-defined]

    def show_filter(self) -> None:
        field = self.query_one("#runs-filter", Input)
        field.add_class("-shown")
        self.call_after_refresh(field.focus)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.app.runs_state.filter = event.value.strip()  # type: ignore[attr-defined]
        if not event.value.strip():
            event.input.remove_class("-shown")
        self.show(self.app.snapshot)  # type: ignore[attr-defined]
        self.query_one("#runs-table", DataTable).focus()


def _cells(row: dict[str, Any], first: list[str], rest: list[str]) -> list[Any]:
    status = row["status"]
    return ["—" if row.get("rank") is None else str(row["rank"]), Text(row["name"]),
            *(Text(format_number(row.get(c)), style="bold") for c in first),
            row.get("task") or "—", Text(row.get("model") or "—"), row.get("eras") or "—",
            *(format_number(row.get(c)) for c in rest),
            Text(status if status != FAILED else f"failed: {row.get('error') or ''}",
                 style="red" if status == FAILED else "")]
