"""Walk-forward fold planning (numerlab.cv): hand-worked plans, invariants, errors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from numerlab.cv import Fold, fold_table, plan_folds, print_plan, select_eras
from numerlab.eras import carve_holdout, ordered_eras
from numerlab.errors import NumerlabError


def labels(*numbers: int) -> list[str]:
    return [f"{n:04d}" for n in numbers]


def span(first: int, last: int, step: int = 1) -> tuple[str, ...]:
    return tuple(labels(*range(first, last + 1, step)))


TWELVE = labels(*range(1, 13))


def plan_as_spans(folds: list[Fold]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return [(f.train_eras, f.test_eras) for f in folds]


# --- hand-worked plans ------------------------------------------------------------------
# 12 eras, 3 splits: blocks of 12 // 4 = 3 eras; 0001..0003 are only ever trained on.

def test_expanding_without_embargo():
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=0)
    assert plan_as_spans(folds) == [
        (span(1, 3), span(4, 6)),
        (span(1, 6), span(7, 9)),
        (span(1, 9), span(10, 12)),
    ]
    assert [f.index for f in folds] == [0, 1, 2]


def test_expanding_with_embargo():
    # embargo 2: a training era's number + 2 must be below the first test era's number.
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=2)
    assert plan_as_spans(folds) == [
        (span(1, 1), span(4, 6)),
        (span(1, 4), span(7, 9)),
        (span(1, 7), span(10, 12)),
    ]


def test_remainder_lengthens_the_first_training_span():
    # 14 eras, 3 splits: blocks of 14 // 4 = 3, the 2 left over go to the untested head.
    folds = plan_folds(labels(*range(1, 15)), n_splits=3, embargo_eras=0)
    assert plan_as_spans(folds) == [
        (span(1, 5), span(6, 8)),
        (span(1, 8), span(9, 11)),
        (span(1, 11), span(12, 14)),
    ]


def test_expanding_with_stride_keeps_first_era_and_every_nth():
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=0, era_stride=2)
    assert plan_as_spans(folds) == [
        (span(1, 3, 2), span(4, 6)),     # test blocks are never thinned
        (span(1, 6, 2), span(7, 9)),
        (span(1, 9, 2), span(10, 12)),
    ]


def test_embargo_counts_era_numbers_not_positions():
    # Every other era (as a strided load leaves them): 0001, 0003, ..., 0023.
    eras = labels(*range(1, 24, 2))
    folds = plan_folds(eras, n_splits=3, embargo_eras=2)
    # Fold 0 tests 0007..0011; 0005 + 2 is not below 7, 0003 + 2 is.
    assert folds[0].train_eras == ("0001", "0003")
    assert folds[0].test_eras == ("0007", "0009", "0011")
    assert folds[2].train_eras == span(1, 15, 2)   # 15 + 2 < 19, 17 + 2 is not


def test_rolling_without_embargo():
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=0, scheme="rolling", train_eras=3)
    assert plan_as_spans(folds) == [
        (span(1, 3), span(4, 6)),
        (span(4, 6), span(7, 9)),
        (span(7, 9), span(10, 12)),
    ]


def test_rolling_with_embargo():
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=1, scheme="rolling", train_eras=2)
    assert plan_as_spans(folds) == [
        (span(1, 2), span(4, 6)),
        (span(4, 5), span(7, 9)),
        (span(7, 8), span(10, 12)),
    ]


def test_rolling_with_stride_thins_each_window_from_its_first_era():
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=0, scheme="rolling", train_eras=3,
                       era_stride=2)
    assert [f.train_eras for f in folds] == [("0001", "0003"), ("0004", "0006"),
                                             ("0007", "0009")]


def test_numerai_default_on_v5_train_eras():
    # 574 train eras, 5 splits: blocks of 574 // 6 = 95; the first test era is 574 - 475 + 1.
    folds = plan_folds(labels(*range(1, 575)), n_splits=5, embargo_eras=13)
    assert [(f.first_test_era, f.last_test_era) for f in folds] == [
        ("0100", "0194"), ("0195", "0289"), ("0290", "0384"), ("0385", "0479"),
        ("0480", "0574")]
    assert [f.last_train_era for f in folds] == ["0086", "0181", "0276", "0371", "0466"]
    assert all(f.first_train_era == "0001" for f in folds)


def test_fold_helpers():
    fold = Fold(index=1, train_eras=("0001", "0002"), test_eras=("0005", "0006", "0007"))
    assert (fold.first_train_era, fold.last_train_era, fold.n_train_eras) == ("0001", "0002", 2)
    assert (fold.first_test_era, fold.last_test_era, fold.n_test_eras) == ("0005", "0007", 3)
    with pytest.raises(AttributeError):
        fold.index = 2  # frozen


# --- numeric ordering -------------------------------------------------------------------

def test_eras_are_ordered_by_number():
    assert ordered_eras(["1001", "0999", "1000"]) == ["0999", "1000", "1001"]
    assert ordered_eras(["1000", "999", "998"]) == ["998", "999", "1000"]  # not "1000" < "998"
    assert ordered_eras(["era10", "era9", "era11", "era9"]) == ["era9", "era10", "era11"]


def test_plan_orders_unpadded_labels_by_number():
    eras = [f"era{n}" for n in (12, 3, 10, 1, 9, 2, 11, 4, 8, 5, 7, 6)]
    folds = plan_folds(eras, n_splits=3, embargo_eras=0)
    assert folds[0].train_eras == ("era1", "era2", "era3")
    assert folds[0].test_eras == ("era4", "era5", "era6")
    assert folds[2].test_eras == ("era10", "era11", "era12")


def test_plan_across_the_train_validation_boundary():
    # "0999" < "1001" with a gap at 1000: the gap counts as one era of embargo.
    eras = labels(*range(990, 1000), *range(1001, 1003))   # 12 eras
    folds = plan_folds(eras, n_splits=3, embargo_eras=1)
    assert folds[2].test_eras == ("0999", "1001", "1002")
    assert folds[2].train_eras == span(990, 997)


# --- era selection and holdout ----------------------------------------------------------

def test_select_eras():
    train, validation = ["0002", "0001", "0003"], ["0011", "0010"]
    assert select_eras("train", train, validation) == ["0001", "0002", "0003"]
    assert select_eras("all", train, validation) == ["0001", "0002", "0003", "0010", "0011"]


def test_carve_holdout_without_holdout():
    eras = ["0003", "0001", "0002"]
    assert carve_holdout(eras, None, 4) == (["0001", "0002", "0003"], [])
    assert carve_holdout(eras, 0, 4) == (["0001", "0002", "0003"], [])


def test_carve_holdout_with_and_without_embargo():
    ten = labels(*range(1, 11))
    assert carve_holdout(ten, 3, 0) == (labels(*range(1, 8)), labels(8, 9, 10))
    assert carve_holdout(ten, 3, 2) == (labels(*range(1, 6)), labels(8, 9, 10))
    # largest holdout that leaves a fit era with embargo 2: 0001 + 2 < 0004
    assert carve_holdout(ten, 7, 2) == (["0001"], labels(*range(4, 11)))


def test_carve_holdout_counts_era_numbers():
    strided = labels(*range(1, 40, 4))   # 0001, 0005, ..., 0037
    fit, holdout = carve_holdout(strided, 2, 4)
    assert holdout == ["0033", "0037"]
    assert fit == labels(*range(1, 26, 4))  # 0029 + 4 is not below 33


# --- errors -----------------------------------------------------------------------------

@contextmanager
def raises_one_line(*needles: str) -> Iterator[None]:
    """Expect a NumerlabError whose message is one line containing every needle."""
    with pytest.raises(NumerlabError) as info:
        yield
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize("n_splits", [1, 0, -3])
def test_too_few_splits(n_splits):
    with raises_one_line(f"cv.n_splits={n_splits}", ">= 2"):
        plan_folds(TWELVE, n_splits=n_splits, embargo_eras=0)


@pytest.mark.parametrize("n_splits", [2.5, True, "5", None])
def test_splits_must_be_an_integer(n_splits):
    with raises_one_line("cv.n_splits=", ">= 2"):
        plan_folds(TWELVE, n_splits=n_splits, embargo_eras=0)


def test_more_splits_than_eras_allow():
    assert len(plan_folds(TWELVE, n_splits=11, embargo_eras=0)) == 11  # blocks of one era
    with raises_one_line("cv.n_splits=12", "12 eras", "2..11"):
        plan_folds(TWELVE, n_splits=12, embargo_eras=0)
    with raises_one_line("cv.n_splits=2", "at least 3 eras", "got 2"):
        plan_folds(["0001", "0002"], n_splits=2, embargo_eras=0)


def test_negative_embargo():
    with raises_one_line("cv.embargo_eras=-1", ">= 0"):
        plan_folds(TWELVE, n_splits=3, embargo_eras=-1)


def test_embargo_swallowing_the_first_training_span():
    # Fold 0 tests from 0004: embargo 2 leaves 0001 (1 + 2 < 4), embargo 3 leaves nothing.
    assert plan_folds(TWELVE, n_splits=3, embargo_eras=2)[0].train_eras == ("0001",)
    with raises_one_line("cv.embargo_eras=3", "fold 0", "0004", "0..2"):
        plan_folds(TWELVE, n_splits=3, embargo_eras=3)


def test_unknown_scheme_lists_the_allowed():
    with raises_one_line("cv.scheme='sliding'", "expanding", "rolling"):
        plan_folds(TWELVE, n_splits=3, embargo_eras=0, scheme="sliding")


def test_rolling_needs_train_eras():
    with raises_one_line("cv.train_eras", "missing", "rolling"):
        plan_folds(TWELVE, n_splits=3, embargo_eras=0, scheme="rolling")
    with raises_one_line("cv.train_eras=0", ">= 1"):
        plan_folds(TWELVE, n_splits=3, embargo_eras=0, scheme="rolling", train_eras=0)


def test_rolling_window_larger_than_the_first_fold_can_train_on():
    # Fold 0 has 0001..0003 before its test block; embargo 1 leaves 0001..0002.
    plan_folds(TWELVE, n_splits=3, embargo_eras=1, scheme="rolling", train_eras=2)
    with raises_one_line("cv.train_eras=3", "fold 0", "1..2"):
        plan_folds(TWELVE, n_splits=3, embargo_eras=1, scheme="rolling", train_eras=3)


def test_expanding_ignores_train_eras():
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=0, train_eras=1)
    assert folds[2].train_eras == span(1, 9)


def test_bad_stride():
    with raises_one_line("data.era_stride=0", ">= 1"):
        plan_folds(TWELVE, n_splits=3, embargo_eras=0, era_stride=0)


def test_eras_without_or_sharing_a_number():
    with raises_one_line("'X'", "no era number"):
        plan_folds([*TWELVE, "X"], n_splits=3, embargo_eras=0)
    with raises_one_line("'0001'", "'1'", "era number 1"):
        plan_folds([*TWELVE, "1"], n_splits=3, embargo_eras=0)


def test_select_eras_unknown():
    with raises_one_line("cv.eras='both'", "train", "all"):
        select_eras("both", TWELVE, [])


def test_carve_holdout_errors():
    ten = labels(*range(1, 11))
    with raises_one_line("fit.holdout_eras=10", "no era to fit", "0..9"):
        carve_holdout(ten, 10, 0)
    with raises_one_line("fit.holdout_eras=8", "data.embargo_eras=2", "0..7"):
        carve_holdout(ten, 8, 2)
    with raises_one_line("fit.holdout_eras=1", "cv.embargo_eras=9", "0..0"):
        carve_holdout(ten, 1, 9, embargo_key="cv.embargo_eras")
    with raises_one_line("fit.holdout_eras=-1", ">= 0"):
        carve_holdout(ten, -1, 0)
    with raises_one_line("data.embargo_eras=-2", ">= 0"):
        carve_holdout(ten, 2, -2)
    with raises_one_line("fit.holdout_eras=2", "no training eras"):
        carve_holdout([], 2, 0)


# --- display ----------------------------------------------------------------------------

def test_fold_table_and_print_plan():
    folds = plan_folds(TWELVE, n_splits=3, embargo_eras=2)
    table = fold_table(folds)
    assert [c.header for c in table.columns] == ["fold", "train eras", "count", "test eras",
                                                 "count"]
    assert table.row_count == 3
    out = io.StringIO()
    print_plan(folds, Console(file=out, width=100))
    lines = [line for line in out.getvalue().splitlines() if "0010..0012" in line]
    assert len(lines) == 1
    assert "0001..0007" in lines[0] and " 7 " in lines[0]


# --- properties -------------------------------------------------------------------------

@st.composite
def cv_cases(draw):
    """Random era numbers (gaps allowed), splits, embargo, scheme, window and stride."""
    numbers = sorted(draw(st.sets(st.integers(1, 400), min_size=3, max_size=120)))
    n_splits = draw(st.integers(2, len(numbers) - 1))
    embargo = draw(st.integers(0, 30))
    scheme = draw(st.sampled_from(["expanding", "rolling"]))
    window = draw(st.integers(1, len(numbers))) if scheme == "rolling" else None
    stride = draw(st.integers(1, 5))
    return numbers, n_splits, embargo, scheme, window, stride


@settings(max_examples=300, deadline=None)
@given(cv_cases(), st.randoms(use_true_random=False))
def test_plan_properties(case, rng):
    numbers, n_splits, embargo, scheme, window, stride = case
    eras = labels(*numbers)
    shuffled = list(eras)
    rng.shuffle(shuffled)
    # Spec: n // (n_splits + 1) eras per block, the last n_splits blocks are tested.
    block = len(eras) // (n_splits + 1)
    first_test = len(eras) - n_splits * block
    allowed_before = [n for n in numbers[:first_test] if n + embargo < numbers[first_test]]
    try:
        folds = plan_folds(shuffled, n_splits, embargo, scheme, window, stride)
    except NumerlabError as exc:
        # Only the embargo or the rolling window can make a valid n_splits fail.
        assert "\n" not in str(exc)
        if not allowed_before:
            assert "cv.embargo_eras" in str(exc)
        else:
            assert scheme == "rolling" and window > len(allowed_before)
            assert "cv.train_eras" in str(exc)
        return
    assert allowed_before and (scheme == "expanding" or window <= len(allowed_before))

    assert len(folds) == n_splits
    tested = [e for f in folds for e in f.test_eras]
    assert len(tested) == len(set(tested))                  # no era in two test blocks
    assert tested == eras[first_test:]                      # the union is the last eras
    assert {f.n_test_eras for f in folds} == {block}
    number = dict(zip(eras, numbers, strict=True))
    for fold in folds:
        assert fold.train_eras, fold
        start = number[fold.first_test_era]
        assert all(number[e] + embargo < start for e in fold.train_eras)   # walk-forward
        assert list(fold.train_eras) == sorted(fold.train_eras, key=number.get)
        allowed = [e for e in eras if number[e] + embargo < start]
        unthinned = allowed if scheme == "expanding" else allowed[-window:]
        if scheme == "rolling":
            assert len(unthinned) == window
        assert list(fold.train_eras) == unthinned[::stride]
