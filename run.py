"""numerlab entry point: `python run.py model=xgboost features=medium seed=3`.

Hydra composes conf/; the task it names (`task=train` by default, conf/task/) does the work.
`-m` sweeps.
"""

import warnings

import hydra
from omegaconf import DictConfig

# conf/hydra/launcher/ray.yaml replaces the Ray plugin's preset of the same name (which cannot
# join an existing cluster); Hydra warns about schema matching for that, to no purpose here.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    # Imported here so `python run.py --help` stays fast.
    from numerlab.cli import run_hydra_job

    return run_hydra_job(cfg)


if __name__ == "__main__":
    from numerlab.cli import main as report_errors

    report_errors(main)  # a config Hydra cannot compose: one line `error: ...`, exit 2
