"""The run plots say what they draw: each cumulative line is labelled with the eras it covers,
the benchmark's own CORR is drawn where one was scored, and cv_folds.png names its folds
along the top of the axes, clear of the curve."""

from __future__ import annotations

import numpy as np
import polars as pl

from numerlab.report import folds_figure, scores_figure

ERAS = [f"{i:04d}" for i in range(101, 113)]
NAN = float("nan")


def per_era() -> pl.DataFrame:
    """12 eras: the meta model from the 7th, the benchmark from the 4th (as on Numerai,
    where they cover only later validation eras)."""
    rng = np.random.default_rng(3)
    corr = rng.normal(0.02, 0.03, 12)
    mmc = np.r_[[NAN] * 6, rng.normal(0.0, 0.02, 6)]
    bmc = np.r_[[NAN] * 3, rng.normal(0.01, 0.02, 9)]
    bench = np.r_[[NAN] * 3, rng.normal(0.015, 0.02, 9)]
    return pl.DataFrame({"era": ERAS, "corr": corr, "mmc": mmc, "bmc": bmc,
                         "benchmark_corr": bench})


def lines(fig):
    return {line.get_label(): line for line in fig.axes[0].get_lines()
            if not line.get_label().startswith("_")}


def test_each_cumulative_line_names_its_eras():
    labels = set(lines(scores_figure(per_era())))
    assert "CORR (eras 0101–0112)" in labels
    assert "MMC (eras 0107–0112, 6 of 12)" in labels
    assert "BMC (eras 0104–0112, 9 of 12)" in labels


def test_the_benchmarks_cumulative_corr_is_drawn():
    frame = per_era()
    drawn = lines(scores_figure(frame))
    line = drawn["benchmark's CORR (eras 0104–0112, 9 of 12)"]
    expected = np.cumsum(frame["benchmark_corr"].to_numpy()[3:])
    assert np.allclose(line.get_ydata(), expected)
    assert list(line.get_xdata()) == list(range(3, 12))
    no_benchmark = lines(scores_figure(frame.drop("benchmark_corr", "bmc")))
    assert not any("benchmark" in label for label in no_benchmark)


def test_fold_labels_sit_at_the_top_clear_of_the_curve():
    frame = per_era().select("era", "corr")
    folds = pl.DataFrame({"fold": [0, 1, 2], "test_first_era": ["0101", "0105", "0109"]})
    fig = folds_figure(frame, folds)
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text().startswith("fold ")]
    assert [t.get_text() for t in labels] == ["fold 0", "fold 1", "fold 2"]
    curve = ax.get_lines()[0]
    points = ax.transData.transform(np.c_[curve.get_xdata(), curve.get_ydata()])
    for text in labels:
        box = text.get_window_extent(renderer)
        top = ax.transAxes.inverted().transform((box.x0, box.y1))[1]
        assert 0.8 < top <= 1.0  # inside the axes, at the top
        inside = ((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                  & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1))
        assert not inside.any(), text.get_text()
