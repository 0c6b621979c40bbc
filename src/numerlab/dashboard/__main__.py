"""`python -m numerlab.dashboard [overrides]`: conf/ composed with Hydra's compose API (as
`registry.compose` composes it), `task=dashboard` added, then run as run.py runs a task
(numerlab.cli.run_job); a config that cannot be composed or a bad setting is one line
`error: ...` and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from numerlab import cli, registry
    from numerlab.errors import NumerlabError, message_line

    overrides = list(sys.argv[1:] if argv is None else argv)
    cli.register_resolvers()
    try:
        cfg = registry.compose("config", ["task=dashboard", *overrides], hydra_config=True)
        run_dir = Path(cfg.hydra.run.dir)  # conf/task/dashboard.yaml's, as run.py's door
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"error: {cli.config_error_line(exc)}", file=sys.stderr)
        return 2
    with open_dict(cfg):
        del cfg["hydra"]  # a task sees the job's config, as under run.py
    try:
        cli.run_job(cfg, run_dir)
    except NumerlabError as exc:
        print(f"error: {message_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
