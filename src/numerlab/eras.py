"""Era arithmetic every floor shares: era numbers and their order, the fit holdout carved
from the end of the training eras, and how many eras a target's labels span.

Eras are ordered and compared by era NUMBER ("0575" -> 575, "era12" -> 12), so gaps in the
numbering (a strided load, validation eras after the data embargo) count as the time they
span. A Numerai target of D days looks D/5 weekly eras ahead: its labels resolve D // 5 eras
after the era they belong to, so an embargo between the eras fitted on and the eras scored
must be at least that long (4 eras for 20-day targets, 12 for 60-day ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from numerlab.errors import NumerlabError
from numerlab.settings import integer

if TYPE_CHECKING:
    import polars as pl

MAIN_TARGET = "target"  # Numerai's main target: a copy of target_ender_20 (20 days)
MAIN_TARGET_DAYS = 20
DAYS_PER_ERA = 5  # eras are weekly: five trading days
_NUMBER = re.compile(r"\d+$")


def era_number(era: str, source: str = "") -> int:
    """The number of an era label ("0575" -> 575, "era12" -> 12), for embargo arithmetic."""
    match = _NUMBER.search(str(era))
    if match is None:
        where = f" in {source}" if source else ""
        raise NumerlabError(f"era {era!r}{where} has no era number")
    return int(match.group())


def sort_eras(eras: Iterable[str]) -> list[str]:
    """Distinct era labels in time order: numbered eras by number, others ("X") after them."""
    def key(era: str) -> tuple[int, int, str]:
        match = _NUMBER.search(era)
        return (0, int(match.group()), era) if match else (1, 0, era)

    return sorted({str(e) for e in eras}, key=key)


def ordered_eras(eras: Iterable[str]) -> list[str]:
    """Distinct era labels in era-number order ("0999" < "1001", "era9" < "era10").
    NumerlabError for a label without a number or two labels with one number ("1", "0001")."""
    ordered = sort_eras(eras)
    seen: dict[int, str] = {}
    for era in ordered:
        number = era_number(era, "cv eras")
        if number in seen:
            raise NumerlabError(f"eras {seen[number]!r} and {era!r} share era number {number}")
        seen[number] = era
    return ordered


def in_era_order(frame: pl.DataFrame, column: str = "era") -> pl.DataFrame:
    """`frame`'s rows in time order of their era labels (`sort_eras`: by era number,
    "9" before "10"; labels without a number last), ties kept in row order."""
    if column not in frame.columns or frame.height < 2:
        return frame
    import polars as pl

    labels = frame.get_column(column).cast(pl.String)
    position = {era: i for i, era in enumerate(sort_eras(labels.unique().to_list()))}
    key = labels.replace_strict(position, return_dtype=pl.Int64)
    return frame if key.is_sorted() else frame.sort(key, maintain_order=True)


def carve_holdout(train_eras: Iterable[str], holdout_eras: int | None, embargo_eras: int, *,
                  embargo_key: str = "data.embargo_eras") -> tuple[list[str], list[str]]:
    """(fit eras, holdout eras): the last `holdout_eras` training eras become the holdout that
    early stopping may look at; fit eras are the earlier ones whose number + `embargo_eras`
    is below the holdout's first era number. `holdout_eras` None or 0: (all eras, []).
    NumerlabError (naming fit.holdout_eras / `embargo_key`) when no fit era would be left."""
    ordered = ordered_eras(train_eras)
    if not integer("fit.holdout_eras", holdout_eras, minimum=0, optional=True):
        return ordered, []
    integer(embargo_key, embargo_eras, minimum=0)
    if not ordered:
        raise NumerlabError(f"fit.holdout_eras={holdout_eras} but there are no training eras")
    numbers = [era_number(e) for e in ordered]
    # A holdout leaves the first era to fit iff it lies wholly beyond first number + embargo.
    max_holdout = min(len(ordered) - 1,
                      sum(1 for n in numbers if n > numbers[0] + embargo_eras))
    if holdout_eras > max_holdout:
        raise NumerlabError(
            f"fit.holdout_eras={holdout_eras} with {embargo_key}={embargo_eras} leaves no era "
            f"to fit among the {len(ordered)} training eras {ordered[0]}..{ordered[-1]} "
            f"(allowed null or 0..{max_holdout})")
    holdout_start = len(ordered) - holdout_eras
    fit = [e for e, n in zip(ordered[:holdout_start], numbers, strict=False)
           if n + embargo_eras < numbers[holdout_start]]
    return fit, ordered[holdout_start:]


def target_days(name: str) -> int | None:
    """How many days a Numerai target looks ahead (`target_cyrusd_60` -> 60, the main
    `target` -> 20), from its name; None when the name does not say."""
    if name == MAIN_TARGET:
        return MAIN_TARGET_DAYS
    tail = str(name).rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def horizon_eras(name: str) -> int:
    """Eras a target's labels span (days // 5): the shortest honest embargo after it; 0
    when its name gives no horizon."""
    days = target_days(name)
    return 0 if days is None else days // DAYS_PER_ERA


def check_embargo(targets: Iterable[str], embargo_eras: int,
                  key: str = "data.embargo_eras") -> None:
    """Every fitted target's labels must resolve before the first scored era: the embargo
    (the setting `key`) between the eras fitted on and the eras scored (and the holdout)
    must be at least the longest target horizon, or the last training labels overlap the
    scored eras' (a 60-day target needs 12; the 20-day ones 4)."""
    for name in targets:
        needed = horizon_eras(name)
        if embargo_eras < needed:
            raise NumerlabError(f"{key}={embargo_eras} is too short for {name}: its labels "
                                f"span {needed} eras, so set {key}>={needed} (training "
                                f"labels would overlap the scored eras)")
