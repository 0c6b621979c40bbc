"""The Live panel: a model's per-round live CORR/MMC/BMC from the history, cumulative
(numerlab.live_results.per_round), with the validation expectation of the run that made its
newest submission drawn beside it (live_results.live_vs_validation) and its flags."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from numerlab.dashboard import text
from numerlab.dashboard.data import Snapshot

LINES = (("cum_corr", "CORR"), ("cum_mmc", "MMC"), ("cum_bmc", "BMC"))
KEYS = (("corr_mean", "CORR mean"), ("corr_sharpe", "CORR sharpe"),
        ("corr_max_drawdown", "CORR max DD"), ("mmc_mean", "MMC mean"),
        ("mmc_sharpe", "MMC sharpe"), ("bmc_mean", "BMC mean"))


def versus_table(versus: Any) -> Table:
    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("")
    table.add_column("live", justify="right")
    table.add_column("validation", justify="right")
    for key, label in KEYS:
        table.add_row(label, text.score(versus.live.get(key)),
                      text.score(versus.validation.get(key)))
    return table


class LivePanel(Container):
    DEFAULT_CSS = """
    LivePanel { height: 1fr; }
    LivePanel #live-title { height: 1; padding: 0 1; }
    LivePanel > Horizontal, LivePanel > Vertical { height: 1fr; }
    LivePanel #live-plot { height: 1fr; min-height: 8; }
    LivePanel #live-side { height: auto; padding: 0 1; }
    LivePanel.-wide #live-side { width: 48; height: 1fr; }
    """

    def __init__(self, wide: bool = False, **kwargs: Any):
        super().__init__(classes="-wide" if wide else "", **kwargs)
        self.wide = wide

    def compose(self) -> ComposeResult:
        yield Static(id="live-title")
        body = Horizontal if self.wide else Vertical
        with body():
            yield PlotextPlot(id="live-plot")
            yield Static(id="live-side")

    def on_mount(self) -> None:
        self.show(self.app.snapshot)  # type: ignore[attr-defined]

    def show(self, snapshot: Snapshot) -> None:
        if not self.query("#live-plot"):  # not composed yet: on_mount shows it
            return
        model = self.app.selected_model  # type: ignore[attr-defined]
        title = self.query_one("#live-title", Static)
        side = self.query_one("#live-side", Static)
        plot = self.query_one("#live-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        live = snapshot.live
        if live.error:
            title.update(Text(live.error, style="red"))
            side.update("")
            plot.refresh()
            return
        frame = live.per_round.get(model) if model else None
        versus = live.versus.get(model) if model else None
        if model is None or frame is None or frame.height == 0:
            title.update(Text(f"{model or 'no model'}: no live scores in the history yet "
                              "(r refreshes them with API keys)", style="dim"))
            side.update(versus_table(versus) if versus else "")
            plot.refresh()
            return
        run = text.short_path(versus.run_dir) if versus and versus.run_dir else "—"
        title.update(Text.assemble((model, "bold"), f"  {frame.height} rounds, run {run}"
                                   "  (m: next model)"))
        rounds = frame["round"].to_list()
        for column, label in LINES:
            if column not in frame.columns:
                continue
            points = [(r, v) for r, v in zip(rounds, frame[column].to_list(), strict=True)
                      if v is not None]
            if points:
                plt.plot([p[0] for p in points], [p[1] for p in points], label=label)
        expected = (versus.validation.get("corr_mean") if versus else None)
        if expected is not None:  # beside the resolved rounds only, as the cumulative lines
            from numerlab.live_results import resolved_rounds

            counted = resolved_rounds(frame)["round"].to_list()
            plt.plot(counted, [expected * (i + 1) for i in range(len(counted))],
                     label="validation CORR", marker="dot")
        plt.title("cumulative live score by round")
        plot.refresh()
        parts: list[Any] = [versus_table(versus)] if versus else []
        side.update(_stack(parts, versus.flags if versus else []))


def _stack(tables: list[Any], flags: list[str]) -> Any:
    from rich.console import Group

    return Group(*tables, *(Text(f"! {flag}", style="yellow") for flag in flags))
