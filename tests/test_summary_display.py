"""What the sweep tables show: overrides readable in a terminal, and the ranking's note
saying where its scores come from."""

import polars as pl

from numerlab.report import short_overrides
from numerlab.summary import CHOSEN_ON_FOLDS, CHOSEN_ON_REPORTED, ranking_note


def test_overrides_drop_the_model_prefixes_and_long_digits_but_keep_every_setting():
    text = ("model.params.learning_rate=0.02791367192365167,model.params.max_depth=5,"
            "model.num_boost_round=500,features=medium,seed=3")
    assert short_overrides(text) == ("learning_rate=0.02791, max_depth=5, "
                                     "num_boost_round=500, features=medium, seed=3")
    assert short_overrides(None) == "—" and short_overrides("") == "—"


def _frame(tasks: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"name": [f"{i}" for i in range(len(tasks))],
                         "overrides": [""] * len(tasks), "corr_sharpe": [1.0] * len(tasks),
                         "status": ["ok"] * len(tasks), "error": [None] * len(tasks),
                         "run_dir": [""] * len(tasks), "task": tasks},
                        schema_overrides={"error": pl.String, "task": pl.String})


def test_a_ranking_of_cv_runs_says_its_scores_are_the_folds_not_that_they_flatter():
    assert ranking_note(_frame(["cv", "cv"])) == CHOSEN_ON_FOLDS
    for tasks in (["train", "train"], ["cv", "train"], [None, None]):
        assert ranking_note(_frame(tasks)) == CHOSEN_ON_REPORTED
