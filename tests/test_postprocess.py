"""Post-processing agrees with numerai-tools, era by era."""

import numpy as np
import pandas as pd
import polars as pl
import pytest
from numerai_tools.scoring import neutralize

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError
from numerlab.postprocess import Neutralize, neutralize_per_era
from numerlab.registry import build
from numerlab.scoring import rank_unit


@pytest.mark.parametrize("proportion", [0.0, 0.5, 1.0])
def test_neutralize_per_era_matches_numerai_tools(proportion):
    rng = np.random.default_rng(7)
    sizes = {"0010": 120, "0002": 75, "0031": 200}
    eras = np.concatenate([[era] * size for era, size in sizes.items()])
    order = rng.permutation(len(eras))  # rows of an era need not be contiguous
    eras = eras[order]
    features = rng.integers(0, 5, (len(eras), 9), dtype=np.int8)
    values = rng.normal(size=len(eras)) + 0.3 * features[:, 0]
    out = neutralize_per_era(values, features, eras, proportion)
    for era in sizes:
        rows = eras == era
        expected = neutralize(pd.DataFrame({"p": values[rows]}),
                              pd.DataFrame(features[rows].astype(float)),
                              proportion=proportion)["p"].to_numpy()
        np.testing.assert_allclose(out[rows], expected, rtol=0, atol=1e-12)


def test_rank_unit_is_tie_kept_and_inside_unit_interval():
    ranks = rank_unit(np.array([3.0, 1.0, 1.0, 2.0]))
    np.testing.assert_allclose(ranks, [3.5 / 4, 1.0 / 4, 1.0 / 4, 2.5 / 4])


def test_bad_proportion_and_unknown_column_are_named():
    rng = np.random.default_rng(0)
    data = Dataset(ids=np.array(["a", "b", "c"], dtype=object), eras=np.array(["1"] * 3),
                   features=rng.integers(0, 5, (3, 2), dtype=np.int8),
                   feature_names=["feature_a", "feature_b"],
                   target=np.zeros(3, dtype=np.float32), target_name="target")
    frame = pl.DataFrame({"prediction": [0.1, 0.2, 0.3]})
    with pytest.raises(NumerlabError, match="proportion=2"):
        Neutralize(proportion=2.0, columns=None, features=None).apply(frame, data)
    with pytest.raises(NumerlabError, match="feature_zzz"):
        Neutralize(proportion=1.0, columns=["feature_zzz"], features=None).apply(frame, data)
    with pytest.raises(NumerlabError, match="banana"):
        build({"_target_": "numerlab.postprocess.banana"}, "postprocess")
