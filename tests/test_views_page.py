"""The report page's layout: tables scroll inside a 1400 px page, heatmap titles are inside
their figure."""

from __future__ import annotations

import numpy as np

from numerlab.compare import STYLE, matrix_figure


def test_heatmap_title_is_inside_the_figure():
    labels = ["model=lgbm", "model=xgboost"]
    fig = matrix_figure(labels, np.array([[1.0, 0.5], [0.5, 1.0]]),
                        "Correlation of validation predictions (within-era ranks)")
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    box = fig.bbox
    texts = [fig._suptitle] if fig._suptitle is not None else []
    texts += [ax.title for ax in fig.axes if ax.get_title()]
    assert texts
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert extent.x0 >= box.x0 and extent.x1 <= box.x1, (extent, box)
        assert extent.y1 <= box.y1


def test_tables_scroll_within_the_page():
    assert ".scroll{overflow-x:auto" in STYLE.replace(" ", "")
