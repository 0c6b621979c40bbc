"""numerlab.scoring against numerai-tools, the oracle, called era by era on pandas."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
from numerai_tools import scoring as nt

from numerlab import scoring
from numerlab.errors import NumerlabError

ERA_SIZES = [2, 3, 9, 40, 120, 333, 500, 260]
FEATURES = [f"feature_{j}" for j in range(8)]
TOLERANCE = 1e-9


def numerai_like(
    seed: int,
    sizes: list[int] = ERA_SIZES,
    tied: bool = False,
    target_kind: str = "bins",
    nan_targets: bool = True,
    meta_model_missing_eras: tuple[int, ...] = (1, 4),
    benchmark_missing_eras: tuple[int, ...] = (2,),
) -> pd.DataFrame:
    """Rows of several eras, shuffled, with a weak signal in prediction, meta model and
    benchmark (a model that shares some of the prediction's noise)."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    era = np.repeat(np.arange(len(sizes)), sizes)
    features = rng.integers(0, 5, (n, len(FEATURES))).astype(np.int8)
    signal = features[:, :3].sum(axis=1) + rng.standard_normal(n)
    prediction = signal + 2 * rng.standard_normal(n)
    if tied:  # few distinct values: many ties within every era
        prediction = np.digitize(prediction, np.quantile(prediction, [0.2, 0.5, 0.8])) / 3
    noise = signal + 3 * rng.standard_normal(n)
    target = {
        "bins": np.digitize(noise, np.quantile(noise, [0.05, 0.25, 0.75, 0.95])) / 4,
        "uniform": (noise - noise.min()) / (noise.max() - noise.min()),
        "normal": noise,
    }[target_kind]
    meta_model = signal + 2 * rng.standard_normal(n)
    frame = pd.DataFrame(
        {
            "era": [f"{e:04d}" for e in era],
            "prediction": prediction,
            "target": target,
            "meta_model": meta_model,
            **{name: features[:, j] for j, name in enumerate(FEATURES)},
        }
    )
    if nan_targets:  # 10% of each era of > 20 rows (numerai-tools refuses to drop > 20%)
        share = pd.Series(rng.random(n)).groupby(era).rank(pct=True).to_numpy()
        frame.loc[(share <= 0.1) & (np.bincount(era)[era] > 20), "target"] = np.nan
    for e in meta_model_missing_eras:
        frame.loc[era == e, "meta_model"] = np.nan
    # drawn last, so the columns above are what they were before the benchmark existed
    benchmark = 0.5 * prediction + signal + 2 * rng.standard_normal(n)
    if tied:
        benchmark = np.digitize(benchmark, np.quantile(benchmark, [0.3, 0.6])) / 2
    frame["benchmark"] = np.where(np.isin(era, benchmark_missing_eras), np.nan, benchmark)
    return frame.sample(frac=1.0, random_state=seed)  # rows needn't arrive sorted


def oracle(frame: pd.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
    """numerai-tools' scores, one call per era on the era's rows (index sorted)."""
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for era, g in frame.groupby("era"):
            g = g.sort_index()
            predictions = g[["prediction"]]
            scores = {"corr": nt.numerai_corr(predictions, g["target"]).iloc[0]}
            scores["mmc"] = (
                nt.correlation_contribution(predictions, g["meta_model"], g["target"]).iloc[0]
                if g["meta_model"].notna().any()
                else np.nan
            )
            if features:
                fnc = nt.feature_neutral_corr(predictions, g[features], g["target"])
                scores["fnc"] = fnc.iloc[0]
            rows[era] = scores
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("era")


def assert_matches(ours: pl.DataFrame, expected: pd.DataFrame) -> None:
    ours_pd = ours.to_pandas().set_index("era")
    assert list(ours_pd.index) == sorted(expected.index)
    for column in expected.columns:
        np.testing.assert_allclose(
            ours_pd[column].to_numpy(),
            expected[column].to_numpy(),
            rtol=0,
            atol=TOLERANCE,
            err_msg=column,
        )


@pytest.mark.parametrize("target_kind", ["bins", "uniform", "normal"])
@pytest.mark.parametrize("tied", [False, True])
def test_corr_and_mmc_match_numerai_tools(tied: bool, target_kind: str) -> None:
    frame = numerai_like(seed=1, tied=tied, target_kind=target_kind)
    ours = scoring.per_era_scores(pl.from_pandas(frame), meta_model="meta_model")
    assert ours.columns == ["era", "corr", "mmc"]
    assert ours["mmc"].is_nan().sum() == 2  # the two eras without a meta model
    assert_matches(ours, oracle(frame))


def test_mmc_with_meta_model_missing_on_some_rows_of_an_era() -> None:
    frame = numerai_like(seed=2, meta_model_missing_eras=())
    rng = np.random.default_rng(2)
    frame.loc[(rng.random(len(frame)) < 0.05) & (frame.era >= "0003"), "meta_model"] = np.nan
    ours = scoring.per_era_scores(frame, meta_model="meta_model")
    assert_matches(ours, oracle(frame))


@pytest.mark.parametrize("tied", [False, True])
def test_fnc_matches_numerai_tools(tied: bool) -> None:
    # neutralizing 9 columns: eras need well more rows than that for a meaningful residual
    frame = numerai_like(seed=3, sizes=[40, 150, 400, 90, 260], tied=tied)
    ours = scoring.per_era_scores(frame, meta_model="meta_model", features=FEATURES)
    assert ours.columns == ["era", "corr", "mmc", "fnc"]
    assert_matches(ours, oracle(frame, FEATURES))


def test_fnc_is_the_same_when_eras_are_neutralized_in_many_small_blocks() -> None:
    frame = pl.from_pandas(numerai_like(seed=4, sizes=[40, 150, 400, 90, 260]))
    codes, labels = scoring.era_codes(frame["era"])
    args = (
        frame["prediction"].to_numpy(),
        frame.select(FEATURES),
        frame["target"].to_numpy(),
        codes,
        len(labels),
    )
    one_block = scoring.feature_neutral_corr_per_era(*args)
    tiny_blocks = scoring.feature_neutral_corr_per_era(*args, memory_budget=1)
    np.testing.assert_allclose(tiny_blocks, one_block, rtol=0, atol=TOLERANCE)


def test_feature_exposure_matches_numerai_tools() -> None:
    frame = numerai_like(seed=5, sizes=[3, 40, 150, 400])
    frame.loc[frame.era == "0001", FEATURES[0]] = 2  # a feature constant in an era
    ours = scoring.per_era_feature_exposure(frame, features=FEATURES).to_pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [
            nt.max_feature_correlation(g.sort_index()["prediction"], g[FEATURES].sort_index())[1]
            for _, g in frame.groupby("era")
        ]
    assert list(ours["era"]) == sorted(frame.era.unique())
    np.testing.assert_allclose(ours["feature_exposure"], expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("values", ["tied", "infinite"])
def test_tie_kept_rank_is_pandas_average_rank(values: str) -> None:
    rng = np.random.default_rng(6)
    eras = rng.integers(0, 30, 3000)
    x = rng.integers(0, 7, 3000).astype(np.float64)
    if values == "infinite":
        x[rng.random(3000) < 0.1] = np.inf
        x[rng.random(3000) < 0.1] = -np.inf
    segments = scoring.EraSegments.of(eras, 30)
    ours = np.empty(len(x))
    ours[segments.order] = scoring.tie_kept_rank(segments, x[segments.order])
    frame = pd.DataFrame({"era": eras, "x": x})
    ranks = frame.groupby("era")["x"].rank(method="average")
    expected = (ranks - 0.5) / frame.groupby("era")["x"].transform("count")
    np.testing.assert_array_equal(ours, expected.to_numpy())


def test_pandas_and_polars_input_give_the_same_scores() -> None:
    frame = numerai_like(seed=7)
    from_pandas = scoring.per_era_scores(frame, meta_model="meta_model")
    from_polars = scoring.per_era_scores(pl.from_pandas(frame), meta_model="meta_model")
    assert from_pandas.equals(from_polars)


def test_rows_sorted_by_era_or_shuffled_give_the_same_scores() -> None:
    frame = numerai_like(seed=16, sizes=[40, 150, 400, 90, 260])
    shuffled = scoring.per_era_scores(frame, meta_model="meta_model", features=FEATURES)
    in_order = frame.sort_values("era", kind="stable")
    ordered = scoring.per_era_scores(in_order, meta_model="meta_model", features=FEATURES)
    assert ordered["era"].to_list() == shuffled["era"].to_list()
    for column in ["corr", "mmc", "fnc"]:
        np.testing.assert_allclose(ordered[column], shuffled[column], rtol=0, atol=TOLERANCE)


def test_integer_eras_and_float32_columns_are_accepted() -> None:
    frame = numerai_like(seed=8, nan_targets=False)
    frame["era"] = frame["era"].astype(int)
    frame["prediction"] = frame["prediction"].astype(np.float32)
    ours = scoring.per_era_scores(frame)
    assert ours["era"].to_list() == list(range(len(ERA_SIZES)))
    expected = oracle(frame.assign(prediction=frame["prediction"].astype(np.float64)))
    assert_matches(ours, expected[["corr"]])


def test_eras_without_any_target_are_left_out() -> None:
    frame = numerai_like(seed=9, nan_targets=False)
    frame.loc[frame.era == "0005", "target"] = np.nan  # like Numerai's test eras
    ours = scoring.per_era_scores(frame, meta_model="meta_model")
    assert "0005" not in ours["era"].to_list()
    assert ours.height == len(ERA_SIZES) - 1


def test_nan_prediction_is_an_error_naming_the_column_and_count() -> None:
    frame = numerai_like(seed=10)
    frame.iloc[:3, frame.columns.get_loc("prediction")] = np.nan
    with pytest.raises(NumerlabError, match="prediction column 'prediction' has 3 NaN values"):
        scoring.per_era_scores(frame)


def test_an_era_with_one_target_is_an_error_naming_the_era() -> None:
    frame = numerai_like(seed=11, nan_targets=False)
    first_row = frame.index[frame.era == "0001"][0]
    frame.loc[(frame.era == "0001") & (frame.index != first_row), "target"] = np.nan
    with pytest.raises(NumerlabError, match="era '0001' has 1 row with a target"):
        scoring.per_era_scores(frame)


@pytest.mark.parametrize(
    ("kwargs", "missing"),
    [
        ({"prediction": "pred"}, "pred"),
        ({"target": "target_cyrus"}, "target_cyrus"),
        ({"era": "date"}, "date"),
        ({"meta_model": "numerai_meta_model"}, "numerai_meta_model"),
        ({"features": ["feature_0", "feature_nope"]}, "feature_nope"),
    ],
)
def test_a_missing_column_is_an_error_naming_it(kwargs: dict, missing: str) -> None:
    with pytest.raises(NumerlabError, match=f"column '{missing}' not found"):
        scoring.per_era_scores(numerai_like(seed=12), **kwargs)


def test_error_messages_are_one_line() -> None:
    frame = numerai_like(seed=13).assign(prediction="high")
    with pytest.raises(NumerlabError, match="column 'prediction' must be numeric") as error:
        scoring.per_era_scores(frame)
    assert "\n" not in str(error.value)


def test_sharpe_is_numerai_tools_sharpe_ratio() -> None:
    per_era = np.random.default_rng(14).normal(0.01, 0.03, 100)
    assert scoring.sharpe(per_era) == pytest.approx(nt.sharpe_ratio(per_era), abs=1e-12)
    assert np.isnan(scoring.sharpe(np.array([0.02, 0.02])))  # zero std: undefined


@pytest.mark.parametrize(
    ("per_era", "drawdown"),
    [
        ([0.1, -0.2, -0.1, 0.3], 0.3),  # peak 0.1, trough -0.2
        ([-0.05, 0.02], 0.05),  # the running peak starts at 0: an initial loss counts
        ([0.01, 0.02, 0.03], 0.0),
        ([0.2, -0.1, 0.3, -0.25, -0.1], 0.35),  # the later, deeper fall from peak 0.4
        ([], 0.0),
    ],
)
def test_max_drawdown_by_hand(per_era: list[float], drawdown: float) -> None:
    assert scoring.max_drawdown(np.array(per_era)) == pytest.approx(drawdown, abs=1e-15)


def test_summarize_is_flat_json_and_consistent() -> None:
    frame = numerai_like(seed=15, sizes=[40, 150, 400, 90, 260, 120])
    per_era = scoring.per_era_scores(frame, meta_model="meta_model", features=FEATURES)
    exposure = scoring.per_era_feature_exposure(frame, features=FEATURES)
    summary = scoring.summarize(per_era.join(exposure, on="era", how="left"), recent_eras=None)
    json.dumps(summary, allow_nan=False)
    corr = per_era["corr"].to_numpy()
    mmc = per_era["mmc"].drop_nans().to_numpy()
    assert summary["n_eras"] == 6
    assert summary["mmc_n_eras"] == 4  # eras 1 and 4 have no meta model
    assert summary["corr_mean"] == pytest.approx(corr.mean())
    assert summary["corr_std"] == pytest.approx(corr.std())
    assert summary["corr_sharpe"] == pytest.approx(summary["corr_mean"] / summary["corr_std"])
    assert summary["corr_max_drawdown"] == pytest.approx(scoring.max_drawdown(corr))
    assert summary["mmc_sharpe"] == pytest.approx(nt.sharpe_ratio(mmc))
    assert summary["mmc_max_drawdown"] == pytest.approx(scoring.max_drawdown(mmc))
    assert summary["fnc_mean"] == pytest.approx(per_era["fnc"].mean())
    assert summary["max_feature_exposure"] == pytest.approx(exposure["feature_exposure"].mean())
    assert all(type(v) in (float, int) for v in summary.values())


def test_summarize_gives_null_for_what_is_undefined() -> None:
    per_era = pl.DataFrame({"era": ["0001"], "corr": [0.02], "mmc": [float("nan")]})
    summary = scoring.summarize(per_era, recent_eras=None)
    assert summary["corr_sharpe"] is None  # one era: zero std
    assert summary["mmc_mean"] is None and summary["mmc_n_eras"] == 0
    assert "fnc_mean" not in summary and "max_feature_exposure" not in summary


# --- BMC: correlation_contribution against a benchmark column ---------------------------


def benchmark_oracle(frame: pd.DataFrame) -> pd.DataFrame:
    """numerai-tools' BMC and the benchmark's own CORR, one call per era, and the raw
    Pearson correlation of prediction and benchmark on the rows where target and benchmark
    are known (pandas), NaN on eras the benchmark misses."""
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for era, g in frame.groupby("era"):
            g = g.sort_index()
            if g["benchmark"].isna().all():
                rows[era] = {"bmc": np.nan, "corr_with_benchmark": np.nan,
                             "benchmark_corr": np.nan}
                continue
            both = g.dropna(subset=["target", "benchmark"])
            rows[era] = {
                "bmc": nt.correlation_contribution(
                    g[["prediction"]], g["benchmark"], g["target"]).iloc[0],
                "corr_with_benchmark": both["prediction"].corr(both["benchmark"]),
                "benchmark_corr": nt.numerai_corr(g[["benchmark"]], g["target"]).iloc[0],
            }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("era")


@pytest.mark.parametrize("target_kind", ["bins", "normal"])
@pytest.mark.parametrize("tied", [False, True])
def test_bmc_matches_numerai_tools_correlation_contribution(tied: bool, target_kind: str) -> None:
    frame = numerai_like(seed=17, tied=tied, target_kind=target_kind,
                         benchmark_missing_eras=(2, 5))
    ours = scoring.per_era_scores(frame, meta_model="meta_model", benchmark="benchmark")
    assert ours.columns == [
        "era", "corr", "mmc", "bmc", "corr_with_benchmark", "benchmark_corr"]
    assert ours["bmc"].is_nan().sum() == 2  # the two eras without a benchmark
    assert_matches(ours, oracle(frame).join(benchmark_oracle(frame)))


def test_bmc_with_benchmark_missing_on_some_rows_of_an_era() -> None:
    frame = numerai_like(seed=18, benchmark_missing_eras=())
    rng = np.random.default_rng(18)
    frame.loc[(rng.random(len(frame)) < 0.05) & (frame.era >= "0003"), "benchmark"] = np.nan
    ours = scoring.per_era_scores(frame, benchmark="benchmark")
    assert ours.columns == ["era", "corr", "bmc", "corr_with_benchmark", "benchmark_corr"]
    assert_matches(ours, oracle(frame)[["corr"]].join(benchmark_oracle(frame)))


def test_bmc_with_a_benchmark_that_misses_an_era_entirely_and_one_partly() -> None:
    frame = numerai_like(seed=19, benchmark_missing_eras=(3,))
    rows = frame.index[frame.era == "0006"]
    frame.loc[rows[: len(rows) // 20], "benchmark"] = np.nan
    ours = scoring.per_era_scores(frame, meta_model="meta_model", benchmark="benchmark")
    assert_matches(ours, oracle(frame).join(benchmark_oracle(frame)))


def test_bmc_against_the_meta_model_column_is_mmc() -> None:
    frame = numerai_like(seed=20)
    ours = scoring.per_era_scores(frame, meta_model="meta_model", benchmark="meta_model")
    np.testing.assert_array_equal(ours["bmc"].to_numpy(), ours["mmc"].to_numpy())


def test_a_missing_benchmark_column_is_an_error_naming_it() -> None:
    with pytest.raises(NumerlabError, match="column 'v53_lgbm_ender20' not found"):
        scoring.per_era_scores(numerai_like(seed=12), benchmark="v53_lgbm_ender20")


# --- the least-squares solver behind FNC and neutralization -----------------------------


def awkward_era(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One era's features, shaped to test the solver's certification."""
    n, k = 300, 12
    x = rng.integers(0, 5, (n, k)).astype(np.float64)
    if kind == "constant columns":  # like Numerai's features filled with 2 in early eras
        x[:, [3, 7]] = 2.0
        x[:, 9] = 0.0
    elif kind == "duplicate columns":
        x[:, 5] = x[:, 1]
    elif kind == "collinear columns":  # an exact linear combination, not a copy
        x[:, 6] = x[:, 0] + x[:, 2] - 1
    elif kind == "fewer rows than columns":
        x = x[:9]
    elif kind == "int8":  # the Numerai case: X'X is summed exactly in float32
        return x.astype(np.int8)
    elif kind == "large integers":  # X'X too large for float32 sums, and ill-conditioned
        x = rng.integers(-3000, 3000, (n, k)).astype(np.int16)
        x[:, 4] = x[:, 0] + rng.integers(-1, 2, n)
        return x
    elif kind == "below rcond":  # a direction lstsq drops: sigma < 1e-6 sigma_max
        x[:, 4] = x[:, 0] + 1e-9 * rng.standard_normal(n)
    elif kind == "ill conditioned":  # cond([x, 1]) ~ 1e4: Cholesky must stay accurate
        x[:, 4] = x[:, 0] + 1e-3 * rng.standard_normal(n)
    elif kind == "just above rcond":  # kept by lstsq, though ill-conditioned
        x[:, 4] = x[:, 0] + 1e-4 * rng.standard_normal(n)
    return x


AWKWARD_KINDS = ["well conditioned", "int8", "large integers", "constant columns",
                 "duplicate columns",
                 "collinear columns", "fewer rows than columns", "below rcond",
                 "ill conditioned", "just above rcond"]


@pytest.mark.parametrize("kind", AWKWARD_KINDS)
def test_least_squares_fit_is_numerai_tools_neutralize(kind: str) -> None:
    rng = np.random.default_rng(21)
    x = awkward_era(kind, rng)
    y = rng.standard_normal(len(x)) + 0.3 * x[:, 0]
    expected = nt.neutralize(pd.DataFrame({"y": y}), pd.DataFrame(x))["y"].to_numpy()
    np.testing.assert_allclose(y - scoring.least_squares_fit(x, y), expected, rtol=0,
                               atol=TOLERANCE)


@pytest.mark.parametrize(
    ("kind", "certified"),
    [("well conditioned", True), ("int8", True), ("large integers", True),
     ("constant columns", True), ("duplicate columns", False),
     ("collinear columns", False), ("fewer rows than columns", False),
     ("below rcond", False), ("ill conditioned", True)],
)
def test_cholesky_path_is_taken_only_where_it_equals_lstsq(kind: str, certified: bool) -> None:
    rng = np.random.default_rng(22)
    x = awkward_era(kind, rng)
    fitted = scoring._cholesky_fit(x, rng.standard_normal(len(x)))
    assert (fitted is not None) == certified


def test_neutralize_matches_numerai_tools_era_by_era_from_a_frame_or_an_array() -> None:
    rng = np.random.default_rng(23)
    blocks = [awkward_era(kind, rng) for kind in AWKWARD_KINDS]
    eras = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
    shuffle = rng.permutation(len(eras))
    eras, x = eras[shuffle], np.concatenate(blocks)[shuffle]
    values = np.column_stack([rng.standard_normal(len(eras)) + 0.2 * x[:, 1],
                              rng.standard_normal(len(eras))])  # two series at once
    segments = scoring.EraSegments.of(eras, len(blocks))
    ordered = values[segments.order]
    from_array = scoring.neutralize(segments, ordered, x, proportion=0.7)
    frame = pl.from_numpy(x, schema=[f"f{j}" for j in range(x.shape[1])], orient="row")
    from_frame = scoring.neutralize(segments, ordered, frame, memory_budget=1, proportion=0.7)
    np.testing.assert_array_equal(from_frame, from_array)
    ours = np.empty_like(values)
    ours[segments.order] = from_array
    for e in range(len(blocks)):
        rows = eras == e
        expected = nt.neutralize(pd.DataFrame(values[rows]), pd.DataFrame(x[rows]),
                                 proportion=0.7).to_numpy()
        np.testing.assert_allclose(ours[rows], expected, rtol=0, atol=TOLERANCE,
                                   err_msg=AWKWARD_KINDS[e])


@pytest.mark.parametrize("extra", ["duplicate", "constant", "constant in one era"])
def test_fnc_matches_numerai_tools_with_rank_deficient_features(extra: str) -> None:
    frame = numerai_like(seed=24, sizes=[40, 150, 400, 90, 260])
    if extra == "duplicate":
        frame["feature_copy"] = frame["feature_2"]
    elif extra == "constant":
        frame["feature_copy"] = np.int8(2)
    else:
        frame["feature_copy"] = frame["feature_2"].where(frame.era != "0003", 2)
    features = [*FEATURES, "feature_copy"]
    ours = scoring.per_era_scores(frame, meta_model="meta_model", features=features)
    assert_matches(ours, oracle(frame, features))


# --- recent-period summary ---------------------------------------------------------------


def test_recent_summary_is_mean_and_sharpe_of_the_last_eras() -> None:
    frame = numerai_like(seed=25, sizes=[60] * 12, meta_model_missing_eras=(1, 10),
                         benchmark_missing_eras=(9,))
    per_era = scoring.per_era_scores(frame, meta_model="meta_model", benchmark="benchmark")
    summary = scoring.summarize(per_era, recent_eras=5)
    last = per_era.to_pandas().iloc[-5:]
    for score in ("corr", "mmc", "bmc"):
        values = last[score].dropna().to_numpy()
        assert len(values) == (4 if score in ("mmc", "bmc") else 5)
        assert summary[f"recent_{score}_mean"] == pytest.approx(values.mean(), abs=1e-15)
        assert summary[f"recent_{score}_sharpe"] == pytest.approx(
            nt.sharpe_ratio(values), rel=1e-12)
    assert summary["recent_n_eras"] == 5
    json.dumps(summary, allow_nan=False)


def test_recent_summary_leaves_the_other_keys_unchanged_and_covers_all_eras_if_fewer() -> None:
    frame = numerai_like(seed=26, sizes=[60] * 6)
    per_era = scoring.per_era_scores(frame, meta_model="meta_model", benchmark="benchmark")
    without = scoring.summarize(per_era, recent_eras=None)
    summary = scoring.summarize(per_era, recent_eras=200)  # conf's 200: here all 6
    assert not any(key.startswith("recent_") for key in without)
    assert {k: v for k, v in summary.items() if not k.startswith("recent_")} == without
    assert summary["recent_n_eras"] == 6
    assert summary["recent_corr_mean"] == pytest.approx(summary["corr_mean"], abs=1e-15)
    assert summary["recent_bmc_sharpe"] == pytest.approx(summary["bmc_sharpe"], rel=1e-12)


def test_recent_eras_are_the_numerically_last() -> None:
    per_era = pl.DataFrame({"era": ["10", "9", "11", "8"], "corr": [0.1, 0.2, 0.3, 0.4]})
    summary = scoring.summarize(per_era, recent_eras=2)
    assert summary["recent_corr_mean"] == pytest.approx((0.1 + 0.3) / 2)
    assert "recent_mmc_mean" not in summary and "recent_bmc_mean" not in summary


@pytest.mark.parametrize("recent_eras", [0, -3, 2.5])
def test_a_bad_recent_eras_is_an_error_naming_it(recent_eras) -> None:
    per_era = pl.DataFrame({"era": ["0001"], "corr": [0.02]})
    with pytest.raises(NumerlabError, match=f"recent_eras={recent_eras}"):
        scoring.summarize(per_era, recent_eras=recent_eras)


def test_summarize_reports_bmc_and_the_benchmark_columns() -> None:
    frame = numerai_like(seed=27, sizes=[60] * 8, benchmark_missing_eras=(2, 6))
    per_era = scoring.per_era_scores(frame, benchmark="benchmark")
    summary = scoring.summarize(per_era, recent_eras=None)
    bmc = per_era["bmc"].drop_nans().to_numpy()
    assert summary["bmc_n_eras"] == 6
    assert summary["bmc_mean"] == pytest.approx(bmc.mean(), abs=1e-15)
    assert summary["bmc_std"] == pytest.approx(bmc.std(), abs=1e-15)
    assert summary["bmc_sharpe"] == pytest.approx(nt.sharpe_ratio(bmc), rel=1e-12)
    assert summary["corr_with_benchmark"] == pytest.approx(
        per_era["corr_with_benchmark"].drop_nans().mean(), abs=1e-15)
    assert summary["benchmark_corr_mean"] == pytest.approx(
        per_era["benchmark_corr"].drop_nans().mean(), abs=1e-15)
