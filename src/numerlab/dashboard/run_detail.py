"""A run opened from the Runs panel: its metrics table, its overrides, its cumulative
per-era plot and its top features (numerlab.compare.read_run: what task=compare reads)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from numerlab.compare import TOP_FEATURES_SHOWN
from numerlab.dashboard import text
from numerlab.errors import NumerlabError, message_line
from numerlab.report import CUMULATIVE_LINES, HEADLINE, running_sum


def metrics_table(metrics: dict) -> Table:
    table = Table(title="metrics", box=None, padding=(0, 1), header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, _ in HEADLINE:
        if key in metrics:
            table.add_row(label, text.score(metrics[key]))
    return table


def features_table(features: pl.DataFrame | None) -> Table | Text:
    if features is None or features.height == 0:
        return Text("no features.parquet (top features)", style="dim")
    table = Table(title="top features", box=None, padding=(0, 1), header_style="bold")
    kinds = sorted(set(features["kind"].to_list()))
    table.add_column("#", justify="right")
    for kind in kinds:
        table.add_column(kind)
    columns = {k: features.filter(pl.col("kind") == k).sort("rank") for k in kinds}
    for i in range(min(TOP_FEATURES_SHOWN, max(f.height for f in columns.values()))):
        cells = []
        for kind in kinds:
            rows = columns[kind]
            cells.append(f"{rows['feature'][i]} {rows['value'][i]:.3f}"
                         if i < rows.height else "")
        table.add_row(str(i + 1), *cells)
    return table


class RunDetail(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "back"), Binding("b", "app.pop_screen",
                                                                    "back", show=False)]
    DEFAULT_CSS = """
    RunDetail #detail-title { height: 1; padding: 0 1; background: $boost; }
    RunDetail #detail-plot { height: 1fr; min-height: 10; }
    RunDetail #detail-top { height: auto; }
    RunDetail #detail-metrics { width: auto; padding: 0 1; }
    RunDetail #detail-side { width: 1fr; padding: 0 1; }
    """

    def __init__(self, run_dir: str, name: str):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.run_name = name

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("run ", "bold"), self.run_name, "  (esc: back)"),
                     id="detail-title")
        with VerticalScroll():
            yield PlotextPlot(id="detail-plot")
            with Horizontal(id="detail-top"):
                yield Static(id="detail-metrics")
                yield Static(id="detail-side")
        yield Footer()

    def on_mount(self) -> None:
        from numerlab.compare import read_run

        try:
            run = read_run(self.run_dir)
        except NumerlabError as exc:
            self.query_one("#detail-metrics", Static).update(
                Text(message_line(exc), style="red"))
            return
        from numerlab.compare import era_span

        self.query_one("#detail-title", Static).update(Text.assemble(
            ("run ", "bold"), self.run_name, f"  {era_span(run.scored_eras)}  (esc: back)"))
        self.query_one("#detail-metrics", Static).update(metrics_table(run.metrics))
        overrides = Text("\n".join(run.overrides) or "no overrides", style="")
        self.query_one("#detail-side", Static).update(
            Group(Text("overrides", style="bold"), overrides, Text(""),
                  features_table(run.features)))
        self._plot(run.per_era)

    def _plot(self, per_era: pl.DataFrame | None) -> None:
        plot = self.query_one("#detail-plot", PlotextPlot)
        plt = plot.plt
        if per_era is None:
            plt.title("no per_era.parquet")
            return
        eras = list(range(per_era.height))
        for column, label in CUMULATIVE_LINES:
            if column not in per_era.columns:
                continue
            values = running_sum(per_era[column])
            points = [(x, float(v)) for x, v in zip(eras, values, strict=True) if v == v]
            if points:
                plt.plot([p[0] for p in points], [p[1] for p in points], label=label)
        labels = [str(e) for e in per_era["era"].to_list()]
        step = max(1, len(labels) // 6)
        plt.xticks(eras[::step], labels[::step])
        plt.title("cumulative per-era score")
