"""Training throughput of numerlab's Lightning path against a plain PyTorch loop.

    python benchmarks/nn_throughput.py                       # cpu, MLP and TabNet
    python benchmarks/nn_throughput.py --device cuda --rows 1000000

Both sides train the same network (built from conf/model/<model>.yaml, same seed), on the
same int8 tensors, with the same batches (numerlab's ShuffledBatchSampler), batch size,
optimizer (AdamW from the config), loss (MSE + TabNet's sparsity term) and int8 -> float
conversion on the device. numerlab runs `NeuralModel.fit` as a user would, with the
trainer group for the device (conf/trainer/<device>.yaml) and these keys set for the
measurement: max_epochs=1, no validation set, logger=false, enable_checkpointing=false,
enable_progress_bar=false, enable_model_summary=false. The plain loop is
`for idx in sampler: cut, convert, forward, loss, zero_grad, backward, step`.

rows/s = training rows / seconds of one epoch. "epoch" times the training epoch alone
(a callback from on_train_epoch_start to on_train_epoch_end); "fit" times the whole
`NeuralModel.fit` call (Trainer construction and setup included). Each side runs one
warm-up epoch, then `--repeats` epochs interleaved with the other side; rows/s and the
ratios use each side's fastest epoch (the least disturbed by other load), "median" is the
median of the per-repeat epoch ratios.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError
from numerlab.models.base import FitContext
from numerlab.models.nn.datamodule import ShuffledBatchSampler
from numerlab.models.nn.device import resolve_accelerator, torch_device
from numerlab.models.nn.lightning_module import build_network, features_to_float
from numerlab.models.nn.model import NeuralModel

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SEED = 0


def synthetic_dataset(n_rows: int, n_features: int, rows_per_era: int = 5000) -> Dataset:
    rng = np.random.default_rng(SEED)
    features = rng.integers(0, 5, size=(n_rows, n_features), dtype=np.int8)
    target = (rng.integers(0, 5, size=n_rows) / 4).astype(np.float32)
    eras = np.array([f"{i // rows_per_era:04d}" for i in range(n_rows)], dtype=object)
    return Dataset(
        ids=np.arange(n_rows).astype(str).astype(object),
        eras=eras,
        features=features,
        feature_names=[f"feature_{i}" for i in range(n_features)],
        target=target,
        target_name="target",
    )


def model_config(model: str, device: str, overrides: list[str]) -> tuple[dict, dict]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", f"trainer={device}", *overrides])
    return (
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.trainer, resolve=True),
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class EpochTimer(L.Callback):
    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, float("nan")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._start


def lightning_epoch(
    model_cfg: dict, trainer_cfg: dict, data: Dataset, device: torch.device
) -> tuple[float, float]:
    """(epoch seconds, fit seconds) of one epoch through NeuralModel.fit."""
    timer = EpochTimer(device)
    trainer = {
        **trainer_cfg,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [timer],
    }
    init = {k: v for k, v in model_cfg.items() if k != "_target_"}
    model = NeuralModel(**init)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        model.fit(data, None, FitContext(seed=SEED, run_dir=Path(run_dir), trainer=trainer))
        fit_seconds = time.perf_counter() - start
    return timer.seconds, fit_seconds


def plain_epoch(model_cfg: dict, data: Dataset, device: torch.device) -> float:
    """Seconds of one epoch of a hand-written loop over the same tensors and batches."""
    L.seed_everything(SEED, verbose=False)
    net = build_network(model_cfg["network"], data.features.shape[1], 1).to(device).train()
    optimizer = instantiate(model_cfg["optimizer"])(params=net.parameters())
    sparsity_weight = float(model_cfg.get("sparsity_weight", 0.0))
    features = torch.from_numpy(data.features)
    target = torch.from_numpy(data.target)
    sampler = ShuffledBatchSampler(
        torch.from_numpy(data.era_codes()), model_cfg["batch_size"], model_cfg["batching"], SEED
    )
    sampler.set_epoch(0)
    sync(device)
    start = time.perf_counter()
    for index in sampler.batches():
        x = features.index_select(0, index).to(device, non_blocking=True)
        y = target.index_select(0, index).to(device, non_blocking=True)
        out = net(features_to_float(x))
        if isinstance(out, tuple):
            out, sparsity = out
            loss = F.mse_loss(out[:, 0], y) + sparsity_weight * sparsity
        else:
            loss = F.mse_loss(out[:, 0], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    parser.add_argument("--models", default="mlp,tabnet")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the model config's")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        device = torch_device(resolve_accelerator(args.device))
    except NumerlabError as exc:
        raise SystemExit(f"error: {exc}") from None
    data = synthetic_dataset(args.rows, args.features)
    print(
        f"device={device} torch={torch.__version__} lightning={L.__version__} "
        f"threads={torch.get_num_threads()} rows={args.rows} features={args.features}"
    )
    print(
        f"{'model':8} {'plain rows/s':>13} {'numerlab rows/s':>16} {'epoch ratio':>12} "
        f"{'median':>7} {'fit ratio':>10}"
    )
    overrides = [f"model.batch_size={args.batch_size}"] if args.batch_size else []
    for name in args.models.split(","):
        model_cfg, trainer_cfg = model_config(name, args.device, overrides)
        torch.use_deterministic_algorithms(bool(trainer_cfg.get("deterministic", False)))
        plain_epoch(model_cfg, data, device)  # warm-up
        lightning_epoch(model_cfg, trainer_cfg, data, device)
        plain, epoch, fit = [], [], []
        for _ in range(args.repeats):
            plain.append(plain_epoch(model_cfg, data, device))
            e, f = lightning_epoch(model_cfg, trainer_cfg, data, device)
            epoch.append(e)
            fit.append(f)
        # best-of-n: the least disturbed run of each side; median of the paired ratios as
        # a check on a busy machine
        plain_rps, epoch_rps, fit_rps = (len(data) / min(t) for t in (plain, epoch, fit))
        median = statistics.median(p / e for p, e in zip(plain, epoch, strict=True))
        print(
            f"{name:8} {plain_rps:13,.0f} {epoch_rps:16,.0f} {epoch_rps / plain_rps:11.2f}x "
            f"{median:6.2f}x {fit_rps / plain_rps:9.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
