"""Walk-forward era cross-validation: which eras each fold trains on and tests on.

Pure planning over era labels ("0001", "0575", "era12"); fitting is `tasks/cv`'s job.
Eras are ordered and compared by era NUMBER (`numerlab.eras.era_number`), so gaps in the
numbering (a strided load, validation eras after the data embargo) count as the time they
span.

Fold layout, for `n` distinct eras and `n_splits = k` (`plan_folds`)::

    block = n // (k + 1)                    eras per test block, all blocks equal
    head  = n - k * block                   >= block: eras that are never tested; the
                                            remainder n % (k + 1) lands here, so it only
                                            lengthens the first fold's training span
    test block i = eras[head + i*block : head + (i+1)*block],   i = 0..k-1
    training span of fold i = the eras before test block i whose number is more than
        `embargo_eras` below the block's first era number (number + embargo < first test),
        all of them (`expanding`) or the last `train_eras` of them (`rolling`),
        then thinned to every `era_stride`-th era counting from the span's first era.

This is Numerai's own CV (example-scripts `agents`: walk-forward `expanding` folds, 5
splits, 13 embargo eras), which cuts the eras into `n_splits` equal chunks and scores every
chunk that has training eras before it, i.e. all but the first; here `n_splits` counts the
scored folds, so numerlab's `n_splits=5` scores 5 test blocks (the eras cut into 6 chunks).
The embargo is measured by era number; on gap-free eras that is Numerai's count of eras.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from numerlab.eras import era_number, ordered_eras
from numerlab.errors import NumerlabError
from numerlab.settings import choice, integer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

SCHEMES = ("expanding", "rolling")
CV_ERAS = ("train", "all")
MIN_SPLITS = 2


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: fit on `train_eras`, score on `test_eras` (both in era order;
    every test era is later than every training era by more than the embargo)."""

    index: int
    train_eras: tuple[str, ...]
    test_eras: tuple[str, ...]

    @property
    def first_train_era(self) -> str:
        return self.train_eras[0]

    @property
    def last_train_era(self) -> str:
        return self.train_eras[-1]

    @property
    def n_train_eras(self) -> int:
        return len(self.train_eras)

    @property
    def first_test_era(self) -> str:
        return self.test_eras[0]

    @property
    def last_test_era(self) -> str:
        return self.test_eras[-1]

    @property
    def n_test_eras(self) -> int:
        return len(self.test_eras)


# --- planning ---------------------------------------------------------------------------

def plan_folds(eras: Sequence[str], n_splits: int, embargo_eras: int,
               scheme: str = "expanding", train_eras: int | None = None,
               era_stride: int = 1) -> list[Fold]:
    """Walk-forward folds over `eras` (any order, repeats ignored), layout in the module doc.

    `scheme`: "expanding" trains on every era before the embargo gap; "rolling" on the last
    `train_eras` of them (each fold's span is exactly `train_eras` eras before the stride).
    `era_stride` thins training spans only, keeping the span's first era and every Nth after
    it, as the v5 loader thins train.parquet (`[::era_stride]`); for `expanding` every span
    starts at the first era, so fold i's training eras are a prefix of fold i+1's.

    NumerlabError (one line, key, value and allowed range) for: cv.n_splits < 2 or more than
    the eras allow, cv.embargo_eras < 0 or so large that a fold has no training era, an
    unknown cv.scheme, cv.train_eras missing or larger than the first fold can train on for
    `rolling`, data.era_stride < 1, and eras without or sharing an era number.
    """
    integer("cv.n_splits", n_splits, minimum=MIN_SPLITS)
    integer("cv.embargo_eras", embargo_eras, minimum=0)
    integer("data.era_stride", era_stride, minimum=1)
    choice("cv.scheme", scheme, SCHEMES)
    if scheme == "rolling":
        if train_eras is None:
            raise NumerlabError("cv.train_eras is missing: cv.scheme=rolling needs the window "
                                "size (an integer >= 1)")
        integer("cv.train_eras", train_eras, minimum=1)

    ordered = ordered_eras(eras)
    numbers = [era_number(e, "cv eras") for e in ordered]
    block = _test_block_size(len(ordered), n_splits)
    head = len(ordered) - n_splits * block
    _check_embargo(ordered, numbers, head, embargo_eras)

    folds = []
    for index in range(n_splits):
        start = head + index * block
        # Spans are prefixes of `ordered`: the first era number that the embargo lets in last.
        span_end = sum(1 for n in numbers[:start] if n + embargo_eras < numbers[start])
        span = ordered[:span_end]
        if scheme == "rolling":
            if len(span) < train_eras:
                raise NumerlabError(
                    f"cv.train_eras={train_eras} is more than the {len(span)} eras fold "
                    f"{index} can train on with cv.embargo_eras={embargo_eras} (allowed "
                    f"1..{len(span)})")
            span = span[-train_eras:]
        folds.append(Fold(index=index, train_eras=tuple(span[::era_stride]),
                          test_eras=tuple(ordered[start:start + block])))
    return folds


def _test_block_size(n_eras: int, n_splits: int) -> int:
    """Eras per test block: n_eras // (n_splits + 1), which must be at least 1."""
    max_splits = n_eras - 1
    if max_splits < MIN_SPLITS:
        raise NumerlabError(f"cv.n_splits={n_splits} needs at least {MIN_SPLITS + 1} eras, "
                            f"got {n_eras}")
    if n_splits > max_splits:
        raise NumerlabError(f"cv.n_splits={n_splits} is more than {n_eras} eras allow "
                            f"(allowed {MIN_SPLITS}..{max_splits})")
    return n_eras // (n_splits + 1)


def _check_embargo(ordered: list[str], numbers: list[int], head: int, embargo: int) -> None:
    """The first fold has the fewest eras before its test block: the embargo must leave it
    its first era (first number + embargo < first test number), hence every fold one."""
    max_embargo = numbers[head] - numbers[0] - 1
    if embargo > max_embargo:
        raise NumerlabError(
            f"cv.embargo_eras={embargo} leaves fold 0 no training era (eras {ordered[0]}.."
            f"{ordered[head - 1]} precede its first test era {ordered[head]}; allowed "
            f"0..{max_embargo})")


def settings_keys() -> tuple[str, ...]:
    """The keys of the `cv` group: `plan_folds`' settings (the eras and the data's era
    stride come from elsewhere), which eras to fold over, and how many folds fit at once."""
    import inspect

    planned = [n for n in inspect.signature(plan_folds).parameters
               if n not in ("eras", "era_stride")]
    return (*planned, "eras", "n_jobs")


# --- era selection ----------------------------------------------------------------------

def select_eras(cv_eras: str, train_eras: Iterable[str], validation_eras: Iterable[str]
                ) -> list[str]:
    """The eras CV folds over, in era order: `cv.eras=train` the training eras only, `all`
    the training then the validation eras."""
    if choice("cv.eras", cv_eras, CV_ERAS) == "train":
        return ordered_eras(train_eras)
    return ordered_eras([*train_eras, *validation_eras])


# --- display ----------------------------------------------------------------------------

def fold_table(folds: Sequence[Fold], title: str = "walk-forward CV folds") -> Table:
    """Rich table, one row per fold: fold, train eras first..last, count, test eras
    first..last, count."""
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("fold", justify="right")
    table.add_column("train eras")
    table.add_column("count", justify="right")
    table.add_column("test eras")
    table.add_column("count", justify="right")
    for fold in folds:
        table.add_row(str(fold.index), f"{fold.first_train_era}..{fold.last_train_era}",
                      str(fold.n_train_eras), f"{fold.first_test_era}..{fold.last_test_era}",
                      str(fold.n_test_eras))
    return table


def print_plan(folds: Sequence[Fold], console: Console | None = None) -> None:
    """Print `fold_table(folds)` to `console` (a new rich Console on stdout by default)."""
    from rich.console import Console

    (console or Console()).print(fold_table(folds))
