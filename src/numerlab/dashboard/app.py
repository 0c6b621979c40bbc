"""The dashboard app: five panels (Round, Models, Live, Runs, Events) as tabs in a small
terminal; in a large one (WIDE_COLUMNS and more) Round and Models side by side above the
other three. Data come from `numerlab.dashboard.data`; the API is read in a worker thread,
so the screen never waits for Numerai."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from numerlab.dashboard import data, text
from numerlab.dashboard.confirm import Confirm
from numerlab.dashboard.events_panel import EventsPanel
from numerlab.dashboard.live_panel import LivePanel
from numerlab.dashboard.models_panel import ModelsPanel
from numerlab.dashboard.round_panel import RoundPanel
from numerlab.dashboard.run_detail import RunDetail
from numerlab.dashboard.runs_panel import RunsPanel
from numerlab.errors import NumerlabError, message_line

WIDE_COLUMNS = 140  # from this width on, Round and Models stay in view above the tabs
TABS = ("round", "models", "live", "runs", "events")
PANELS = "RoundPanel, ModelsPanel, LivePanel, RunsPanel, EventsPanel"
TICK_S = 30.0  # the countdowns move on this often


@dataclass
class RunsState:
    """The Runs panel's sort and filter (they outlive a relayout)."""

    roots: tuple[str, ...]
    metric: str
    direction: str
    filter: str = ""


class MainScreen(Screen):
    wide = reactive(False, recompose=True)

    DEFAULT_CSS = """
    MainScreen #status-bar { height: 1; padding: 0 1; background: $boost; }
    MainScreen #top { height: auto; max-height: 50%; }
    MainScreen #top RoundPanel { width: 58; }
    MainScreen #top ModelsPanel { width: 1fr; }
    MainScreen TabbedContent, MainScreen ContentSwitcher { height: 1fr; }
    MainScreen TabPane { height: 1fr; padding: 0; }
    """

    def compose(self) -> ComposeResult:
        app: DashboardApp = self.app  # type: ignore[assignment]
        yield Static(app.status_line(), id="status-bar")
        tabs = TABS[2:] if self.wide else TABS
        initial = app.active_tab if app.active_tab in tabs else tabs[0]
        if self.wide:
            with Horizontal(id="top"):
                yield RoundPanel(id="round")
                yield ModelsPanel(wide=True, id="models")
        with TabbedContent(initial=f"tab-{initial}", id="tabs"):
            for i, name in enumerate(TABS, start=1):
                if name not in tabs:
                    continue
                with TabPane(f"{i} {name.title()}", id=f"tab-{name}"):
                    yield self._panel(name)
        yield Footer()

    def _panel(self, name: str) -> Any:
        if name == "round":
            return RoundPanel(id="round")
        if name == "models":
            return ModelsPanel(wide=self.wide, id="models")
        if name == "live":
            return LivePanel(wide=self.wide, id="live")
        if name == "runs":
            return RunsPanel(id="runs")
        return EventsPanel(wide=self.wide, id="events")

    def on_mount(self) -> None:
        self.wide = self.app.size.width >= WIDE_COLUMNS

    def on_resize(self, event: Any) -> None:
        wide = event.size.width >= WIDE_COLUMNS
        if wide != self.wide:
            self.wide = wide

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.app.active_tab = str(event.pane.id).removeprefix("tab-")  # type: ignore
        tables = event.pane.query(DataTable)
        if tables:
            tables.first().focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "models-table" and event.row_key.value:
            self.app.select_model(str(event.row_key.value))  # type: ignore[attr-defined]

    def on_runs_panel_opened(self, event: RunsPanel.Opened) -> None:
        self.app.open_run(event.run_dir)  # type: ignore[attr-defined]


class DashboardApp(App):
    TITLE = "numerlab dashboard"
    BINDINGS = [
        Binding("r", "refresh", "refresh"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("s", "sort", "sort"),
        Binding("S", "flip_direction", "direction", show=False),
        Binding("d", "submit", "dry-run submit"),
        Binding("m", "next_model", "model", show=False),
        Binding("q", "quit", "quit"),
        *(Binding(str(i), f"tab('{name}')", name, show=False)
          for i, name in enumerate(TABS, start=1)),
    ]

    def __init__(self, cfg: DictConfig, run_dir: Path, options: data.Settings,
                 clock: data.Clock = data.utc_now, online: bool | None = None):
        super().__init__()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.options = options
        self.clock = clock
        self.online = data.has_keys(cfg) if online is None else online
        self.runs_state = RunsState(options.runs, options.metric, options.direction)
        self.active_tab = TABS[0]
        self.started_at = clock()
        self.refreshed_at: Any = None   # the last refresh from Numerai that worked
        self.failed_at: Any = None      # the last one that failed, and its line
        self.online_error: str | None = None
        self.refreshing = False
        self.last_online: data.Online | None = None
        self.last_outcome: str | None = None
        self.local = data.load_local(cfg, options, self.started_at)
        self.snapshot = self.local
        self.selected_model = self.local.models[0].model if self.local.models else None

    def get_default_screen(self) -> Screen:
        return MainScreen()

    @property
    def main(self) -> MainScreen:
        return self.screen_stack[0]  # type: ignore[return-value]

    def on_mount(self) -> None:
        if self.online:
            self.refresh_online()
            if self.options.refresh_s > 0:
                self.set_interval(self.options.refresh_s, self.refresh_online)
        self.set_interval(TICK_S, self.tick)

    # --- what is on screen --------------------------------------------------------------

    def status_line(self) -> Text:
        """Online or offline, when the API data are from, and the last error line."""
        now = self.clock()
        if not self.online:
            line = Text.assemble(("offline", "bold yellow"),
                                 ": no API keys · the history and local files only")
        elif self.refreshing and self.refreshed_at is None and self.failed_at is None:
            line = Text.assemble(("refreshing from Numerai…", "bold"))
        elif self.online_error is not None or self._too_old(now):
            since = self.refreshed_at or self.started_at
            line = Text.assemble(("stale since " + text.clock(since), "bold red"),
                                 f": {self.online_error}" if self.online_error else "")
        else:
            line = Text.assemble(("online", "bold green"),
                                 f" · refreshed {text.clock(self.refreshed_at)}")
        if self.refreshing and (self.refreshed_at or self.failed_at):
            line.append(" · refreshing…")
        if self.last_outcome:
            line.append(f" · {self.last_outcome}")
        return line

    def _too_old(self, now: Any) -> bool:
        if self.refreshed_at is None or self.options.refresh_s <= 0:
            return False
        return (now - self.refreshed_at).total_seconds() > 2 * self.options.refresh_s + 60

    def show_all(self) -> None:
        main = self.main
        for bar in main.query("#status-bar").results(Static):
            bar.update(self.status_line())
        for panel in main.query(PANELS):
            panel.show(self.snapshot)  # type: ignore[attr-defined]

    def reload_local(self) -> None:
        state = self.runs_state
        try:
            self.local = data.load_local(self.cfg, self.options, self.clock(), state.metric,
                                         state.direction)
        except NumerlabError as exc:
            self.notify(message_line(exc), severity="error")
            return
        self.snapshot = (data.merge(self.local, self.last_online, self.cfg)
                         if self.last_online else self.local)

    def tick(self) -> None:
        self.snapshot = replace(self.snapshot, now=self.clock())
        self.local = replace(self.local, now=self.snapshot.now)
        self.show_all()

    def select_model(self, model: str) -> None:
        if model != self.selected_model:
            self.selected_model = model
            for panel in self.main.query("LivePanel"):
                panel.show(self.snapshot)  # type: ignore[attr-defined]
            for models in self.main.query(ModelsPanel):
                models.show_detail(self.snapshot)

    # --- the API, in a worker thread ----------------------------------------------------

    @work(thread=True, exclusive=True, group="refresh")
    def refresh_online(self) -> None:
        """Numerai's answers, then the history and runs read again (new live scores), all
        off the screen's thread."""
        self.call_from_thread(self._refresh_started)
        models = [row.model for row in self.local.models]
        online = data.fetch_online(self.cfg, models, self.clock())
        state = self.runs_state
        try:
            local: data.Snapshot | str = data.load_local(self.cfg, self.options, self.clock(),
                                                         state.metric, state.direction)
        except NumerlabError as exc:
            local = message_line(exc)
        self.call_from_thread(self._refresh_done, online, local)

    def _refresh_started(self) -> None:
        self.refreshing = True
        self.show_all()

    def _refresh_done(self, online: data.Online, local: data.Snapshot | str) -> None:
        self.refreshing = False
        now = self.clock()
        if isinstance(local, str):
            self.notify(local, severity="error")
        else:
            self.local = local
        if online.error is None:
            self.refreshed_at, self.online_error = now, None
            self.last_online = online
        else:
            self.failed_at, self.online_error = now, online.error
            if self.refreshed_at is None:  # nothing from Numerai worked yet: the schedule
                self.last_online = online
        self.snapshot = (data.merge(self.local, self.last_online, self.cfg)
                         if self.last_online else self.local)
        self.show_all()

    # --- keys ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.reload_local()
        self.show_all()
        if self.online:
            self.refresh_online()
        else:
            self.notify("offline: no Numerai API keys, reloaded the history and local runs")

    def action_tab(self, name: str) -> None:
        tabs = self.main.query("#tabs").results(TabbedContent)
        for tabbed in tabs:
            if tabbed.query(f"#tab-{name}"):
                tabbed.active = f"tab-{name}"
            elif name == "models":
                self.main.query_one(ModelsPanel).table.focus()

    def action_filter(self) -> None:
        self.action_tab("runs")
        self.main.query_one(RunsPanel).show_filter()

    def action_sort(self) -> None:
        metrics = self.snapshot.runs.metrics
        if not metrics:
            return
        state = self.runs_state
        position = metrics.index(state.metric) if state.metric in metrics else -1
        state.metric = metrics[(position + 1) % len(metrics)]
        self._rerank()

    def sort_by(self, metric: str) -> None:
        state = self.runs_state
        if metric == state.metric:
            return self.action_flip_direction()
        state.metric = metric
        self._rerank()

    def action_flip_direction(self) -> None:
        state = self.runs_state
        state.direction = "minimize" if state.direction == "maximize" else "maximize"
        self._rerank()

    def _rerank(self) -> None:
        state = self.runs_state
        runs = data.rerank(self.snapshot.runs, state.metric, state.direction)
        self.snapshot = replace(self.snapshot, runs=runs)
        self.local = replace(self.local, runs=runs)
        self.action_tab("runs")
        self.main.query_one(RunsPanel).show(self.snapshot)

    def action_next_model(self) -> None:
        models = [row.model for row in self.snapshot.models]
        if not models:
            return
        position = models.index(self.selected_model) if self.selected_model in models else -1
        model = models[(position + 1) % len(models)]
        self.select_model(model)
        for panel in self.main.query(ModelsPanel):
            panel.move_to(model)

    def open_run(self, run_dir: str) -> None:
        frame = self.snapshot.runs.frame
        names = dict(zip(frame["run_dir"], frame["name"], strict=True)) if frame is not None \
            else {}
        self.push_screen(RunDetail(run_dir, names.get(run_dir, Path(run_dir).name)))

    def action_submit(self) -> None:
        model = self.selected_model
        if model is None:
            self.notify("no model to submit: set submit.models", severity="warning")
            return
        real = data.real_upload(self.cfg)
        status = self.snapshot.round.status
        number = "?" if status.number is None else status.number
        question = Text.assemble(
            ("Submit ", "bold"), (model, "bold"), f" for round {number}?\n",
            ("tournament.submit=true: this UPLOADS the predictions to Numerai", "bold red")
            if real else "Dry run (tournament.submit=false): nothing is uploaded.")
        self.push_screen(Confirm(question, real),
                         lambda yes: self.submit_model(model) if yes else None)

    @work(thread=True, exclusive=True, group="submit")
    def submit_model(self, model: str) -> None:
        job_dir = data.submit_job_dir(self.run_dir, model, self.clock())
        try:
            outcomes = data.submit_model(self.cfg, job_dir, model)
            line = "; ".join(
                f"{o.model}: {o.status}" + (f" round {o.round}" if o.round is not None else "")
                + (f" ({o.error})" if o.error else "") for o in outcomes) or f"{model}: nothing"
        except NumerlabError as exc:
            line = f"{model}: submit failed: {message_line(exc)}"
        self.call_from_thread(self._submitted, line)

    def _submitted(self, line: str) -> None:
        self.last_outcome = line
        self.notify(line, timeout=10)
        self.reload_local()
        self.show_all()
