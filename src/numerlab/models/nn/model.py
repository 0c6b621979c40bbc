"""`NeuralModel`: the model protocol (fit / predict / save / load) for the torch networks,
trained by Lightning from the `model` and `trainer` configs.

`ctx.trainer` holds Lightning `Trainer` keyword arguments, passed through as they are, with
these exceptions: `accelerator` is resolved first (auto -> mps, cuda or cpu; a device that
is not there is a NumerlabError); `logger` may be true/absent (a CSV log of the per-epoch
metrics in `<run_dir>/lightning_logs`) or false; `callbacks` (Callback objects or `_target_`
configs) are added to numerlab's own (checkpoints with
`last.ckpt` in `<run_dir>/checkpoints`; early stopping and `best.ckpt` on `holdout_corr`
only when a holdout is given); `default_root_dir` is the run dir;
`gradient_clip_val` / `gradient_clip_algorithm` go to the LightningModule, which steps the
optimizer itself (manual optimization), and `accumulate_grad_batches` must stay 1 (a larger
`model.batch_size` does the same).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, ListConfig, OmegaConf

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError, message_line
from numerlab.models.base import FitContext
from numerlab.models.nn.datamodule import TabularDataModule
from numerlab.models.nn.device import resolve_accelerator, torch_device
from numerlab.models.nn.lightning_module import TabularLitModule

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state_dict.pt"
CONFIG_FILE = "network.json"
MONITOR = "holdout_corr"  # mean per-era CORR of the holdout carved from the training eras

# Lightning warnings that do not apply here: batches are cut in-process (workers would only
# add IPC), training is logged per epoch, no validation set means no val batches, a resumed
# run checkpoints into its own run dir, and a torch/Lightning version-pair deprecation.
_QUIET = (
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*Total length of .* across ranks is zero.*",
    r".*The dirpath has changed from.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
)


def _plain(value: Any) -> Any:
    """OmegaConf containers (interpolations resolved) -> dicts and lists."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value



class NeuralModel:
    """A torch network (MLP, ResNet, TabNet, or any `_target_` nn.Module taking
    `in_features` and `out_features`) trained with Lightning.

    network:         `_target_` config of the network, without in/out features (set at fit)
    optimizer:       `_partial_` optimizer config (called with the parameters)
    scheduler:       `_partial_` LR scheduler config (called with the optimizer), or None
    batch_size:      training rows per step (must not exceed the training rows)
    eval_batch_size: rows per forward pass in validation and predict
    batching:        "rows" (shuffle all rows) or "era" (each batch within one era)
    batches_per_iteration: training batches per Lightning iteration (one optimizer step
                     each); > 1 spreads Lightning's per-iteration overhead over several steps
    loss:            "mse" or "corr" on the main target
    aux_weight:      weight of the auxiliary-target heads' MSE (0: no heads)
    sparsity_weight: weight of the network's sparsity loss (TabNet's lambda_sparse)
    patience:        early-stopping patience in epochs on the holdout's CORR (None: off)
    restore_best:    after training, predict with the best-holdout-CORR epoch's weights
                     (without a holdout: the last epoch's)
    pin_memory:      pin batches for host-to-GPU copies (None: when training on cuda)
    num_workers:     DataLoader workers (0: batches cut in the main process, fastest here)
    **hyperparameters: top-level copies of network hyperparameters that the config
                     interpolates into `network` (e.g. `n_steps`), kept for the record.
    """

    def __init__(
        self,
        network: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None,
        scheduler: Mapping[str, Any] | None,
        batch_size: int,
        eval_batch_size: int,
        batching: str,
        batches_per_iteration: int,
        loss: str,
        aux_weight: float,
        sparsity_weight: float,
        patience: int | None,
        restore_best: bool,
        pin_memory: bool | None,
        num_workers: int,
        **hyperparameters: Any,
    ) -> None:
        self.config: dict[str, Any] = {
            "network": _plain(network),
            "optimizer": _plain(optimizer),
            "scheduler": _plain(scheduler),
            "batch_size": int(batch_size),
            "eval_batch_size": int(eval_batch_size),
            "batching": batching,
            "batches_per_iteration": int(batches_per_iteration),
            "loss": loss,
            "aux_weight": float(aux_weight),
            "sparsity_weight": float(sparsity_weight),
            "patience": None if patience is None else int(patience),
            "restore_best": bool(restore_best),
            "pin_memory": pin_memory,
            "num_workers": int(num_workers),
        }
        self.hyperparameters = {k: _plain(v) for k, v in hyperparameters.items()}
        if (
            not isinstance(self.config["network"], Mapping)
            or "_target_" not in self.config["network"]
        ):
            raise NumerlabError("model.network must be a config with a _target_ (an nn.Module)")
        self.module: TabularLitModule | None = None
        self.device = torch.device("cpu")
        self.history: list[dict[str, float]] = []
        self.best_checkpoint: str | None = None

    # -- fit ------------------------------------------------------------------------------

    def _build_module(self, in_features: int, out_features: int) -> TabularLitModule:
        c = self.config
        return TabularLitModule(
            network=c["network"],
            in_features=in_features,
            out_features=out_features,
            optimizer=c["optimizer"],
            scheduler=c["scheduler"],
            loss=c["loss"],
            aux_weight=c["aux_weight"],
            sparsity_weight=c["sparsity_weight"],
        )

    def check(self, ctx: FitContext) -> None:
        """Fail at once, before data is loaded: an accelerator that is not there, a
        checkpoint file that does not exist, a setting out of range, a network, optimizer
        or scheduler its settings cannot build (built here on a few inputs), and a trainer
        key or value Lightning refuses (a Trainer is built here, logging nothing)."""
        from numerlab import settings
        from numerlab.models.nn.datamodule import BATCHING_MODES
        from numerlab.models.nn.lightning_module import LOSSES

        trainer_cfg = dict(_plain(ctx.trainer) or {})
        accelerator = resolve_accelerator(trainer_cfg.pop("accelerator", "auto"))
        if ctx.ckpt_path and not Path(str(ctx.ckpt_path)).is_file():
            raise NumerlabError(f"ckpt_path={ctx.ckpt_path}: no such checkpoint file")
        c = self.config
        for key in ("batch_size", "eval_batch_size", "batches_per_iteration"):
            settings.integer(f"model.{key}", c[key], minimum=1)
        settings.integer("model.num_workers", c["num_workers"], minimum=0)
        settings.integer("model.patience", c["patience"], minimum=0, optional=True)
        settings.choice("model.batching", c["batching"], BATCHING_MODES)
        settings.choice("model.loss", c["loss"], tuple(LOSSES))
        for key in ("aux_weight", "sparsity_weight"):
            settings.number(f"model.{key}", c[key], minimum=0)
        for key in ("lr", "weight_decay"):  # conf/nn_base.yaml interpolates them
            if key in (c["optimizer"] or {}):
                settings.number(f"model.{key}", c["optimizer"][key], minimum=0)
        try:
            self._build_module(in_features=4, out_features=1).configure_optimizers()
        except NumerlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch and hydra raise many kinds here
            raise NumerlabError(f"model settings cannot build the network, optimizer or "
                                f"scheduler: {message_line(exc, last=True)}") from None
        check_trainer_config(trainer_cfg, accelerator, Path(ctx.run_dir))

    def fit(self, train: Dataset, valid: Dataset | None, ctx: FitContext) -> None:
        c = self.config
        trainer_cfg = dict(_plain(ctx.trainer) or {})
        accelerator = resolve_accelerator(trainer_cfg.pop("accelerator", "auto"))
        quiet_lightning_logs()
        L.seed_everything(int(ctx.seed), workers=True)

        use_aux = c["aux_weight"] > 0 and train.aux.shape[1] > 0
        datamodule = TabularDataModule(
            train,
            valid,
            batch_size=c["batch_size"],
            eval_batch_size=c["eval_batch_size"],
            batching=c["batching"],
            batches_per_iteration=c["batches_per_iteration"],
            seed=int(ctx.seed),
            use_aux=use_aux,
            pin_memory=accelerator == "cuda" if c["pin_memory"] is None else bool(c["pin_memory"]),
            num_workers=c["num_workers"],
        )
        out_features = 1 + (train.aux.shape[1] if use_aux else 0)
        module = self._build_module(train.features.shape[1], out_features)
        module.gradient_clip_val = trainer_cfg.pop("gradient_clip_val", None)
        module.gradient_clip_algorithm = trainer_cfg.pop("gradient_clip_algorithm", None) or "norm"
        if (trainer_cfg.get("accumulate_grad_batches") or 1) != 1:
            raise NumerlabError(
                "trainer.accumulate_grad_batches must be 1 for neural models "
                "(raise model.batch_size instead)"
            )
        if ctx.ckpt_path:
            check_checkpoint(ctx.ckpt_path, module)

        callbacks: list[L.Callback]
        callbacks, best_cb = self._checkpoint_callbacks(
            ctx.run_dir, datamodule.has_validation, trainer_cfg
        )
        if datamodule.has_validation and c["patience"] is not None:
            callbacks.append(
                EarlyStopping(
                    monitor=MONITOR, mode="max", patience=c["patience"], check_finite=True
                )
            )
        tracker_logger = ctx.tracker.lightning_logger() if ctx.tracker is not None else None
        if tracker_logger is not None and trainer_cfg.get("logger", True) is not False:
            trainer_cfg["logger"] = [csv_logger(Path(ctx.run_dir)), tracker_logger]
        trainer = build_trainer(trainer_cfg, accelerator, Path(ctx.run_dir), callbacks)
        with warnings.catch_warnings():
            for pattern in _QUIET:
                warnings.filterwarnings("ignore", message=pattern)
            trainer.fit(module, datamodule=datamodule, ckpt_path=ctx.ckpt_path or None)

        self.device = trainer.strategy.root_device
        best = best_cb.best_model_path if best_cb is not None else ""
        if c["restore_best"] and best and Path(best).is_file():
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
            self.best_checkpoint = best
        self.history = list(module.history)
        self.module = module.eval()

    @staticmethod
    def _checkpoint_callbacks(
        run_dir: Path, has_validation: bool, trainer_cfg: Mapping[str, Any]
    ) -> tuple[list[ModelCheckpoint], ModelCheckpoint | None]:
        """`last.ckpt` rewritten every epoch, and `best.ckpt` (best `holdout_corr`) when there is
        a validation set. Lightning's own `save_last` only writes when a top-k checkpoint
        was written, so "last" is a checkpoint callback of its own."""
        if trainer_cfg.get("enable_checkpointing", True) is False:
            return [], None
        dirpath = Path(run_dir) / CHECKPOINT_DIR
        last = ModelCheckpoint(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        )
        if not has_validation:
            return [last], None
        best = KeepBestCheckpoint(
            dirpath=dirpath,
            filename="best",
            monitor=MONITOR,
            mode="max",
            save_top_k=1,
            enable_version_counter=False,
        )
        return [best, last], best

    # -- predict --------------------------------------------------------------------------

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.module is None:
            raise NumerlabError("NeuralModel.predict called before fit or load")
        in_features = self.module.hparams.in_features
        if features.dtype != np.int8:
            raise NumerlabError(f"features must be int8, got {features.dtype}")
        if features.ndim != 2 or features.shape[1] != in_features:
            raise NumerlabError(
                f"features have shape {features.shape}; the model expects (n, {in_features})"
            )
        module = self.module.to(self.device).eval()
        batch = self.config["eval_batch_size"]
        prediction = np.empty(len(features), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(features), batch):
                rows = np.ascontiguousarray(features[start : start + batch])
                x = torch.from_numpy(rows).to(self.device, non_blocking=True)
                out = module.predict_main(x).float().cpu().numpy()
                prediction[start : start + len(rows)] = out
        return prediction

    # -- save / load ----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        if self.module is None:
            raise NumerlabError("NeuralModel.save called before fit")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        torch.save(state, path / STATE_FILE)
        meta = {
            "init": {**self.config, **self.hyperparameters},
            "in_features": int(self.module.hparams.in_features),
            "out_features": int(self.module.hparams.out_features),
            "history": self.history,
        }
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path) -> NeuralModel:
        path = Path(path)
        config_file, state_file = path / CONFIG_FILE, path / STATE_FILE
        for required in (config_file, state_file):
            if not required.is_file():
                raise NumerlabError(f"{required}: missing; not a saved NeuralModel")
        try:
            meta = json.loads(config_file.read_text())
            model = cls(**meta["init"])
            module = model._build_module(meta["in_features"], meta["out_features"])
        except NumerlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - JSON, a missing key, a bad argument
            raise NumerlabError(f"{config_file}: cannot rebuild the network "
                                f"({type(exc).__name__}: {message_line(exc)})") from None
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - torch's unpickler and shape errors
            raise NumerlabError(f"{state_file}: not a readable state of this network "
                                f"({type(exc).__name__}: {message_line(exc)})") from None
        model.module = module.eval()
        model.history = meta.get("history", [])
        model.device = torch_device(resolve_accelerator("auto"))
        return model


class ParameterSummary(L.Callback):
    """One log line about the network instead of Lightning's summary table (whose FLOPs
    column is 0 without an example input)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = list(pl_module.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        size_mb = sum(p.numel() * p.element_size() for p in params) / 2**20
        network = getattr(pl_module, "net", pl_module)
        log.info("network %s: %s parameters (%s trainable), %.3f MB", type(network).__name__,
                 f"{total:,}", f"{trainable:,}", size_mb)


def csv_logger(run_dir: Path) -> CSVLogger:
    """Per-epoch metrics as CSV in <run dir>/lightning_logs/metrics.csv."""
    return CSVLogger(save_dir=str(run_dir), name="lightning_logs", version="")


class KeepBestCheckpoint(ModelCheckpoint):
    """`best.ckpt` that survives a resume into another run dir: Lightning forgets the best
    score when the checkpoint dir changes, so epochs before the resume could never win.
    Here the best score and its weights (copied into the new dir) are kept."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import shutil

        super().load_state_dict(state_dict)
        old_dir = state_dict.get("dirpath")
        score, old_best = state_dict.get("best_model_score"), state_dict.get("best_model_path")
        if old_dir == self.dirpath or score is None or not old_best:
            return
        if not Path(old_best).is_file():
            return
        Path(self.dirpath).mkdir(parents=True, exist_ok=True)
        new_best = str(Path(self.dirpath) / Path(old_best).name)
        shutil.copyfile(old_best, new_best)
        self.best_model_score = score
        self.best_model_path = self.kth_best_model_path = new_best
        self.kth_value = score
        self.best_k_models = {new_best: score}


def quiet_lightning_logs() -> None:
    """Lightning's loggers as a run wants them, set when a fit starts (importing this
    module changes no logging): Lightning advertises a cloud logger on every fit, and a
    run's log is no place for ads; it prints its info lines through handlers of its own
    *and* passes them on to the root logger (Hydra's console and run.log), so every line
    came out twice: keep the root's."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(getattr(f, "numerlab", False) for f in rank_zero.filters):
        def no_ads(record: logging.LogRecord) -> bool:
            return "litlogger" not in record.getMessage()
        no_ads.numerlab = True  # type: ignore[attr-defined]
        rank_zero.addFilter(no_ads)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


# trainer keys numerlab reads itself (the module clips gradients; see the module docstring)
OWN_TRAINER_KEYS = ("accelerator", "gradient_clip_val", "gradient_clip_algorithm")


def check_trainer_config(trainer_cfg: Mapping[str, Any], accelerator: str, run_dir: Path
                         ) -> None:
    """NumerlabError for a `trainer` key that is not a Lightning Trainer argument, or values
    Lightning refuses (`trainer.precision=64x`): a Trainer is built from them, with no
    logger and no checkpoints, so nothing is written."""
    import inspect

    from numerlab.settings import integer, keys

    lightning_keys = [n for n in inspect.signature(L.Trainer.__init__).parameters
                      if n != "self"]
    keys("trainer", trainer_cfg, list(dict.fromkeys([*OWN_TRAINER_KEYS, *lightning_keys])))
    # Lightning takes 0 (an untrained network scored as if it were a model) and -1 (train
    # forever); a run must train at least one epoch
    integer("trainer.max_epochs", trainer_cfg.get("max_epochs"), minimum=1, optional=True)
    probe = {k: v for k, v in trainer_cfg.items() if k not in OWN_TRAINER_KEYS}
    probe.update(logger=False, enable_checkpointing=False, callbacks=None)
    quiet = logging.getLogger("lightning.pytorch")  # its device lines belong to the fit
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_trainer(probe, accelerator, run_dir, [])
    finally:
        quiet.setLevel(level)


def build_trainer(
    trainer_cfg: Mapping[str, Any], accelerator: str, run_dir: Path, callbacks: list[L.Callback]
) -> L.Trainer:
    """A Lightning Trainer from the `trainer` config (see the module docstring)."""
    kwargs = dict(trainer_cfg)
    extra = kwargs.pop("callbacks", None) or []
    if kwargs.pop("enable_model_summary", True):
        callbacks = [*callbacks, ParameterSummary()]
    kwargs["enable_model_summary"] = False  # Lightning's table ends in "Total FLOPs: 0"
    logger = kwargs.pop("logger", True)
    if logger is True or logger is None:
        logger = csv_logger(run_dir)
    try:
        extra = [cb if isinstance(cb, L.Callback) else instantiate(cb) for cb in extra]
        return L.Trainer(
            accelerator=accelerator,
            default_root_dir=str(run_dir),
            callbacks=[*callbacks, *extra],
            logger=logger,
            **kwargs,
        )
    except (TypeError, ValueError, MisconfigurationException, InstantiationException) as exc:
        raise NumerlabError(f"trainer config: {message_line(exc)}") from None


def check_checkpoint(ckpt_path: str | Path, module: TabularLitModule) -> None:
    """Fail with one line, before training, when `ckpt_path` cannot resume `module`."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise NumerlabError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the reason, it cannot be resumed from
        raise NumerlabError(
            f"ckpt_path={ckpt_path}: not a readable Lightning checkpoint ({message_line(exc)})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise NumerlabError(f"ckpt_path={ckpt_path}: not a Lightning checkpoint (no state_dict)")
    reason = architecture_difference(checkpoint, module)
    if reason:
        raise NumerlabError(
            f"ckpt_path={ckpt_path}: checkpoint is from a different architecture ({reason})"
        )


def architecture_difference(checkpoint: Mapping[str, Any], module: TabularLitModule) -> str | None:
    """Why the checkpoint's weights do not fit `module`, or None when they do."""
    saved_hp = dict(checkpoint.get("hyper_parameters") or {})
    saved_net = dict(saved_hp.get("network") or {})
    net = dict(module.hparams.network)
    if saved_net.get("_target_", net["_target_"]) != net["_target_"]:
        return f"network {saved_net['_target_']} in the checkpoint, {net['_target_']} configured"
    saved_state, state = checkpoint["state_dict"], module.state_dict()
    mismatch = sorted(set(saved_state) ^ set(state)) or [
        k for k in state if tuple(saved_state[k].shape) != tuple(state[k].shape)
    ]
    if not mismatch:
        return None
    for key in ("in_features", "out_features"):
        if key in saved_hp and saved_hp[key] != module.hparams[key]:
            return f"{key}={saved_hp[key]} in the checkpoint, {module.hparams[key]} configured"
    changed = [
        f"{k}={saved_net.get(k)} in the checkpoint, {net.get(k)} configured"
        for k in sorted(set(saved_net) | set(net))
        if saved_net.get(k) != net.get(k)
    ]
    if changed:
        return "; ".join(changed)
    key = mismatch[0]
    if key in saved_state and key in state:
        return (
            f"{key} has shape {tuple(saved_state[key].shape)} in the checkpoint, "
            f"{tuple(state[key].shape)} configured"
        )
    where = "checkpoint" if key in saved_state else "configured network"
    return f"parameter {key} only in the {where}"
