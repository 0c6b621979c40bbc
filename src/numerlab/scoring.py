"""Per-era Numerai scores (CORR, MMC, BMC, FNC, feature exposure) and their summaries.

Every score is computed for all eras at once. Rows are regrouped era by era once
(`EraSegments`); per-era sums are then `np.add.reduceat` over contiguous segments, and
within-era ranks come from sorting the rows of a padded (eras x rows) grid. The numbers
agree with numerai-tools (`numerai_corr`, `correlation_contribution` against the meta
model or a benchmark, `feature_neutral_corr`, `neutralize`, `max_feature_correlation`)
called era by era, to rounding.

FNC and neutralization share one least-squares solver (`least_squares_fit`): per era a
Cholesky factorization of X'X, certified against numerai-tools' rcond-truncated SVD by a
condition estimate, with the SVD itself for the eras it cannot certify.

Pure: numpy, scipy and polars only (a pandas DataFrame is accepted and converted).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtri

from numerlab.errors import NumerlabError
from numerlab.settings import integer

log = logging.getLogger(__name__)

MEMORY_BUDGET_BYTES = 256 * 2**20
"""Upper bound on the scratch arrays one block of eras may allocate."""

NEUTRALIZE_RCOND = 1e-6
"""Singular values below rcond * largest are dropped, as in numerai-tools `neutralize`."""

CONDITION_MARGIN = 100.0
"""How far below NEUTRALIZE_RCOND^-2 the Cholesky path's estimated bound on cond([X, 1])^2
must stay: LAPACK's condition estimate is a lower bound, rarely off by more than 3x."""

FLOAT32_EXACT = 2**24
"""Integers up to this magnitude are exact in float32 (24-bit significand)."""

MAX_SOLVER_THREADS = 8
"""At most this many threads solve eras side by side (`_solver_threads`)."""

MIN_BLOCK_FILL = 0.8
"""A padded block only takes eras at least this fraction as long as its longest."""


# --- rows regrouped era by era ------------------------------------------------------------


@dataclass(frozen=True)
class EraSegments:
    """Rows regrouped era by era, longest era first ("segment order").

    Segment s holds the rows `order[first[s] : first[s] + counts[s]]`, all of era
    `eras[s]`; an array in segment order is `x[order]`. Eras without rows have no segment.
    """

    order: np.ndarray
    eras: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, eras: np.ndarray, n_eras: int, where: np.ndarray | None = None) -> EraSegments:
        """Segments of the rows selected by the boolean mask `where` (all rows if None)."""
        rows = np.arange(len(eras)) if where is None else np.flatnonzero(where)
        codes = eras[rows]
        counts = np.bincount(codes, minlength=n_eras)
        by_size = np.argsort(-counts, kind="stable")
        by_size = by_size[counts[by_size] > 0]
        if len(codes) and not np.any(codes[1:] < codes[:-1]):
            # rows already grouped by era (Numerai files are): each segment is a run of
            # `rows`, so the order is those runs laid out longest first, with no sort
            run_start = np.cumsum(counts) - counts
            segment_start = np.cumsum(counts[by_size]) - counts[by_size]
            shift = np.repeat(run_start[by_size] - segment_start, counts[by_size])
            return cls(rows[np.arange(len(rows)) + shift], by_size, counts[by_size])
        segment_of_era = np.zeros(n_eras, dtype=np.intp)
        segment_of_era[by_size] = np.arange(len(by_size))
        key = segment_of_era[codes]
        # a stable argsort of <= 16-bit integers is numpy's radix sort
        key = key.astype(np.uint16) if len(by_size) <= 2**16 else key
        return cls(rows[np.argsort(key, kind="stable")], by_size, counts[by_size])

    @property
    def first(self) -> np.ndarray:
        return np.cumsum(self.counts) - self.counts

    def sums(self, x: np.ndarray) -> np.ndarray:
        """Per-segment sums of x (segment order; 2-D x is summed per column)."""
        if len(self.counts) == 0:
            return np.zeros((0, *x.shape[1:]))
        return np.add.reduceat(x, self.first, axis=0)

    def means(self, x: np.ndarray) -> np.ndarray:
        counts = self.counts.reshape(-1, *([1] * (x.ndim - 1)))
        return self.sums(x) / counts

    def spread(self, per_segment: np.ndarray) -> np.ndarray:
        """Each segment's value repeated over its rows."""
        return np.repeat(per_segment, self.counts, axis=0)

    def center(self, x: np.ndarray) -> np.ndarray:
        """x minus its segment's mean."""
        spread = self.spread(self.means(x))
        return np.subtract(x, spread, out=spread)

    def keep(self, segments: np.ndarray) -> tuple[EraSegments, np.ndarray]:
        """The segments selected by a boolean mask, and the mask of their rows in segment
        order (to subset arrays already in segment order)."""
        rows = self.spread(segments)
        return EraSegments(self.order[rows], self.eras[segments], self.counts[segments]), rows

    def by_era(self, per_segment: np.ndarray, n_eras: int) -> np.ndarray:
        """A per-segment result indexed by era code instead; NaN for eras without rows."""
        out = np.full(n_eras, np.nan)
        out[self.eras] = per_segment
        return out

    def blocks(self, max_cells: int) -> Iterator[tuple[slice, np.ndarray]]:
        """Consecutive segments as padded grids: (rows in segment order, valid), where
        `valid` is the (segments, width) mask of real cells, so `grid[valid] = x[rows]`.

        A block holds at most `max_cells` cells (but at least one segment), and only
        segments at least MIN_BLOCK_FILL as long as its first, bounding the padding.
        """
        first = self.first
        start = 0
        while start < len(self.counts):
            width = int(self.counts[start])
            too_short = np.searchsorted(-self.counts, -MIN_BLOCK_FILL * width, side="right")
            stop = min(int(too_short), start + max(1, max_cells // width))
            valid = np.arange(width) < self.counts[start:stop, None]
            yield slice(first[start], first[stop - 1] + self.counts[stop - 1]), valid
            start = stop


# --- per-era building blocks (arrays in segment order) ---------------------------------


def _average_ranks_by_row(grid: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """1-based rank of every valid cell within its grid row, ties sharing the mean of
    their positions (pandas `rank(method="average")`). Padding must sort last.
    Overwrites `grid` with the ranks."""
    n_rows, width = grid.shape
    order = np.argsort(grid, axis=1)
    sorted_grid = np.take_along_axis(grid, order, axis=1)
    # padding sorts last, so sorted cells are real exactly where `valid` is
    tied = (sorted_grid[:, 1:] == sorted_grid[:, :-1]) & valid[:, 1:]
    if not tied.any():
        sorted_rank = np.broadcast_to(np.arange(1.0, width + 1), grid.shape)
    else:
        starts_group = np.ones(grid.shape, dtype=bool)
        starts_group[:, 1:] = ~tied
        starts_group = starts_group.ravel()
        group_first = np.flatnonzero(starts_group)
        group_end = np.append(group_first[1:], starts_group.size)
        # mean of the flat 1-based positions first+1 .. end, then shifted to the grid row
        group_rank = (group_first + group_end + 1) / 2
        sorted_rank = group_rank[np.cumsum(starts_group) - 1].reshape(grid.shape)
        sorted_rank -= (np.arange(n_rows) * width)[:, None]
    ranks = grid  # the values are no longer needed: reuse their pages for the ranks
    np.put_along_axis(ranks, order, sorted_rank, axis=1)
    return ranks


def tie_kept_rank(segments: EraSegments, values: np.ndarray) -> np.ndarray:
    """Percentile rank within each era, ties kept: (average_rank - 0.5) / era_count.

    average_rank is 1-based, rows with equal values sharing the mean of their positions,
    exactly as numerai-tools `tie_kept_rank` (pandas `rank(method="average")`). `values`
    are in segment order and NaN-free. Each block of eras is sorted as the rows of a
    padded grid: many short sorts are cache-friendly, several times faster than one.
    """
    percentiles = np.empty(len(values))
    # padding must sort after every value and tie with none of them
    padding = np.nan if len(values) and np.max(values) == np.inf else np.inf
    cells = MEMORY_BUDGET_BYTES // 48  # grid, argsort, sorted copy, ranks: ~48 B a cell
    for rows, valid in segments.blocks(cells):
        grid = np.full(valid.shape, padding)
        grid[valid] = values[rows]
        counts = valid.sum(axis=1, keepdims=True)
        ranks = _average_ranks_by_row(grid, valid)
        # in place: every fresh 8 MB temporary costs its page faults, a visible share here
        ranks -= 0.5
        ranks /= counts
        percentiles[rows] = ranks[valid]
    return percentiles


def rank_unit(values: np.ndarray) -> np.ndarray:
    """Tie-kept percentile rank into (0, 1): (average_rank - 0.5) / n, the one rank
    function of numerlab (`tie_kept_rank` over a single group; numpy only, so the
    exported model pickles it by value)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return values.copy()
    segments = EraSegments.of(np.zeros(len(values), dtype=np.int32), 1)
    out = np.empty_like(values)
    out[segments.order] = tie_kept_rank(segments, values[segments.order])
    return out


def gaussianize(percentiles: np.ndarray) -> np.ndarray:
    """Standard normal quantile of each percentile: scipy.stats.norm.ppf(p), i.e. ndtri(p)."""
    return ndtri(percentiles)


def power_1_5(x: np.ndarray) -> np.ndarray:
    """sign(x) * |x| ** 1.5, computed as x * sqrt(|x|) (within an ulp, several times faster)."""
    out = np.abs(x)
    np.sqrt(out, out=out)
    out *= x
    return out


def gaussian_rank(segments: EraSegments, values: np.ndarray) -> np.ndarray:
    """gaussianize(tie_kept_rank(values)) within each era."""
    percentiles = tie_kept_rank(segments, values)
    return ndtri(percentiles, out=percentiles)  # = gaussianize, in place


def pearson(segments: EraSegments, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation per era: sum(dx dy) / sqrt(sum(dx^2) sum(dy^2)), d = minus the
    era mean. Two passes (center, then sum products) for precision; NaN where undefined."""
    dx = segments.center(x)
    dy = segments.center(y)
    product = np.multiply(dx, dy)  # one scratch array for the three products
    sxy = segments.sums(product)
    sxx = segments.sums(np.multiply(dx, dx, out=product))
    syy = segments.sums(np.multiply(dy, dy, out=product))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sxy / np.sqrt(sxx * syy)


def corr_of_gaussian(segments: EraSegments, gaussian_pred: np.ndarray, target: np.ndarray):
    """CORR per era from gaussianized predictions (segment order, NaN-free):
    pearson(power_1_5(g), power_1_5(target - era mean of target))."""
    centered = segments.center(target)
    return pearson(segments, power_1_5(gaussian_pred), power_1_5(centered))


def contribution_of_gaussian(
    segments: EraSegments, p: np.ndarray, m: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """MMC per era from gaussianized prediction p and meta model m (segment order):

    neutral = p - m (p.m)/(m.m);  t = 4 target if all the era's targets lie in [0, 1];
    MMC = (t - era mean of t) . neutral / n.
    """
    outside_unit = segments.sums(((target < 0) | (target > 1)).astype(np.float64))
    t = segments.center(np.where(segments.spread(outside_unit) == 0, target * 4, target))
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = segments.sums(p * m) / segments.sums(m * m)
        neutral = p - m * segments.spread(beta)
    return segments.sums(t * neutral) / segments.counts


# --- least squares against an era's features ------------------------------------------


def _constant_columns(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(mask of the columns of x that vary, stretch = 1 + the sum of squares of the values
    of the constant columns).

    A constant column c is c times the ones column, so [x, 1] = A E with A = [the varying
    columns, 1] spans what [x, 1] spans, and E E' = diag(1, .., 1, stretch): the nonzero
    singular values of [x, 1] lie within [sigma_min(A), sigma_max(A) sqrt(stretch)]. (Eras
    where a feature is constant are real: Numerai fills features missing in early eras with
    one value.)
    """
    low, high = x.min(axis=0), x.max(axis=0)
    varying = low != high
    constants = low[~varying].astype(np.float64)
    return varying, 1.0 + float(constants @ constants)


class _Scratch:
    """Buffers one thread reuses from era to era: a fresh multi-megabyte array per era
    costs its page faults, a visible share of a solve."""

    def __init__(self) -> None:
        self._buffers: dict[Any, np.ndarray] = {}

    def cast(self, x: np.ndarray, dtype: type) -> np.ndarray:
        """x as a contiguous array of `dtype`, in this scratch's buffer for that dtype;
        Fortran-ordered when x's columns are contiguous (a polars frame's `to_numpy`), so
        the copy runs along memory either way."""
        n, k = x.shape
        buffer = self._buffers.get(dtype)
        if buffer is None or buffer.size < n * k:
            buffer = self._buffers[dtype] = np.empty(n * k, dtype=dtype)
        by_column = k > 1 and x.strides[0] == x.itemsize
        out = buffer[: n * k].reshape((k, n)).T if by_column else buffer[: n * k].reshape(n, k)
        np.copyto(out, x, casting="unsafe")
        return out


def _gram(x: np.ndarray, x64: np.ndarray, scratch: _Scratch) -> np.ndarray:
    """A'A for A = [x, 1] (`x64`: x as float64): X'X by BLAS syrk (numpy hands it the
    transposed pair), bordered by the column sums and the row count.

    For integer features with rows * max|x|^2 <= FLOAT32_EXACT, every partial sum of X'X
    and of the column sums is an integer float32 holds exactly, whatever order BLAS adds
    in: single precision, twice as fast, then gives the float64 result bit for bit.
    """
    n, k = x.shape
    gram = np.empty((k + 1, k + 1))
    largest = max(abs(int(x.min())), abs(int(x.max())), 1) if x.dtype.kind in "iu" else 0
    if largest and n * largest**2 <= FLOAT32_EXACT:
        single = scratch.cast(x, np.float32)
        gram[:k, :k] = single.T @ single
        sums = np.ones(n, dtype=np.float32) @ single
    else:
        gram[:k, :k] = x64.T @ x64
        sums = np.ones(n) @ x64
    gram[:k, k] = gram[k, :k] = sums
    gram[k, k] = n
    return gram


def _cholesky_fit(x: np.ndarray, y: np.ndarray, scratch: _Scratch | None = None
                  ) -> np.ndarray | None:
    """A (A'A)^-1 A' y with A = [the varying columns of x, 1], from the Cholesky factor of
    A'A; or None where that is not certified to equal the rcond-truncated least squares fit
    of [x, 1].

    Certified when A'A is positive definite and kappa * stretch * CONDITION_MARGIN <
    NEUTRALIZE_RCOND^-2, kappa being LAPACK's estimate of the 1-norm condition number of A'A
    (>= its 2-norm one, cond(A)^2; stretch from `_constant_columns`). Then every nonzero
    singular value of [x, 1] is above rcond times the largest, lstsq drops none of them,
    and its fit is the orthogonal projection onto the column space, which this computes.
    One step of iterative refinement (refit the residual, computed from A itself) brings
    the normal equations' error, ~eps cond(A)^2, down to ~eps cond(A), that of an
    orthogonal factorization.

    A is never built: the products with it are those with x (one float64 copy, in
    `scratch`), plus the sums the ones column stands for; the constant columns get
    coefficient 0. y is (rows,) or (rows, columns).
    """
    from scipy.linalg import lapack

    varying, stretch = _constant_columns(x)
    n, k = x.shape
    if n <= int(varying.sum()):
        return None
    scratch = scratch or _Scratch()
    x64 = scratch.cast(x, np.float64)
    gram = _gram(x, x64, scratch)
    kept = None if varying.all() else np.append(varying, True)
    if kept is not None:
        gram = gram[np.ix_(kept, kept)]
    norm_1 = float(np.max(np.sum(np.abs(gram), axis=0)))
    # gram is symmetric: its transpose is the Fortran-ordered array LAPACK takes without a copy
    factor, info = lapack.dpotrf(gram.T, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        return None
    reciprocal_condition, info = lapack.dpocon(factor, norm_1, uplo="U")
    limit = stretch * CONDITION_MARGIN * NEUTRALIZE_RCOND**2
    if info != 0 or not reciprocal_condition > limit:
        return None

    def solve(v: np.ndarray) -> np.ndarray:
        """(A'A)^-1 A' v, spread over x's columns (0 for the constant ones) + the ones."""
        at_v = np.concatenate([x64.T @ v, v.sum(axis=0, keepdims=True)])
        coefficients, _ = lapack.dpotrs(factor, at_v if kept is None else at_v[kept],
                                        lower=0)
        if kept is None:
            return coefficients
        spread = np.zeros((k + 1, *v.shape[1:]))
        spread[kept] = coefficients
        return spread

    def times_a(coefficients: np.ndarray) -> np.ndarray:
        return x64 @ coefficients[:k] + coefficients[k]

    fitted = times_a(solve(y))
    fitted += times_a(solve(y - fitted))
    return fitted


def _lstsq_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """X lstsq(X, y, rcond) with X = [x, 1]: numerai-tools' own computation (an SVD)."""
    design = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    coefficients = np.linalg.lstsq(design, y, rcond=NEUTRALIZE_RCOND)[0]
    return design @ coefficients


def least_squares_fit(x: np.ndarray, y: np.ndarray, scratch: _Scratch | None = None
                      ) -> np.ndarray:
    """The part of y explained by one era's features: X pinv(X) y with X = [x, 1] and
    singular values below NEUTRALIZE_RCOND times the largest dropped, i.e. numerai-tools
    `neutralize`'s `X lstsq(X, y, rcond=1e-6)`. y is (rows,) or (rows, columns).

    Solved through a Cholesky factorization of X'X (constant columns set aside), several
    times faster than an SVD; eras where that cannot be certified equal (rank-deficient:
    fewer rows than columns, duplicate or collinear features, or near it) take lstsq.
    """
    fitted = _cholesky_fit(x, y, scratch)
    return _lstsq_fit(x, y) if fitted is None else fitted


def _row_bytes(features: pl.DataFrame | np.ndarray) -> int:
    """Bytes one row of features takes (at least 1)."""
    if isinstance(features, np.ndarray):
        return max(1, features.itemsize * features.shape[1])
    return max(1, int(features.estimated_size() // max(1, features.height)))


def _take_rows(features: pl.DataFrame | np.ndarray, rows: np.ndarray) -> np.ndarray:
    """features[rows] as a 2-D numpy array; a slice, with no gather, for a run of rows."""
    is_run = len(rows) > 0 and rows[-1] - rows[0] == len(rows) - 1 and bool(
        np.all(rows[1:] > rows[:-1]))
    if isinstance(features, np.ndarray):
        return features[rows[0] : rows[-1] + 1] if is_run else features[rows]
    taken = features.slice(int(rows[0]), len(rows)) if is_run else features[rows]
    return taken.to_numpy()


def _era_feature_blocks(
    segments: EraSegments,
    features: pl.DataFrame | np.ndarray,
    memory_budget: int = MEMORY_BUDGET_BYTES,
) -> Iterator[list[tuple[slice, np.ndarray]]]:
    """Blocks of (rows in segment order, that era's feature rows), covering every segment.

    Eras are visited in the order their rows come, and fetched a block at a time (at most
    `memory_budget` bytes of features, at least one era): for rows grouped by era, as
    Numerai ships them, a block is one slice of `features`, not a gather.
    """
    first, counts = segments.first, segments.counts
    visit = np.argsort(segments.order[first], kind="stable") if len(counts) else counts
    row_bytes = _row_bytes(features)
    start = 0
    while start < len(visit):
        stop, n_rows = start + 1, int(counts[visit[start]])
        while stop < len(visit) and (n_rows + counts[visit[stop]]) * row_bytes <= memory_budget:
            n_rows += int(counts[visit[stop]])
            stop += 1
        block = visit[start:stop]
        positions = np.concatenate([np.arange(first[s], first[s] + counts[s]) for s in block])
        x = _take_rows(features, segments.order[positions])
        offsets = np.cumsum(counts[block]) - counts[block]
        yield [(slice(first[s], first[s] + counts[s]), x[offset : offset + counts[s]])
               for s, offset in zip(block, offsets, strict=True)]
        start = stop


def warn_if_underdetermined(segments: EraSegments, n_features: int, what: str) -> None:
    """One warning line when some era has no more rows than the `n_features` features a
    neutralization fits (the ones column makes n_features + 1 columns): there the features
    fit the values exactly or nearly, so the neutralized values (and FNC) mean nothing,
    and the solve falls back to the SVD, far slower."""
    short = segments.counts <= n_features
    if not short.any():
        return
    log.warning("%s: %d of %d eras have no more rows than the %d features neutralized "
                "against (fewest: %d rows): there the features fit the values (near) "
                "exactly, so %s means little, and each such era takes the slow SVD path",
                what, int(short.sum()), len(short), n_features, int(segments.counts.min()),
                what)


def _solver_threads(n_eras: int) -> int:
    """Threads that solve eras side by side, each with single-threaded BLAS: small
    per-era products scale across eras, not inside BLAS, whose spinning threads stall
    on a machine other jobs share."""
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    return max(1, min(n_eras, cores, MAX_SOLVER_THREADS))


def neutralize(
    segments: EraSegments,
    values: np.ndarray,
    features: pl.DataFrame | np.ndarray,
    memory_budget: int = MEMORY_BUDGET_BYTES,
    proportion: float = 1.0,
    what: str = "neutralization",
) -> np.ndarray:
    """values - proportion X pinv(X) values within each era, X = [the era's features, 1]:
    numerai-tools `neutralize` (rcond 1e-6), era by era, through `least_squares_fit`.

    `values` (1-D, or 2-D with a column per series) are in segment order; `features` (a
    frame or a 2-D array) in row order, fetched `memory_budget` bytes at a time and cast to
    float one era at a time. Eras are solved on `_solver_threads` threads. Unlike
    numerai-tools, values constant in an era are not turned into NaN: their fit is the
    constant itself. `what` names the work in the warning of `warn_if_underdetermined`.
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    warn_if_underdetermined(segments, features.shape[1], what)
    neutral = np.empty(np.shape(values))
    local = threading.local()

    def solve(era: tuple[slice, np.ndarray]) -> None:
        rows, x = era
        if not hasattr(local, "scratch"):
            local.scratch = _Scratch()
        y = values[rows]
        neutral[rows] = y - proportion * least_squares_fit(x, y, local.scratch)

    threads = _solver_threads(len(segments.counts))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        for block in _era_feature_blocks(segments, features, memory_budget):
            list(pool.map(solve, block))
    return neutral


# --- per-era scores on row-order arrays -----------------------------------------------------


def numerai_corr_per_era(
    predictions: np.ndarray, target: np.ndarray, eras: np.ndarray, n_eras: int
) -> np.ndarray:
    """Numerai CORR per era code (numerai-tools `numerai_corr`).

    Over the rows of the era whose target is known:
    CORR = pearson(power_1_5(gaussianize(tie_kept_rank(pred))), power_1_5(target - mean)).
    NaN for an era without such rows. `predictions` must be NaN-free.
    """
    segments = EraSegments.of(eras, n_eras, where=~np.isnan(target))
    g = gaussian_rank(segments, predictions[segments.order])
    return segments.by_era(corr_of_gaussian(segments, g, target[segments.order]), n_eras)


def correlation_contribution_per_era(
    predictions: np.ndarray,
    meta_model: np.ndarray,
    target: np.ndarray,
    eras: np.ndarray,
    n_eras: int,
) -> np.ndarray:
    """MMC per era code (numerai-tools `correlation_contribution`).

    Over the rows where prediction, meta model and target are all known:
    p, m = gaussianize(tie_kept_rank(.)) of prediction and meta model;
    neutral = p - m (p.m)/(m.m); t = 4 target when all the era's targets are in [0, 1];
    MMC = (t - mean t) . neutral / n. NaN for an era without such rows.
    """
    known = ~np.isnan(target) & ~np.isnan(meta_model) & ~np.isnan(predictions)
    segments = EraSegments.of(eras, n_eras, where=known)
    p = gaussian_rank(segments, predictions[segments.order])
    m = gaussian_rank(segments, meta_model[segments.order])
    mmc = contribution_of_gaussian(segments, p, m, target[segments.order])
    return segments.by_era(mmc, n_eras)


def feature_neutral_corr_per_era(
    predictions: np.ndarray,
    features: pl.DataFrame | np.ndarray,
    target: np.ndarray,
    eras: np.ndarray,
    n_eras: int,
    memory_budget: int = MEMORY_BUDGET_BYTES,
) -> np.ndarray:
    """FNC per era code (numerai-tools `feature_neutral_corr`):

    FNC = numerai_corr(neutralize(gaussianize(tie_kept_rank(pred)), [features, 1]), target)
    with the rank and the neutralization over all rows of the era, known target or not,
    as numerai-tools does. Its variance normalization is a positive per-era scale, which
    cannot change the ranks CORR takes, so it is skipped. Eras without a known target
    (NaN FNC) are not neutralized. `features`: a frame or a 2-D array, in row order.
    """
    has_target = np.zeros(n_eras, dtype=bool)
    has_target[eras[~np.isnan(target)]] = True
    segments = EraSegments.of(eras, n_eras, where=has_target[eras])
    g = gaussian_rank(segments, predictions[segments.order])
    neutral = np.zeros(len(predictions))  # rows outside `segments` are never read
    neutral[segments.order] = neutralize(segments, g, features, memory_budget, what="FNC")
    return numerai_corr_per_era(neutral, target, eras, n_eras)


# --- frame-level entry points -------------------------------------------------------------


def _as_polars(df: Any) -> pl.DataFrame:
    if isinstance(df, pl.DataFrame):
        return df
    import pandas as pd  # only to recognise pandas input

    if isinstance(df, pd.DataFrame):
        return pl.from_pandas(df)
    raise NumerlabError(f"expected a polars or pandas DataFrame, got {type(df).__name__}")


def _require_columns(df: pl.DataFrame, columns: Sequence[str]) -> None:
    present = set(df.columns)
    for name in columns:
        if name not in present:
            raise NumerlabError(f"column '{name}' not found in the scored frame")


def _float_column(df: pl.DataFrame, name: str) -> np.ndarray:
    """The column as float64, nulls as NaN."""
    column = df.get_column(name)
    if not column.dtype.is_numeric():
        raise NumerlabError(f"column '{name}' must be numeric, got {column.dtype}")
    return column.cast(pl.Float64).to_numpy()


def _prediction_column(df: pl.DataFrame, name: str) -> np.ndarray:
    values = _float_column(df, name)
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        raise NumerlabError(f"prediction column '{name}' has {n_nan} NaN values")
    return values


def _feature_frame(df: pl.DataFrame, features: Sequence[str]) -> pl.DataFrame:
    """The feature columns, checked numeric and free of null/NaN."""
    frame = df.select(features)
    for name, dtype in frame.schema.items():
        if not dtype.is_numeric():
            raise NumerlabError(f"feature column '{name}' must be numeric, got {dtype}")
    missing = frame.select(
        pl.col(name).is_null().sum() + (pl.col(name).is_nan().sum() if dtype.is_float() else 0)
        for name, dtype in frame.schema.items()
    ).row(0)
    for name, n_missing in zip(frame.columns, missing, strict=True):
        if n_missing:
            raise NumerlabError(f"feature column '{name}' has {n_missing} missing values")
    return frame


def _is_matrix(features: Any) -> bool:
    return isinstance(features, np.ndarray)


def _feature_matrix(features: np.ndarray, n_rows: int) -> np.ndarray:
    """An (n_rows, k) numeric feature matrix, checked: its shape, dtype, no NaN."""
    if features.ndim != 2 or features.shape[0] != n_rows:
        raise NumerlabError(f"feature matrix of shape {features.shape} for {n_rows} scored rows")
    if features.dtype.kind not in "iuf":
        raise NumerlabError(f"feature matrix must be numeric, got {features.dtype}")
    if features.dtype.kind == "f" and np.isnan(features).any():
        column = int(np.flatnonzero(np.isnan(features).any(axis=0))[0])
        raise NumerlabError(f"feature matrix column {column} has missing values")
    return features


def era_codes(eras: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """(codes, labels): labels are the sorted distinct eras; codes (intp) index labels."""
    if eras.null_count():
        raise NumerlabError(f"era column '{eras.name}' has {eras.null_count()} null values")
    if eras.dtype in (pl.Categorical, pl.Enum):
        eras = eras.cast(pl.String)
    if eras.is_sorted():  # Numerai files come sorted by era: codes are run ids
        codes = eras.rle_id().to_numpy().astype(np.intp)
        return codes, eras.gather(np.flatnonzero(np.diff(codes, prepend=-1)))
    labels = eras.unique().sort()
    index = pl.int_range(len(labels), eager=True)
    codes = eras.replace_strict(labels, index, return_dtype=pl.Int64)
    return codes.to_numpy().astype(np.intp), labels


def per_era_scores(
    df: Any,
    prediction: str = "prediction",
    target: str = "target",
    era: str = "era",
    meta_model: str | None = None,
    features: Sequence[str] | np.ndarray | None = None,
    benchmark: str | None = None,
) -> pl.DataFrame:
    """One row per era with a known target, sorted by era: `era`, `corr`, plus `mmc` when
    `meta_model` names a column (NaN on eras it does not cover), `fnc` when `features`
    lists columns (or is an (n, k) numeric matrix aligned row for row with `df`, such as a
    `Dataset`'s int8 features: no frame copy of them), and, when `benchmark` names a
    column (e.g. Numerai's `v53_lgbm_ender20`):

    - `bmc`: correlation_contribution(prediction, benchmark, target), as MMC is against
      the meta model (rows where the benchmark is null are left out; NaN on eras it misses);
    - `corr_with_benchmark`: raw Pearson correlation of the prediction with the benchmark
      (no ranking), over the same rows as `bmc`: how much the model is the benchmark;
    - `benchmark_corr`: numerai_corr(benchmark, target): the benchmark's own CORR.

    Eras without any known target (e.g. Numerai's test eras) are left out. Raises
    NumerlabError for a missing column, NaN predictions, or an era with a single target.
    """
    frame = _as_polars(df)
    references = {"mmc": meta_model, "bmc": benchmark}
    references = {score: name for score, name in references.items() if name is not None}
    required = [era, prediction, target, *references.values()]
    required += list(features) if features is not None and not _is_matrix(features) else []
    _require_columns(frame, required)

    codes, labels = era_codes(frame.get_column(era))
    n_eras = len(labels)
    pred = _prediction_column(frame, prediction)
    tgt = _float_column(frame, target)

    known = ~np.isnan(tgt)
    if not known.any():
        raise NumerlabError(f"target column '{target}' has no known (non-NaN) values")
    segments = EraSegments.of(codes, n_eras, where=known)
    if segments.counts[-1] == 1:
        single = labels[int(segments.eras[segments.counts == 1].min())]
        raise NumerlabError(f"era '{single}' has 1 row with a target; CORR needs at least 2")

    reference_values = {score: _float_column(frame, name) for score, name in references.items()}
    reference_rows = {
        score: _reference_rows(segments, values) for score, values in reference_values.items()
    }
    target_sorted = tgt[segments.order]

    def prediction_side() -> tuple[np.ndarray, np.ndarray]:
        g = gaussian_rank(segments, pred[segments.order])
        return g, power_1_5(g)

    def target_side() -> np.ndarray:
        return power_1_5(segments.center(target_sorted))

    def reference_side(score: str):
        def rank() -> np.ndarray | None:
            rows = reference_rows[score]
            if rows is None:
                return None
            kept, selected = rows
            return gaussian_rank(kept, reference_values[score][segments.order][selected])

        return rank

    # The tasks are independent and numpy sorts without the GIL: they share the cores.
    (g_pred, g_pred_15), target_15, *g_references = _concurrently(
        prediction_side, target_side, *(reference_side(score) for score in references))
    g_reference = dict(zip(references, g_references, strict=True))
    corr = pearson(segments, g_pred_15, target_15)  # = corr_of_gaussian(segments, g_pred, tgt)
    scores = {"corr": segments.by_era(corr, n_eras)}

    def contribution(score: str) -> np.ndarray:
        values, rows = reference_values[score], reference_rows[score]
        if rows is None:  # some era covered only partly: rank again on the rows it covers
            return correlation_contribution_per_era(pred, values, tgt, codes, n_eras)
        kept, selected = rows
        return kept.by_era(
            contribution_of_gaussian(kept, g_pred[selected], g_reference[score],
                                     tgt[kept.order]), n_eras)

    if "mmc" in references:
        scores["mmc"] = contribution("mmc")
    if features is not None:
        feature_rows = (_feature_matrix(features, frame.height) if _is_matrix(features)
                        else _feature_frame(frame, features))
        scores["fnc"] = feature_neutral_corr_per_era(pred, feature_rows, tgt, codes, n_eras)
    if "bmc" in references:
        bench = reference_values["bmc"]
        scores["bmc"] = contribution("bmc")
        both = EraSegments.of(codes, n_eras, where=known & ~np.isnan(bench))
        scores["corr_with_benchmark"] = both.by_era(
            pearson(both, pred[both.order], bench[both.order]), n_eras)
        rows = reference_rows["bmc"]
        if rows is None:
            scores["benchmark_corr"] = _numerai_corr_of_partial(bench, tgt, codes, n_eras)
        else:  # the benchmark covers every target of its eras: CORR's target side applies
            kept, selected = rows
            benchmark_corr = pearson(kept, power_1_5(g_reference["bmc"]), target_15[selected])
            scores["benchmark_corr"] = kept.by_era(benchmark_corr, n_eras)

    scored = np.zeros(n_eras, dtype=bool)
    scored[segments.eras] = True
    columns = [labels.filter(pl.Series(scored)).alias(era)]
    columns += [
        pl.Series(name, values[scored], dtype=pl.Float64) for name, values in scores.items()
    ]
    return pl.DataFrame(columns)


def _numerai_corr_of_partial(
    values: np.ndarray, target: np.ndarray, eras: np.ndarray, n_eras: int
) -> np.ndarray:
    """numerai_corr(values, target) per era code where `values` may be NaN: as
    numerai-tools, the target is centered over all its known rows of the era first, then
    the rows where `values` is NaN are dropped (before ranking and the power 1.5)."""
    known_target = ~np.isnan(target)
    target_rows = EraSegments.of(eras, n_eras, where=known_target)
    era_mean = target_rows.by_era(target_rows.means(target[target_rows.order]), n_eras)
    both = EraSegments.of(eras, n_eras, where=known_target & ~np.isnan(values))
    g = gaussian_rank(both, values[both.order])
    centered = target[both.order] - era_mean[eras[both.order]]
    return both.by_era(pearson(both, power_1_5(g), power_1_5(centered)), n_eras)


def _reference_rows(
    segments: EraSegments, reference: np.ndarray
) -> tuple[EraSegments, np.ndarray | slice] | None:
    """The eras (and their rows, in CORR's segment order) on which a contribution score
    (MMC against the meta model, BMC against a benchmark) can reuse CORR's prediction ranks:
    those where the reference is known on every scored row, which is the usual case. None
    when it covers some era only partly (then the score ranks on its own)."""
    known = ~np.isnan(reference[segments.order])
    if known.all():
        return segments, slice(None)
    covered = segments.sums(known.astype(np.float64)) > 0
    if not np.array_equal(known, segments.spread(covered)):
        return None
    return segments.keep(covered)


def _concurrently(*tasks):
    """Run the given callables (None: skipped) on a thread each; their results in order."""
    from concurrent.futures import ThreadPoolExecutor

    live = [task for task in tasks if task is not None]
    if len(live) < 2:
        results = iter([task() for task in live])
    else:
        with ThreadPoolExecutor(max_workers=len(live)) as pool:
            results = iter([f.result() for f in [pool.submit(task) for task in live]])
    return [next(results) if task is not None else None for task in tasks]


def feature_correlations(
    predictions: np.ndarray,
    columns: Any,
    era_codes: np.ndarray,
    n_eras: int,
    memory_budget: int = MEMORY_BUDGET_BYTES,
) -> np.ndarray:
    """(n_eras, k) |pearson(predictions, feature_j)| within each era: the one computation
    behind feature exposure (its max over features, per era) and the per-feature exposure
    of the diagnostics (its mean over eras). NaN where undefined (the feature or the
    predictions constant in the era, an era without rows).

    columns: an (n, k) numeric matrix (int8 bins are converted to float a block of columns
             at a time, never all at once), or a pair (k, fetch) with fetch(first, stop) ->
             the (n, stop - first) columns, rows as `predictions`.
    """
    if isinstance(columns, tuple):
        k, fetch = columns
    else:
        k, fetch = columns.shape[1], lambda first, stop: columns[:, first:stop]
    segments = EraSegments.of(np.asarray(era_codes), n_eras)
    pred = segments.center(np.asarray(predictions, dtype=np.float64)[segments.order])
    pred_ss = segments.sums(pred * pred)
    out = np.full((len(segments.counts), k), np.nan)
    # the float copy, its centered version and the product: rows x columns each
    per_block = max(1, memory_budget // (3 * 8 * max(len(pred), 1)))
    for first in range(0, k, per_block):
        stop = min(k, first + per_block)
        block = segments.center(
            np.asarray(fetch(first, stop))[segments.order].astype(np.float64))
        cov = segments.sums(block * pred[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.abs(cov / np.sqrt(pred_ss[:, None] * segments.sums(block * block)))
        corr[~np.isfinite(corr)] = np.nan
        out[:, first:stop] = corr
    by_era = np.full((n_eras, k), np.nan)
    by_era[segments.eras] = out
    return by_era


def max_per_era(correlations: np.ndarray) -> np.ndarray:
    """(n_eras,) feature exposure from `feature_correlations`: the largest |corr| of each
    era, features undefined there skipped; NaN where none is defined."""
    defined = ~np.isnan(correlations).all(axis=1)
    out = np.full(len(correlations), np.nan)
    out[defined] = np.nanmax(correlations[defined], axis=1)
    return out


def per_era_feature_exposure(
    df: Any,
    prediction: str = "prediction",
    era: str = "era",
    features: Sequence[str] = (),
    memory_budget: int = MEMORY_BUDGET_BYTES,
) -> pl.DataFrame:
    """One row per era, sorted: `era`, `feature_exposure` = max_j |pearson(pred, feature_j)|
    over all rows of the era, on the raw predictions (numerai-tools
    `max_feature_correlation`). Features constant in an era are skipped; NaN if all are.
    """
    frame = _as_polars(df)
    if not features:
        raise NumerlabError("per_era_feature_exposure needs at least one feature column")
    _require_columns(frame, [era, prediction, *features])
    codes, labels = era_codes(frame.get_column(era))
    pred = _prediction_column(frame, prediction)
    feature_frame = _feature_frame(frame, features)
    names = list(features)
    correlations = feature_correlations(
        pred, (len(names), lambda first, stop: feature_frame.select(names[first:stop])
               .to_numpy()), codes, len(labels), memory_budget)
    return pl.DataFrame([labels.alias(era),
                         pl.Series("feature_exposure", max_per_era(correlations))])


# --- summaries ----------------------------------------------------------------------------


def sharpe(per_era: np.ndarray) -> float:
    """mean / std of the per-era scores, std with ddof=0 (numerai-tools `sharpe_ratio`).
    NaN when undefined (no eras, or zero std)."""
    values = np.asarray(per_era, dtype=np.float64)
    std = float(np.std(values)) if len(values) else 0.0
    return float(np.mean(values)) / std if std > 0 else math.nan


def max_drawdown(per_era: np.ndarray) -> float:
    """Largest fall of the cumulative score from its running peak, the peak starting at 0
    (so an initial loss counts): max_t (max_{s<=t} C_s - C_t), C_0 = 0,
    C_t = x_1 + ... + x_t. Non-negative; 0 for no eras."""
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(per_era, dtype=np.float64))])
    return float(np.max(np.maximum.accumulate(cumulative) - cumulative))


def _json_float(x: float) -> float | None:
    """A finite float, or None (JSON null) for an undefined summary."""
    x = float(x)
    return x if math.isfinite(x) else None


def _score_summary(prefix: str, values: np.ndarray) -> dict[str, float | None]:
    defined = len(values) > 0
    return {
        f"{prefix}_mean": _json_float(np.mean(values)) if defined else None,
        f"{prefix}_std": _json_float(np.std(values)) if defined else None,
        f"{prefix}_sharpe": _json_float(sharpe(values)),
        f"{prefix}_max_drawdown": _json_float(max_drawdown(values)) if defined else None,
    }


def _defined(per_era: pl.DataFrame, column: str) -> np.ndarray:
    values = per_era.get_column(column).cast(pl.Float64).fill_null(np.nan).to_numpy()
    return values[~np.isnan(values)]


def _in_era_order(per_era: pl.DataFrame) -> pl.DataFrame:
    """Rows in time order of their eras (`numerlab.eras.in_era_order`); a
    `per_era_scores` frame of Numerai's zero-padded eras is already in this order."""
    from numerlab.eras import in_era_order

    return in_era_order(per_era)


def _recent_summary(per_era: pl.DataFrame, recent_eras: int) -> dict[str, float | int | None]:
    """recent_<score>_mean and recent_<score>_sharpe for corr, mmc and bmc (those present)
    over the last `recent_eras` eras of the frame (all if fewer), and recent_n_eras."""
    recent = per_era.tail(integer("scoring.recent_eras", recent_eras, minimum=1))
    summary: dict[str, float | int | None] = {}
    for score in ("corr", "mmc", "bmc"):
        if score in recent.columns:
            values = _defined(recent, score)
            summary[f"recent_{score}_mean"] = _json_float(np.mean(values)) if len(values) else None
            summary[f"recent_{score}_sharpe"] = _json_float(sharpe(values))
    summary["recent_n_eras"] = recent.height
    return summary


def summarize(per_era: Any, recent_eras: int | None) -> dict[str, float | int | None]:
    """Flat, JSON-ready summary of a `per_era_scores` frame, taken in era order (numeric
    where eras are integer labels, see `_in_era_order`; otherwise the frame's row order).

    corr_mean corr_std corr_sharpe corr_max_drawdown n_eras; with an `mmc` column,
    mmc_mean mmc_std mmc_sharpe mmc_max_drawdown mmc_n_eras over the eras where MMC is
    known; with `bmc`, the same five bmc_* keys; with `corr_with_benchmark`, its mean under
    that name; with `benchmark_corr`, benchmark_corr_mean; with `fnc`, fnc_mean; with
    `feature_exposure` (joined from `per_era_feature_exposure`), max_feature_exposure = the
    mean over eras of the per-era max |feature correlation| (the typical era's worst
    exposure, less noisy than the single worst era). Unless `recent_eras` is None:
    recent_corr_mean recent_corr_sharpe (and recent_mmc_*, recent_bmc_* with those columns)
    over the last `recent_eras` eras (`scoring.recent_eras`), and recent_n_eras, their
    number (all if fewer; Numerai's diagnostics look at the last 200). std is ddof=0, so
    sharpe == mean / std. Each score uses the eras where it is defined; an undefined summary
    (no eras, zero std) is None.
    """
    frame = _in_era_order(_as_polars(per_era))
    _require_columns(frame, ["corr"])
    summary: dict[str, float | int | None] = {}
    summary.update(_score_summary("corr", _defined(frame, "corr")))
    summary["n_eras"] = frame.height
    for score in ("mmc", "bmc"):
        if score in frame.columns:
            values = _defined(frame, score)
            summary.update(_score_summary(score, values))
            summary[f"{score}_n_eras"] = len(values)
    means = {
        "corr_with_benchmark": "corr_with_benchmark",
        "benchmark_corr": "benchmark_corr_mean",
        "fnc": "fnc_mean",
        "feature_exposure": "max_feature_exposure",
    }
    for column, key in means.items():
        if column in frame.columns:
            values = _defined(frame, column)
            summary[key] = _json_float(np.mean(values)) if len(values) else None
    if recent_eras is not None:
        summary.update(_recent_summary(frame, recent_eras))
    return summary
