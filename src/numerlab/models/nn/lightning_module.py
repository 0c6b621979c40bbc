"""One LightningModule for every tabular network: the network, loss, optimizer and scheduler
all come from config, and validation is scored with Numerai's per-era CORR."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor, nn

from numerlab.errors import NumerlabError, message_line
from numerlab.scoring import per_era_scores

FEATURE_CENTER = 2.0
FEATURE_SCALE = 0.5
"""Numerai features are int8 bins 0..4; a network sees (x - 2) / 2, i.e. values in [-1, 1]."""


def features_to_float(x: Tensor) -> Tensor:
    """int8 feature batch -> float32 in [-1, 1], on whatever device `x` is on."""
    return (x.to(torch.float32) - FEATURE_CENTER) * FEATURE_SCALE


def mse_loss(prediction: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(prediction.float(), target)


def corr_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """1 - Pearson correlation over the batch (with era batching: the era's correlation)."""
    p = prediction.float() - prediction.float().mean()
    t = target - target.mean()
    return 1 - (p * t).sum() / (p.norm() * t.norm()).clamp_min(1e-12)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse_loss, "corr": corr_loss}


def masked_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """MSE over the entries whose target is known (auxiliary targets may be NaN)."""
    known = ~torch.isnan(target)
    diff = torch.where(known, prediction.float() - target, torch.zeros_like(target))
    return (diff * diff).sum() / known.sum().clamp_min(1)


def build_network(config: Mapping[str, Any], in_features: int, out_features: int) -> nn.Module:
    """Instantiate `config` (a `_target_` mapping) for `in_features` inputs."""
    target = config.get("_target_", "<missing _target_>")
    try:
        network = instantiate(dict(config), in_features=in_features, out_features=out_features)
    except InstantiationException as exc:  # wraps the real cause in a multi-line message
        raise NumerlabError(f"model.network: cannot build {target}: "
                            f"{message_line(exc, last=True)}") from None
    if not isinstance(network, nn.Module):
        raise NumerlabError(f"model.network: {target} is not a torch.nn.Module")
    return network


def mean_era_corr(prediction: np.ndarray, target: np.ndarray, era: np.ndarray) -> float:
    """Mean per-era Numerai CORR; an era of constant predictions counts as 0, eras with fewer
    than 2 rows (cut by `limit_val_batches`) are skipped, and non-finite predictions give NaN
    (which ends training through early stopping's `check_finite`)."""
    if not np.isfinite(prediction).all():
        return float("nan")
    _, inverse, counts = np.unique(era, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= 2
    if not keep.any():
        return float("nan")
    frame = pl.DataFrame({"era": era[keep], "prediction": prediction[keep], "target": target[keep]})
    corr = per_era_scores(frame)["corr"].to_numpy()
    return float(np.nan_to_num(corr, nan=0.0).mean()) if len(corr) else float("nan")


class TabularLitModule(L.LightningModule):
    """Trains `network` (a `_target_` config) on int8 feature batches.

    loss = LOSSES[loss](output[:, 0], target)
         + aux_weight * masked MSE of output[:, 1:] against the auxiliary targets
         + sparsity_weight * the network's sparsity loss (TabNet; networks returning a pair)
    Logs `train_loss` and `holdout_corr` (mean per-era CORR of the holdout carved from the
    training eras) each epoch.

    Optimization is manual: a Lightning batch is a chunk of training batches (see
    `TabularDataModule.batches_per_iteration`) and the module takes one optimizer step per
    training batch, so `trainer.global_step` counts optimizer steps. The LR scheduler, if
    any, steps once per epoch (ReduceLROnPlateau on `holdout_corr`); gradient clipping comes
    from the trainer config's `gradient_clip_val` / `gradient_clip_algorithm`.
    """

    def __init__(
        self,
        network: Mapping[str, Any],
        in_features: int,
        out_features: int = 1,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        loss: str = "mse",
        aux_weight: float = 0.0,
        sparsity_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise NumerlabError(f"model.loss={loss} is not one of {', '.join(LOSSES)}")
        self.save_hyperparameters()
        self.net = build_network(network, in_features, out_features)
        self.loss_fn = LOSSES[loss]
        self.n_aux = out_features - 1
        self.history: list[dict[str, float]] = []
        # From the trainer config: with manual optimization the module clips, not Lightning.
        self.gradient_clip_val: float | None = None
        self.gradient_clip_algorithm = "norm"
        self.automatic_optimization = False
        self._plain_backward = False
        self._epoch_losses: list[Tensor] = []
        self._val_outputs: list[tuple[Tensor, Tensor, Tensor]] = []

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """int8 (b, k) -> (output (b, out_features), sparsity loss or None)."""
        out = self.net(features_to_float(x))
        if isinstance(out, tuple):
            return out[0], out[1]
        return out, None

    def predict_main(self, x: Tensor) -> Tensor:
        """The main-target prediction (b,) for an int8 batch."""
        return self(x)[0][:, 0]

    # -- training -----------------------------------------------------------------------

    def training_loss(self, x: Tensor, y: Tensor, aux: Tensor) -> Tensor:
        out, sparsity = self(x)
        loss = self.loss_fn(out[:, 0], y)
        if self.n_aux:
            loss = loss + self.hparams.aux_weight * masked_mse(out[:, 1:], aux)
        if sparsity is not None and self.hparams.sparsity_weight:
            loss = loss + self.hparams.sparsity_weight * sparsity
        return loss

    def training_step(self, batch: tuple[Any, ...], batch_idx: int) -> None:
        """One optimizer step per training batch in the chunk: Lightning's per-iteration
        hooks run once per chunk, the steps themselves are a plain PyTorch loop."""
        x, y, aux, _, sizes = batch
        optimizer = self.optimizers()
        for xb, yb, ab in zip(x.split(sizes), y.split(sizes), aux.split(sizes), strict=True):
            loss = self.training_loss(xb, yb, ab)
            optimizer.zero_grad()
            if self._plain_backward:
                loss.backward()
            else:
                self.manual_backward(loss)
            if self.gradient_clip_val:
                self.clip_gradients(
                    optimizer,
                    gradient_clip_val=self.gradient_clip_val,
                    gradient_clip_algorithm=self.gradient_clip_algorithm,
                )
            optimizer.step()
            # kept on the device and averaged once per epoch: no host sync per step
            self._epoch_losses.append(loss.detach())

    def on_fit_start(self) -> None:
        # Lightning's backward adds loss scaling (16-mixed) and per-step hooks; on a single
        # device without a scaler it is loss.backward() plus ~0.1 ms of hook calls per step.
        precision = self.trainer.precision_plugin
        self._plain_backward = (
            isinstance(self.trainer.strategy, SingleDeviceStrategy)
            and getattr(precision, "scaler", None) is None
        )

    def on_train_epoch_start(self) -> None:
        self._epoch_losses.clear()

    def on_train_epoch_end(self) -> None:
        record: dict[str, float] = {"epoch": float(self.current_epoch)}
        if self._epoch_losses:
            train_loss = torch.stack(self._epoch_losses).mean()
            self._epoch_losses.clear()
            self.log("train_loss", train_loss, prog_bar=True)
            record["train_loss"] = float(train_loss)
        holdout_corr = self.trainer.callback_metrics.get("holdout_corr")
        if holdout_corr is not None:
            record["holdout_corr"] = float(holdout_corr)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if holdout_corr is not None:
                    scheduler.step(holdout_corr)
            else:
                scheduler.step()
        self.history.append(record)

    # -- validation ---------------------------------------------------------------------

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x, y, _, era, _ = batch
        self._val_outputs.append((self.predict_main(x).float(), y, era))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        prediction, target, era = (
            torch.cat(parts).cpu().numpy() for parts in zip(*self._val_outputs, strict=True)
        )
        self._val_outputs.clear()
        corr = mean_era_corr(prediction, target, era)
        self.log("holdout_corr", corr, prog_bar=True)

    # -- optimization -------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        make_optimizer = instantiate(
            self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "_partial_": True}
        )
        optimizer = make_optimizer(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
