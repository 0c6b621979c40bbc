"""task=download: bring Numerai's files of `data.version` (null = the newest listed) into
`data.dir`, with a progress bar; only files missing or changed are fetched, an interrupted
download resumes (`TournamentClient.sync_dataset`). Needs no API keys.

    python run.py task=download data=v5 data.version=v5.3 data.dir=data/numerai
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from numerlab import artifacts, pipeline
from numerlab.data.source import V5Source, build_source
from numerlab.errors import NumerlabError

log = logging.getLogger(__name__)

DOWNLOAD_FILE = "download.json"


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    source = build_source(cfg.data)
    if not isinstance(source, V5Source):
        raise NumerlabError(f"task=download fetches Numerai's v5 files: choose data=v5 "
                            f"(data._target_ is {cfg.data.get('_target_')})")
    fetch = pipeline.data_fetcher(cfg)
    if fetch is None:
        raise NumerlabError("task=download needs the tournament group (conf/tournament/)")
    version, paths = fetch(source.version, source.dir)
    files = {path.name: path.stat().st_size for path in paths}
    show(version, source.dir, files)
    artifacts.write_record(Path(run_dir), DOWNLOAD_FILE, {
        "version": version, "dir": str(source.dir), "files": files})
    return {}


def show(version: str, data_dir: Path, files: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Numerai data {version} in {data_dir}")
    table.add_column("file")
    table.add_column("MB", justify="right")
    for name, size in files.items():
        table.add_row(name, f"{size / 2**20:.1f}")
    Console().print(table)
