"""A boosting fit's progress: a rich bar of rounds done / total, elapsed time and ETA on
stderr, as the neural fits show Lightning's bar of epochs.

Shown only when stderr is a terminal (rich's `Console.is_terminal`: `FORCE_COLOR` forces it,
`TTY_COMPATIBLE=0` turns it off), so logs, pipes and captured output get no bar frames. An
early-stopped fit ends with its bar full at the round it stopped on.
"""

from __future__ import annotations

from typing import Any


class RoundsProgress:
    """`with RoundsProgress("lgbm", 300) as bar: ...; bar.update(done)`: a bar over the
    rounds of one fit. `done` and `total` are what it shows, also when nothing is drawn."""

    def __init__(self, label: str, total: int, console: Any = None, enabled: bool = True):
        from rich.console import Console

        self.label = label
        self.total = int(total)
        self.done = 0
        self.console = console if console is not None else Console(stderr=True)
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> RoundsProgress:
        if self.enabled and self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("rounds"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), console=self.console)
            self._progress.start()
            self._task = self._progress.add_task(f"fitting {self.label}", total=self.total)
        return self

    def update(self, done: int) -> None:
        """`done` rounds are fitted."""
        self.done = int(done)
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)

    def finish(self) -> None:
        """The fit ended (after fewer than `total` rounds when it stopped early): the bar
        ends full at the rounds done."""
        self.total = self.done
        if self._progress is not None:
            self._progress.update(self._task, total=self.total, completed=self.done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def lightgbm_callback(bar: RoundsProgress):
    """A LightGBM callback moving `bar` after each boosting round."""
    def advance(env: Any) -> None:
        bar.update(env.iteration - env.begin_iteration + 1)

    # before the early-stopping callback (order 30), which ends the fit by raising: the
    # round it stops on is counted
    advance.order = 20
    return advance


def xgboost_callback(bar: RoundsProgress):
    """An XGBoost TrainingCallback moving `bar` after each boosting round."""
    import xgboost as xgb

    class Advance(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            bar.update(epoch + 1)
            return False

    return Advance()
