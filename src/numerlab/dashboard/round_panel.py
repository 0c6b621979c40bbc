"""The Round panel: number, open or closed, countdowns to the close and the next open (UTC
and local time), the payout factor and multipliers as Numerai reports them."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from numerlab.dashboard import text
from numerlab.dashboard.data import SCHEDULED, Snapshot


def round_table(snapshot: Snapshot) -> Table:
    view, now = snapshot.round, snapshot.now
    status: Any = view.status
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    number = "?" if status.number is None else str(status.number)
    state = "[green]open[/]" if status.is_open else "[yellow]closed[/]"
    unknown = "  [dim](its number: only Numerai knows)[/]" if status.number is None else ""
    table.add_row("round", f"{number}  {state}{unknown}")
    if status.is_open:
        table.add_row("closes", text.when(status.close_time))
        table.add_row("", f"[b]{text.until(status.close_time, now)}[/b]")
    else:
        table.add_row("closed", text.when(status.close_time))
    table.add_row("opened", text.when(status.open_time))
    table.add_row("next opens", text.when(status.next_open_time))
    table.add_row("", text.until(status.next_open_time, now))
    if status.payout_factor is not None:
        table.add_row("payout factor", f"{status.payout_factor:g}")
    for score in status.payout_scores:
        table.add_row(f"× {score.display_name or score.name}", f"{score.multiplier}")
    if not status.payout_scores and view.configured:
        table.add_row("multipliers", "  ".join(f"{label} × {value:g}"
                                               for label, value in view.configured)
                      + "  [dim](payout config)[/]")
    if view.source == SCHEDULED:
        table.add_row("times", "[dim]scheduled (offline): weekday schedule[/]")
    if view.error:
        table.add_row("error", Text(view.error, style="red"))
    return table


class RoundPanel(Static):
    """The round, redrawn from the app's snapshot."""

    DEFAULT_CSS = """
    RoundPanel { height: auto; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    def show(self, snapshot: Snapshot) -> None:
        self.update(round_table(snapshot))
