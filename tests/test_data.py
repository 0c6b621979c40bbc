"""Synthetic generator and v5 reader on real files in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from numerlab import data
from numerlab.data import synthetic, v5
from numerlab.data.source import build_source
from numerlab.errors import NumerlabError

SMALL = {"n_train_eras": 24, "n_validation_eras": 10, "n_test_eras": 2, "rows_per_era": 60,
         "n_features": 16, "n_live_rows": 30}
# Large enough that signal and flipping features are measurable.
MEDIUM = {"n_train_eras": 100, "n_validation_eras": 40, "n_test_eras": 2, "rows_per_era": 250,
          "n_features": 40, "n_live_rows": 50}
MAIN = {"name": "target", "aux": []}


SOURCES = {"synthetic": "numerlab.data.source.SyntheticSource",
           "v5": "numerlab.data.source.V5Source"}


def data_cfg(path: Path, params: dict = SMALL, seed: int = 0, **overrides):
    cfg = {"_target_": SOURCES[overrides.pop("source", "synthetic")], "dir": str(path),
           "era_stride": 1, "embargo_eras": 4, "synthetic": {"seed": seed, **params}}
    if cfg["_target_"] != SOURCES["synthetic"]:
        del cfg["synthetic"]
        cfg.update(version=None, download=False)  # a dir of the user's own files
    return OmegaConf.create({**cfg, **overrides})


def data_source(path: Path, params: dict = SMALL, seed: int = 0, **overrides):
    """The built data source of `data_cfg(...)`, as the loader takes it."""
    return build_source(data_cfg(path, params, seed, **overrides))


def features_cfg(set_name: str = "all", columns=None):
    return OmegaConf.create({"set": set_name, "columns": columns})


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return data.prepare(data_cfg(tmp_path_factory.mktemp("small") / "synthetic"))


@pytest.fixture(scope="module")
def medium_dir(tmp_path_factory) -> Path:
    return data.prepare(data_cfg(tmp_path_factory.mktemp("medium") / "synthetic", MEDIUM))


@pytest.fixture
def v5_copy(tmp_path, small_dir) -> Path:
    copy = tmp_path / "v5"
    shutil.copytree(small_dir, copy)
    return copy


def read(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


def per_era_corr(x: np.ndarray, y: np.ndarray, eras: np.ndarray) -> np.ndarray:
    out = []
    for era in np.unique(eras):
        rows = eras == era
        known = rows & ~np.isnan(y)
        out.append(np.corrcoef(x[known], y[known])[0, 1])
    return np.array(out)


# --- the generator ----------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = synthetic.generate(tmp_path / "a", SMALL, seed=7)
    b = synthetic.generate(tmp_path / "b", SMALL, seed=7)
    c = synthetic.generate(tmp_path / "c", SMALL, seed=8)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"train.parquet", "validation.parquet", "live.parquet", "features.json",
            "meta_model.parquet", synthetic.MANIFEST} <= set(names)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    first, other = read(a / "train.parquet"), read(c / "train.parquet")
    feature = json.loads((a / "features.json").read_text())["feature_sets"]["all"][0]
    assert not np.array_equal(first["target"], other["target"])
    assert not np.array_equal(first[feature], other[feature])


def test_features_are_int8_equal_quintiles_within_every_era(small_dir):
    schema = pq.read_schema(small_dir / "train.parquet")
    names = data.read_features_json(small_dir)["feature_sets"]["all"]
    assert len(names) == SMALL["n_features"]
    assert all(schema.field(n).type == pa.int8() for n in names)
    frame = read(small_dir / "train.parquet")
    for era in np.unique(frame["era"]):
        rows = frame["era"] == era
        for name in names:
            counts = np.bincount(frame[name][rows], minlength=5)
            assert len(counts) == 5
            assert np.all(np.abs(counts - rows.sum() / 5) <= 1), (era, name, counts)


def test_targets_take_five_values_with_numerai_frequencies(small_dir):
    frame = read(small_dir / "train.parquet")
    targets = data.read_features_json(small_dir)["targets"]
    assert targets[0] == "target" and len(targets) >= 8
    for name in targets:
        values = frame[name][~np.isnan(frame[name])]
        assert set(np.unique(values)) == {0.0, 0.25, 0.5, 0.75, 1.0}, name
    expected = np.array(synthetic.TARGET_BIN_FREQUENCIES)
    for era in np.unique(frame["era"]):
        target = frame["target"][frame["era"] == era]
        counts = np.bincount((target * 4).astype(int), minlength=5)
        assert np.all(np.abs(counts - expected * len(target)) <= 1), (era, counts)


def test_aux_targets_correlate_and_some_are_nan(small_dir):
    train = read(small_dir / "train.parquet")
    valid = read(small_dir / "validation.parquet")
    targets = data.read_features_json(small_dir)["targets"]
    for name in targets[1:]:
        known = ~np.isnan(train[name])
        assert np.corrcoef(train[name][known], train["target"][known])[0, 1] > 0.2, name
    is_valid = valid["data_type"] == "validation"
    valid_eras = sorted(set(valid["era"][is_valid]))
    for name in (t for t in targets if t.endswith("_60")):
        nan_eras = sorted(set(valid["era"][is_valid & np.isnan(valid[name])]))
        assert nan_eras and nan_eras == valid_eras[-len(nan_eras):], name  # the latest eras
    assert np.isnan(valid["target"][~is_valid]).all()  # test rows
    assert not np.isnan(valid["target"][is_valid]).any()
    assert any(np.isnan(train[name]).any() for name in targets)


def test_ids_unique_and_eras_continue_across_files(small_dir):
    train, valid, live = (read(small_dir / f) for f in
                          ("train.parquet", "validation.parquet", "live.parquet"))
    ids = np.concatenate([train["id"], valid["id"], live["id"]])
    assert len(set(ids)) == len(ids) and all(isinstance(i, str) for i in ids)
    eras = sorted(set(train["era"])) + sorted(set(valid["era"]))
    n_eras = SMALL["n_train_eras"] + SMALL["n_validation_eras"] + SMALL["n_test_eras"]
    assert eras == [f"{i:04d}" for i in range(1, n_eras + 1)]
    assert set(valid["data_type"]) == {"validation", "test"}
    assert set(live["era"]) == {"X"} and len(live["id"]) == SMALL["n_live_rows"]


def test_meta_model_covers_only_later_validation_eras(small_dir):
    meta = read(small_dir / "meta_model.parquet")
    valid = read(small_dir / "validation.parquet")
    valid_eras = sorted(set(valid["era"][valid["data_type"] == "validation"]))
    covered = sorted(set(meta["era"]))
    assert 0 < len(covered) < len(valid_eras) and covered == valid_eras[-len(covered):]
    values = meta["numerai_meta_model"]
    assert ((values > 0) & (values < 1)).all()
    target = dict(zip(valid["id"], valid["target"], strict=True))
    joined = np.array([target[i] for i in meta["id"]])
    assert np.corrcoef(values, joined)[0, 1] > 0


def test_signal_exists_and_linear_model_generalizes(medium_dir):
    splits = data.load_splits(data_source(medium_dir, MEDIUM), features_cfg(), MAIN)
    train, valid = splits.train, splits.validation

    def design(ds):
        return np.column_stack([ds.features.astype(np.float64), np.ones(len(ds))])

    weights = np.linalg.lstsq(design(train), train.target, rcond=None)[0]
    corr = per_era_corr(design(valid) @ weights, valid.target, valid.eras)
    assert corr.mean() > 0.01
    assert corr.mean() / corr.std() > 0.2


def test_some_features_flip_the_sign_of_their_correlation(medium_dir):
    ds = data.load_split(medium_dir / "train.parquet",
                         data.read_features_json(medium_dir)["feature_sets"]["all"], "target")
    window = 10
    # t-stat of 10-era means of per-era correlations; a flip is strong either way.
    flips = 0
    for j in range(ds.features.shape[1]):
        corr = per_era_corr(ds.features[:, j].astype(float), ds.target, ds.eras)
        means = np.convolve(corr, np.ones(window) / window, mode="valid")
        t = means / (corr.std() / np.sqrt(window))
        flips += bool(t.max() > 3 and t.min() < -3)
    assert flips >= 1


# --- prepare ----------------------------------------------------------------------------

def test_prepare_keeps_matching_dir_and_regenerates_on_param_change(tmp_path):
    cfg = data_cfg(tmp_path / "syn")
    out = data.prepare(cfg)
    stamp = (out / "train.parquet").stat().st_mtime_ns
    assert data.prepare(cfg) == out
    assert (out / "train.parquet").stat().st_mtime_ns == stamp
    manifest = json.loads((out / synthetic.MANIFEST).read_text())
    assert manifest["seed"] == 0 and manifest["params"] == SMALL

    data.prepare(data_cfg(tmp_path / "syn", {**SMALL, "n_features": 8}))
    assert len(data.read_features_json(out)["feature_sets"]["all"]) == 8
    data.prepare(data_cfg(tmp_path / "syn", {**SMALL, "n_features": 8}, seed=1))
    assert json.loads((out / synthetic.MANIFEST).read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no staging leftovers


def test_interrupted_generation_leaves_no_complete_looking_dir(tmp_path, monkeypatch):
    def interrupted(out_dir, params, seed):
        Path(out_dir, "train.parquet").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.prepare(data_cfg(tmp_path / "syn"))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_regeneration_keeps_the_old_dir(tmp_path, monkeypatch):
    out = data.prepare(data_cfg(tmp_path / "syn"))
    before = (out / "train.parquet").read_bytes()
    monkeypatch.setattr(synthetic, "generate", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        data.prepare(data_cfg(tmp_path / "syn", seed=5))
    assert (out / "train.parquet").read_bytes() == before
    assert json.loads((out / synthetic.MANIFEST).read_text())["seed"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["syn"]


def test_concurrent_prepare_keeps_the_first_complete_dir(tmp_path, monkeypatch):
    real = synthetic.generate

    def racing(out_dir, params, seed):
        real(out_dir, params, seed)
        monkeypatch.setattr(synthetic, "generate", real)
        synthetic.ensure(tmp_path / "syn", params, seed)  # another process finishes first

    monkeypatch.setattr(synthetic, "generate", racing)
    out = data.prepare(data_cfg(tmp_path / "syn"))
    assert [p.name for p in tmp_path.iterdir()] == ["syn"]
    assert json.loads((out / synthetic.MANIFEST).read_text())["params"] == SMALL


def test_prepare_refuses_to_overwrite_a_foreign_dir(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "train.parquet").write_bytes(b"precious")
    with pytest.raises(NumerlabError, match="mine"):
        data.prepare(data_cfg(tmp_path / "mine"))
    assert (tmp_path / "mine" / "train.parquet").read_bytes() == b"precious"


@pytest.mark.parametrize("key, value", [("rows_per_era", 0), ("n_features", "many"),
                                        ("bogus", 3)])
def test_bad_generator_params_are_named(tmp_path, key, value):
    with pytest.raises(NumerlabError, match=key):
        data.prepare(data_cfg(tmp_path / "syn", {**SMALL, key: value}))


def test_prepare_v5_names_the_missing_file(v5_copy):
    cfg = data_cfg(v5_copy, source="v5")
    assert data.prepare(cfg) == v5_copy
    (v5_copy / "live.parquet").unlink()
    with pytest.raises(NumerlabError, match="live.parquet"):
        data.prepare(cfg)


def test_default_config_composes_into_prepare_and_load(tmp_path):
    conf = Path(__file__).resolve().parents[1] / "conf"
    cfg = OmegaConf.load(conf / "data" / "synthetic.yaml")
    cfg.dir = str(tmp_path / "syn")
    cfg.synthetic.merge_with(SMALL)
    data.prepare(cfg)
    splits = data.load_splits(build_source(cfg), OmegaConf.load(conf / "features" / "small.yaml"),
                              OmegaConf.load(conf / "target" / "main.yaml"))
    assert len(splits.feature_names) == len(range(0, SMALL["n_features"], 4))


# --- names ------------------------------------------------------------------------------

def test_feature_sets_and_explicit_columns(small_dir):
    meta = data.read_features_json(small_dir)
    sets = meta["feature_sets"]
    assert list(sets) == ["small", "medium", "all"]
    small, medium, every = (data.resolve_features(meta, features_cfg(s)) for s in sets)
    assert set(small) < set(medium) < set(every)
    assert len(small) == SMALL["n_features"] // 4 and len(medium) == SMALL["n_features"] // 2
    explicit = [every[3], every[1]]
    assert data.resolve_features(meta, features_cfg("small", explicit)) == explicit


def test_unknown_feature_set_lists_the_available_ones(small_dir):
    meta = data.read_features_json(small_dir)
    with pytest.raises(NumerlabError) as err:
        data.resolve_features(meta, features_cfg("xyz"))
    assert str(err.value) == ("features.json has no feature set 'xyz' "
                              "(available: small, medium, all)")


def test_unknown_explicit_column_is_named(small_dir):
    meta = data.read_features_json(small_dir)
    with pytest.raises(NumerlabError, match="feature_nope"):
        data.resolve_features(meta, features_cfg(columns=["feature_nope"]))


def test_targets_resolve_and_unknown_ones_are_named(small_dir):
    meta = data.read_features_json(small_dir)
    assert data.resolve_targets(meta, {"name": "target_cyrusd_20",
                                       "aux": ["target", "target_cyrusd_20"]}) == (
        "target_cyrusd_20", ["target"])
    for cfg, bad in [({"name": "target_nope", "aux": []}, "target_nope"),
                     ({"name": "target", "aux": ["target_victor_21"]}, "target_victor_21")]:
        with pytest.raises(NumerlabError, match=bad) as err:
            data.resolve_targets(meta, cfg)
        assert "target_victor_20" in str(err.value) or "target," in str(err.value)


def test_every_conf_target_exists_in_synthetic_data(small_dir):
    meta = data.read_features_json(small_dir)
    conf = Path(__file__).resolve().parents[1] / "conf" / "target"
    for path in conf.glob("*.yaml"):
        data.resolve_targets(meta, OmegaConf.load(path))


def test_features_json_without_the_set(v5_copy):
    meta = json.loads((v5_copy / "features.json").read_text())
    del meta["feature_sets"]["medium"]
    (v5_copy / "features.json").write_text(json.dumps(meta))
    with pytest.raises(NumerlabError, match="'medium'"):
        data.load_splits(data_source(v5_copy, source="v5"), features_cfg("medium"), MAIN)


@pytest.mark.parametrize("content, needle", [(None, "missing"), ("{not json", "cannot read"),
                                             ('{"targets": []}', "feature_sets")])
def test_bad_features_json_is_named(v5_copy, content, needle):
    path = v5_copy / "features.json"
    path.unlink() if content is None else path.write_text(content)
    with pytest.raises(NumerlabError, match=needle) as err:
        data.read_features_json(v5_copy)
    assert "features.json" in str(err.value)


# --- loading ----------------------------------------------------------------------------

def test_splits_are_int8_sorted_and_filtered(small_dir):
    splits = data.load_splits(data_source(small_dir), features_cfg("medium"),
                              {"name": "target", "aux": ["target_cyrusd_60"]})
    assert splits.data_dir == small_dir
    assert splits.feature_names == data.read_features_json(small_dir)["feature_sets"]["medium"]
    for ds in (splits.train, splits.validation, splits.live):
        assert ds.features.dtype == np.int8 and ds.features.flags.c_contiguous
        assert ds.features.shape == (len(ds), len(splits.feature_names))
        assert ds.target.dtype == np.float32 and ds.aux.shape == (len(ds), 1)
        assert list(ds.eras) == sorted(ds.eras)
        assert ds.features.min() >= 0 and ds.features.max() <= 4
    file_valid = read(small_dir / "validation.parquet")
    assert set(splits.validation.ids) <= set(file_valid["id"][file_valid["data_type"]
                                                              == "validation"])
    assert not np.isnan(splits.validation.target).any()
    assert np.isnan(splits.validation.aux).any()  # aux targets keep their NaNs
    assert set(splits.live.eras) == {"X"} and np.isnan(splits.live.target).all()
    assert len(splits.live) == SMALL["n_live_rows"]
    assert set(splits.meta_model.columns) == {"id", "era", "numerai_meta_model"}


def test_loaded_values_match_the_file(small_dir):
    names = data.read_features_json(small_dir)["feature_sets"]["small"]
    ds = data.load_split(small_dir / "train.parquet", names, "target", ["target_ralph_20"])
    frame = read(small_dir / "train.parquet")
    order = np.argsort(frame["era"], kind="stable")
    assert list(ds.ids) == list(frame["id"][order])
    np.testing.assert_array_equal(ds.features, np.column_stack([frame[n][order] for n in names]))
    np.testing.assert_array_equal(ds.aux[:, 0], frame["target_ralph_20"][order])


@pytest.mark.parametrize("stride, embargo", [(1, 0), (3, 4), (4, 2)])
def test_era_stride_and_embargo(small_dir, stride, embargo):
    splits = data.load_splits(data_source(small_dir, era_stride=stride, embargo_eras=embargo),
                              features_cfg("small"), MAIN, splits=("train", "validation"))
    all_train = sorted(set(read(small_dir / "train.parquet")["era"]))
    assert sorted(set(splits.train.eras)) == all_train[::stride]
    last = int(all_train[::stride][-1])
    valid = read(small_dir / "validation.parquet")
    expected = sorted({e for e, t in zip(valid["era"], valid["data_type"], strict=True)
                       if t == "validation" and int(e) > last + embargo})
    assert sorted(set(splits.validation.eras)) == expected
    assert splits.live is None


def test_embargo_leaving_no_validation_eras(small_dir):
    cfg = data_cfg(small_dir, embargo_eras=1000)
    with pytest.raises(NumerlabError) as err:
        data.load_splits(build_source(cfg), features_cfg("small"), MAIN)
    last_valid = f"{SMALL['n_train_eras'] + SMALL['n_validation_eras']:04d}"
    assert str(err.value) == (f"embargo of 1000 eras leaves no validation eras (last train era "
                              f"{SMALL['n_train_eras']:04d}, last validation era {last_valid})")


@pytest.mark.parametrize("key, value", [("era_stride", 0), ("embargo_eras", -1),
                                        ("era_stride", "2")])
def test_bad_era_settings_are_named(small_dir, key, value):
    with pytest.raises(NumerlabError, match=key):
        data.load_splits(data_source(small_dir, **{key: value}), features_cfg("small"), MAIN)


def test_nan_target_rows_are_dropped_from_train_and_validation(small_dir):
    late = data.load_splits(data_source(small_dir), features_cfg("small"),
                            {"name": "target_claudia_20", "aux": []})
    frame = read(small_dir / "train.parquet")
    known = ~np.isnan(frame["target_claudia_20"])
    assert np.isnan(frame["target_claudia_20"]).any()
    assert len(late.train) == known.sum() and not np.isnan(late.train.target).any()
    slow = data.load_splits(data_source(small_dir), features_cfg("small"),
                            {"name": "target_cyrusd_60", "aux": []})
    main = data.load_splits(data_source(small_dir), features_cfg("small"), MAIN)
    assert slow.validation.n_eras < main.validation.n_eras
    assert not np.isnan(slow.validation.target).any()


def test_only_requested_columns_are_read(small_dir, monkeypatch):
    requested = []
    real_read, real_read_group = pq.ParquetFile.read, pq.ParquetFile.read_row_group

    def spy_read(self, columns=None, **kwargs):
        requested.append(columns)
        return real_read(self, columns=columns, **kwargs)

    def spy_read_group(self, i, columns=None, **kwargs):
        requested.append(columns)
        return real_read_group(self, i, columns=columns, **kwargs)

    real_batches = pq.ParquetFile.iter_batches

    def spy_batches(self, *args, columns=None, **kwargs):
        requested.append(columns)
        return real_batches(self, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy_read)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy_read_group)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy_batches)
    names = data.read_features_json(small_dir)["feature_sets"]["small"]
    data.load_splits(data_source(small_dir), features_cfg("small"),
                     {"name": "target", "aux": ["target_agnes_20"]})
    assert requested and all(columns is not None for columns in requested)
    read_columns = {c for columns in requested for c in columns}
    assert read_columns == {"id", "era", "data_type", "target", "target_agnes_20",
                            "numerai_meta_model", *names}


def write_parquet(path: Path, columns: dict, row_group_size: int | None = None) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def test_unsorted_file_is_sorted_by_era_stably(tmp_path):
    eras = ["0003", "0001", "0002", "0001", "0003", "0002"]
    path = write_parquet(tmp_path / "t.parquet", {
        "id": [f"id{i}" for i in range(6)], "era": eras,
        "feature_a": pa.array([0, 1, 2, 3, 4, 0], pa.int8()),
        "target": pa.array([0.5] * 6, pa.float32())})
    ds = data.load_split(path, ["feature_a"], "target")
    assert list(ds.eras) == ["0001", "0001", "0002", "0002", "0003", "0003"]
    assert list(ds.ids) == ["id1", "id3", "id2", "id5", "id0", "id4"]
    assert ds.features[:, 0].tolist() == [1, 3, 2, 0, 0, 4]


def test_ids_are_a_compact_string_array_that_acts_like_str_objects(small_dir):
    names = data.read_features_json(small_dir)["feature_sets"]["small"]
    ds = data.load_split(small_dir / "train.parquet", names, "target")
    assert ds.ids.dtype == np.dtypes.StringDType() and isinstance(ds.ids[0], str)
    assert ds.eras.dtype == object  # one shared str per era: 8 bytes a row
    assert pl.Series(ds.ids, dtype=pl.String).to_list() == ds.ids.tolist()
    assert ds.eras.astype(str).dtype == np.dtype("U4")
    taken = ds.take(np.arange(len(ds)) % 3 == 0)
    assert taken.ids.tolist() == ds.ids.tolist()[::3]
    assert np.array_equal(ds.ids, np.array(ds.ids.tolist(), dtype=object))
    labels, codes = np.unique(ds.eras, return_inverse=True)
    assert list(labels[codes]) == list(ds.eras)


@pytest.mark.parametrize("ids", [[f"id{i:03d}" for i in range(40)],  # one width: bytes view
                                 [f"r{i}" for i in range(40)],  # widths differ: str objects
                                 [f"é{i:02d}" for i in range(40)],  # UTF-8
                                 list(range(1000, 1040))])  # integer ids read as text
def test_rows_survive_batches_tiles_row_groups_filtering_and_sorting(tmp_path, monkeypatch,
                                                                      ids):
    # Tiny batches, tiles and reads: every boundary of the loader is crossed many times.
    monkeypatch.setattr(v5, "SMALL_BATCH_ROWS", 7)
    monkeypatch.setattr(v5, "TRANSPOSE_TILE_ROWS", 3)
    monkeypatch.setattr(v5, "READ_CHUNK_CELLS", 32)
    monkeypatch.setattr(v5, "MIN_READ_COLUMNS", 1)  # 2 of the 3 features per read
    rng = np.random.default_rng(0)
    era = [f"{e:04d}" for e in rng.integers(1, 5, size=40)]
    target = np.where(rng.random(40) < 0.3, np.nan, 0.5).astype(np.float32)
    values = rng.integers(0, 5, size=(40, 3)).astype(np.int8)
    path = write_parquet(tmp_path / "t.parquet", {
        "id": ids, "era": era, **{f"feature_{c}": values[:, j] for j, c in enumerate("abc")},
        "target": target, "target_b": np.arange(40, dtype=np.float32)}, row_group_size=16)
    ds = data.load_split(path, ["feature_c", "feature_a", "feature_b"], "target", ["target_b"],
                         eras=["0001", "0003", "0004"], drop_nan_target=True)
    rows = [i for i in sorted(range(40), key=lambda i: era[i])
            if era[i] != "0002" and not np.isnan(target[i])]
    assert ds.ids.tolist() == [str(ids[i]) for i in rows]
    np.testing.assert_array_equal(ds.features, values[rows][:, [2, 0, 1]])
    assert ds.features.flags.c_contiguous
    assert ds.aux[:, 0].tolist() == rows and list(ds.eras) == [era[i] for i in rows]


def test_missing_era_is_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(v5, "SMALL_BATCH_ROWS", 2)
    path = write_parquet(tmp_path / "t.parquet", {
        "id": list("abcde"), "era": ["0001", None, "0001", None, None],
        "feature_a": pa.array([0, 1, 2, 3, 4], pa.int8()), "target": [0.5] * 5})
    with pytest.raises(NumerlabError, match="'era' has 3 missing values"):
        data.load_split(path, ["feature_a"], "target")


def test_missing_id_is_named(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {
        "id": ["a", None, "c"], "era": ["0001"] * 3,
        "feature_a": pa.array([0, 1, 2], pa.int8()), "target": [0.5] * 3})
    with pytest.raises(NumerlabError, match="'id' has 1 missing"):
        data.load_split(path, ["feature_a"], "target")


def test_row_groups_without_kept_eras_are_not_decoded(tmp_path, monkeypatch):
    n_eras, rows = 12, 10
    era = np.repeat([f"{i:04d}" for i in range(1, n_eras + 1)], rows)
    path = write_parquet(tmp_path / "t.parquet", {
        "id": [f"id{i}" for i in range(n_eras * rows)], "era": era,
        "feature_a": pa.array(np.arange(n_eras * rows) % 5, pa.int8()),
        "target": pa.array(np.full(n_eras * rows, 0.5), pa.float32())}, row_group_size=rows)
    groups = []
    real = pq.ParquetFile.read_row_group
    real_batches = pq.ParquetFile.iter_batches

    def spy(self, i, columns=None, **kwargs):
        groups.append(i)
        return real(self, i, columns=columns, **kwargs)

    def spy_batches(self, *args, row_groups=None, **kwargs):
        if row_groups is not None:
            groups.extend(row_groups)
        return real_batches(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy_batches)
    kept = sorted(set(era))[::4]
    ds = data.load_split(path, ["feature_a"], "target", eras=kept)
    assert sorted(set(ds.eras)) == kept and len(ds) == len(kept) * rows
    assert set(groups) == {0, 4, 8}


def test_pandas_written_file_with_index_and_categorical_era(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"era": pd.Categorical(["0002", "0001", "0002"]),
                          "feature_a": np.array([1, 2, 3], np.int8),
                          "target": [0.25, 0.5, 0.75]},
                         index=pd.Index(["a", "b", "c"], name="id"))
    frame.to_parquet(tmp_path / "t.parquet")
    ds = data.load_split(tmp_path / "t.parquet", ["feature_a"], "target")
    assert list(ds.ids) == ["b", "a", "c"] and list(ds.eras) == ["0001", "0002", "0002"]
    assert ds.target.dtype == np.float32 and ds.features.dtype == np.int8


def test_missing_train_parquet_is_named(v5_copy):
    (v5_copy / "train.parquet").unlink()
    with pytest.raises(NumerlabError, match="train.parquet"):
        data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"), MAIN)


@pytest.mark.parametrize("name", ["train.parquet", "validation.parquet", "live.parquet",
                                  "meta_model.parquet"])
def test_corrupt_parquet_is_named(v5_copy, name):
    (v5_copy / name).write_bytes(b"PAR1 garbage, not a parquet file PAR1")
    with pytest.raises(NumerlabError, match=name):
        data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"), MAIN)


def test_missing_meta_model_is_none(v5_copy):
    (v5_copy / "meta_model.parquet").unlink()
    splits = data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"), MAIN)
    assert splits.meta_model is None


def test_missing_column_names_file_and_column(v5_copy):
    table = pq.read_table(v5_copy / "validation.parquet")
    pq.write_table(table.drop_columns(["target"]), v5_copy / "validation.parquet")
    with pytest.raises(NumerlabError) as err:
        data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"), MAIN)
    assert "validation.parquet" in str(err.value) and "'target'" in str(err.value)


@pytest.mark.parametrize("values, needle", [
    (pa.array([0, 1, 7, 2], pa.int8()), "outside"),
    (pa.array([0, 1, -1, 2], pa.int8()), "outside"),
    (pa.array([0, 1, 300, 2], pa.int16()), "not int8"),
    (pa.array([0.0, 1.5, 2.0, 3.0], pa.float32()), "not int8"),
    (pa.array([0, None, 2, 3], pa.int8()), "missing"),
    (pa.array(["a", "b", "c", "d"]), "type"),
])
def test_features_that_are_not_int8_bins_are_named(tmp_path, values, needle):
    path = write_parquet(tmp_path / "bad.parquet", {
        "id": list("abcd"), "era": ["0001"] * 4, "feature_ok": pa.array([0, 1, 2, 3], pa.int8()),
        "feature_bad": values, "target": pa.array([0.5] * 4, pa.float32())})
    with pytest.raises(NumerlabError, match=needle) as err:
        data.load_split(path, ["feature_ok", "feature_bad"], "target")
    assert "feature_bad" in str(err.value) and "bad.parquet" in str(err.value)


def test_whole_number_features_of_other_types_are_accepted(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", {
        "id": list("abc"), "era": ["0001"] * 3, "feature_f": pa.array([0.0, 4.0, 2.0]),
        "feature_i": pa.array([1, 2, 3], pa.int64()), "target": [0.5, 0.5, 0.5]})
    ds = data.load_split(path, ["feature_f", "feature_i"], "target")
    assert ds.features.tolist() == [[0, 1], [4, 2], [2, 3]]


def test_live_without_target_columns_reads_nan(v5_copy):
    table = pq.read_table(v5_copy / "live.parquet")
    targets = [c for c in table.column_names if c.startswith("target")]
    pq.write_table(table.drop_columns(targets), v5_copy / "live.parquet")
    splits = data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"),
                              {"name": "target", "aux": ["target_rowan_20"]}, splits=("live",))
    assert np.isnan(splits.live.target).all() and np.isnan(splits.live.aux).all()
    assert splits.train is None and splits.validation is None


def test_numbered_live_era_is_kept_as_in_the_file(v5_copy):
    table = pq.read_table(v5_copy / "live.parquet")
    era = pa.array(["0999"] * table.num_rows)
    pq.write_table(table.set_column(table.column_names.index("era"), "era", era),
                   v5_copy / "live.parquet")
    splits = data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"), MAIN,
                              splits=("live",))
    assert set(splits.live.eras) == {"0999"}


def test_public_api_is_reexported():
    for name in ("prepare", "read_features_json", "resolve_features", "resolve_targets",
                 "load_splits", "load_split", "Splits", "Dataset", "generate"):
        assert hasattr(data, name), name
    assert data.load_split is v5.load_split


def test_target_unknown_everywhere_is_named(v5_copy):
    table = pq.read_table(v5_copy / "validation.parquet")
    nan = pa.array(np.full(table.num_rows, np.nan, np.float32))
    table = table.set_column(table.column_names.index("target_agnes_20"), "target_agnes_20", nan)
    pq.write_table(table, v5_copy / "validation.parquet")
    with pytest.raises(NumerlabError, match="target_agnes_20"):
        data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"),
                         {"name": "target_agnes_20", "aux": []})


def test_synthetic_files_keep_id_as_the_pandas_index(small_dir):
    import pandas as pd

    for name in ("train.parquet", "validation.parquet", "live.parquet", "meta_model.parquet",
                 "validation_benchmark_models.parquet"):
        frame = pd.read_parquet(small_dir / name)
        assert frame.index.name == "id" and "id" not in frame.columns, name
        assert frame.index.is_unique, name


def test_a_data_dir_without_meta_model_warns_once(v5_copy, caplog):
    (v5_copy / "meta_model.parquet").unlink()
    with caplog.at_level("WARNING"):
        splits = data.load_splits(data_source(v5_copy, source="v5"), features_cfg("small"), MAIN)
    assert splits.meta_model is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"no meta_model.parquet in {v5_copy}: MMC is not computed"]
