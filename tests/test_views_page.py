"""The report page's layout: tables scroll inside a 1400 px page, heatmap titles are inside
their figure."""

from __future__ import annotations

import numpy as np
import pytest

from numerlab.compare import STYLE, matrix_figure


@pytest.mark.parametrize("n", [2, 6, 12])
def test_heatmap_title_is_inside_the_figure(n):
    labels = [f"model=lgbm,model.params.learning_rate=0.0{i}" for i in range(n)]
    fig = matrix_figure(labels, np.eye(n),
                        "Correlation of validation predictions (within-era ranks)")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [t for t in [fig._suptitle, *(ax.title for ax in fig.axes)]
             if t is not None and t.get_text()]
    assert texts
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, (extent, box)
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, (extent, box)


def test_tables_scroll_within_the_page():
    assert ".scroll{overflow-x:auto" in STYLE.replace(" ", "")
