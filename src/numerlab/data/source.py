"""Where a run's rows come from: what a `data` option builds (`_target_` in conf/data/).

A source makes `dir` ready to read in the v5 layout (`prepare`); every source is then read
by the same v5 reader (`numerlab.data.v5.load_splits`), with the same era stride and
embargo. A new source is one yaml file in conf/data/ naming a `DataSource` subclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from numerlab.errors import NumerlabError


def int_setting(key: str, value: Any, minimum: int) -> int:
    """`value` as an int >= minimum, else a one-line error naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NumerlabError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


class DataSource:
    """dir: the data dir; era_stride: keep every Nth training era; embargo_eras: eras left
    out between the last training era and the first validation era."""

    def __init__(self, dir: str, era_stride: int, embargo_eras: int) -> None:
        self.dir = Path(str(dir)).expanduser()
        self.era_stride = int_setting("data.era_stride", era_stride, 1)
        self.embargo_eras = int_setting("data.embargo_eras", embargo_eras, 0)

    def prepare(self) -> Path:
        """Make `dir` ready to load and return it."""
        raise NotImplementedError


class SyntheticSource(DataSource):
    """data=synthetic: generated from `synthetic.seed` and sizes into `dir` (kept while its
    manifest matches them, else regenerated atomically)."""

    def __init__(self, dir: str, era_stride: int, embargo_eras: int,
                 synthetic: dict[str, Any]) -> None:
        super().__init__(dir, era_stride, embargo_eras)
        from numerlab.data.synthetic import manifest

        params = dict(synthetic or {})
        if "seed" not in params:
            raise NumerlabError("data.synthetic.seed is missing")
        self.seed = params.pop("seed")
        self.params = manifest(params, self.seed)["params"]  # checked before any data

    def prepare(self) -> Path:
        from numerlab.data import synthetic

        return synthetic.ensure(self.dir, self.params, self.seed)


class V5Source(DataSource):
    """data=v5: Numerai's files in `dir` (train, validation, live, features.json and, when
    there, meta_model and benchmark models); checked, never modified."""

    def prepare(self) -> Path:
        from numerlab.data.v5 import check_layout

        check_layout(self.dir)
        return self.dir


def build_source(data_cfg: Any) -> DataSource:
    from numerlab.registry import build

    return build(data_cfg, "data", DataSource)
