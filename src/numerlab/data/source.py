"""Where a run's rows come from: what a `data` option builds (`_target_` in conf/data/).

A source makes `dir` ready to read in the v5 layout (`prepare`); every source is then read
by the same v5 reader (`numerlab.data.v5.load_splits`), with the same era stride and
embargo. A new source is one yaml file in conf/data/ naming a `DataSource` subclass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from numerlab.data.layout import MANIFEST_FILE, REQUIRED_FILES, check_layout
from numerlab.errors import NumerlabError
from numerlab.settings import boolean, integer, required, text

Fetch = Callable[..., Any]
"""`fetch(version, data_dir, files=None)`: bring data `version` (None = the newest) of
Numerai's dataset list into `data_dir`, only files missing or changed (`files`: these base
names, else the version's default set). `pipeline.data_fetcher` builds one from
`cfg.tournament`; sources that download call it, others ignore it."""


class DataSource:
    """dir: the data dir; era_stride: keep every Nth training era; embargo_eras: eras left
    out between the last training era and the first validation era."""

    def __init__(self, dir: str, era_stride: int, embargo_eras: int) -> None:
        self.dir = Path(str(dir)).expanduser()
        self.era_stride = integer("data.era_stride", era_stride, minimum=1)
        self.embargo_eras = integer("data.embargo_eras", embargo_eras, minimum=0)

    def with_rows(self, era_stride: int, embargo_eras: int) -> DataSource:
        """This source read with another era stride and embargo (task=cv folds over every
        era and sets its own embargo between folds)."""
        other = copy.copy(self)
        other.era_stride = integer("data.era_stride", era_stride, minimum=1)
        other.embargo_eras = integer("data.embargo_eras", embargo_eras, minimum=0)
        return other

    def prepare(self, fetch: Fetch | None = None, fresh: Sequence[str] = ()) -> Path:
        """Make `dir` ready to load and return it. `fetch` lets a source that downloads do
        so; `fresh` names files that must be current, not merely present (live.parquet
        before live predictions: it changes every round)."""
        raise NotImplementedError


class SyntheticSource(DataSource):
    """data=synthetic: generated from `synthetic.seed` and sizes into `dir` (kept while its
    manifest matches them, else regenerated atomically)."""

    def __init__(self, dir: str, era_stride: int, embargo_eras: int,
                 synthetic: dict[str, Any]) -> None:
        super().__init__(dir, era_stride, embargo_eras)
        from numerlab.data.synthetic import manifest

        params = dict(synthetic or {})
        required("data.synthetic", params, ("seed",))
        self.seed = params.pop("seed")
        self.params = manifest(params, self.seed)["params"]  # checked before any data

    def prepare(self, fetch: Fetch | None = None, fresh: Sequence[str] = ()) -> Path:
        from numerlab.data import synthetic

        return synthetic.ensure(self.dir, self.params, self.seed)


class V5Source(DataSource):
    """data=v5: Numerai's files in `dir` (train, validation, live, features.json and, when
    there, meta_model and benchmark models).

    version:  Numerai data version ("v5.3"); null = the newest the API lists.
    download: before a run, fetch the version's files when required ones are missing, and
              bring `fresh` files up to date. Only into a dir numerlab manages: one with its
              download manifest (`task=download` or an earlier run wrote it) or one holding
              none of the v5 files yet. A dir of your own files is read, never modified: a
              missing file there is named (fetch it with `task=download`)."""

    def __init__(self, dir: str, era_stride: int, embargo_eras: int,
                 version: str | None, download: bool) -> None:
        super().__init__(dir, era_stride, embargo_eras)
        version = text("data.version", version, optional=True,
                       what="a Numerai data version such as 'v5.3' (null: the newest)")
        self.version = version.strip() if version else None
        self.download = boolean("data.download", download)

    def prepare(self, fetch: Fetch | None = None, fresh: Sequence[str] = ()) -> Path:

        if self.download and fetch is not None and self.managed():
            missing, stale = self.missing_files(), self.stale_files()
            wanted = self.version or "the newest version"
            if missing or stale:
                why = (f"missing {self.dir / missing[0]}" if missing
                       else f"{stale[0]} is not of {wanted}")
                self._fetch(fetch, None, f"{why}; fetching {wanted} from Numerai failed")
            elif fresh:
                self._fetch(fetch, list(fresh), f"bringing {', '.join(fresh)} in {self.dir} up "
                            f"to date failed (data.download=false uses the local files)")
        check_layout(self.dir)
        return self.dir

    def _fetch(self, fetch: Fetch, files: list[str] | None, failure: str) -> None:
        try:
            # version null: the version the dir's downloads are of, so a new live.parquet
            # never joins files of another version; the newest only for a dir without any
            fetch(self.version or self.held_version(), self.dir, files)
        except NumerlabError as exc:
            raise NumerlabError(f"{failure}: {exc}") from None

    def missing_files(self) -> list[str]:
        return [name for name in REQUIRED_FILES if not (self.dir / name).is_file()]

    def managed(self) -> bool:
        """True when numerlab may write into `dir`: it holds the download manifest, or
        none of the required v5 files."""
        return self.download_records() is not None or len(self.missing_files()) == len(
            REQUIRED_FILES)

    def download_records(self) -> dict[str, Any] | None:
        """file name -> what it was downloaded from (the download manifest), or None."""
        import json

        try:
            records = json.loads((self.dir / MANIFEST_FILE).read_text()).get("files")
        except (OSError, ValueError, AttributeError):
            return None
        return records if isinstance(records, dict) else {}

    def held_version(self) -> str | None:
        """The one data version the dir's downloaded files are of (their manifest's
        `<version>/<file>` sources); None when there are none, or several."""
        versions = {str(record.get("source", "")).split("/", 1)[0]
                    for record in (self.download_records() or {}).values()
                    if isinstance(record, dict) and "/" in str(record.get("source", ""))}
        return versions.pop() if len(versions) == 1 else None

    def stale_files(self) -> list[str]:
        """Downloaded files of another version than `version` (none when version is null:
        the newest is whatever the dir holds until `task=download` refreshes it)."""
        records = self.download_records() or {}
        if self.version is None:
            return []
        return sorted(name for name, record in records.items()
                      if isinstance(record, dict)
                      and not str(record.get("source", "")).startswith(f"{self.version}/"))


def build_source(data_cfg: Any) -> DataSource:
    from numerlab.registry import build

    return build(data_cfg, "data", DataSource)


def prepare(data_cfg: Any) -> Path:
    """Make `data_cfg.dir` ready to load with the source its `_target_` names (synthetic:
    generated; v5: checked) and return it."""
    return build_source(data_cfg).prepare()
