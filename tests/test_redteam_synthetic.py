"""Regenerating synthetic data (issue #18): only the files the generator writes are
replaced; anything else in data.dir stays, and a failed regeneration leaves the dir as it
was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from numerlab.data import synthetic

TINY = {"n_train_eras": 6, "n_validation_eras": 4, "n_test_eras": 1, "rows_per_era": 20,
        "n_features": 8, "n_live_rows": 10}


def params(**changes):
    return {**TINY, **changes}


def test_regeneration_keeps_files_numerlab_did_not_write(tmp_path):
    data_dir = tmp_path / "data"
    synthetic.ensure(data_dir, params(), seed=1)
    (data_dir / "notes.md").write_text("mine")
    (data_dir / "mine").mkdir()
    (data_dir / "mine" / "model.txt").write_text("also mine")
    before = (data_dir / "train.parquet").read_bytes()

    synthetic.ensure(data_dir, params(n_features=10), seed=1)

    assert (data_dir / "notes.md").read_text() == "mine"
    assert (data_dir / "mine" / "model.txt").read_text() == "also mine"
    assert (data_dir / "train.parquet").read_bytes() != before
    assert json.loads((data_dir / "synthetic.json").read_text()) == synthetic.manifest(
        params(n_features=10), 1)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging or old dir left


def test_a_failed_regeneration_leaves_the_dir_as_it_was(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    synthetic.ensure(data_dir, params(), seed=1)
    (data_dir / "notes.md").write_text("mine")
    before = {p.name: p.read_bytes() for p in data_dir.iterdir()}

    def broken(out_dir: Path, *args):
        (Path(out_dir) / "train.parquet").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(synthetic, "generate", broken)
    with pytest.raises(OSError, match="disk full"):
        synthetic.ensure(data_dir, params(n_features=10), seed=1)
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_regeneration_cut_off_midway_is_redone_not_taken_as_complete(tmp_path, monkeypatch):
    """Killed after the first generated file moved in: the manifest says the dir is being
    replaced, so the next run regenerates it instead of reading a mix of two datasets."""
    data_dir = tmp_path / "data"
    synthetic.ensure(data_dir, params(), seed=1)
    replace = os.replace
    moved = []

    def cut_off(src, dst):  # the marker manifest and one data file move, then a kill
        if len(moved) == 2:
            raise KeyboardInterrupt
        moved.append(dst)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", cut_off)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure(data_dir, params(n_features=10), seed=1)
    monkeypatch.setattr(os, "replace", replace)
    assert synthetic._read_manifest(data_dir) not in (
        synthetic.manifest(params(), 1), synthetic.manifest(params(n_features=10), 1))
    synthetic.ensure(data_dir, params(), seed=1)
    fresh = tmp_path / "fresh"
    synthetic.ensure(fresh, params(), seed=1)
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == {
        p.name: p.read_bytes() for p in fresh.iterdir()}
