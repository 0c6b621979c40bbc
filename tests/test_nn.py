"""Neural models: real Lightning training on tiny data, configs composed from conf/, and
`python run.py` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest
from conftest import SMALL_DATA, compose, run_cli, run_in_process
from hydra.utils import instantiate
from omegaconf import OmegaConf

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError
from numerlab.models.base import FitContext, load_model, save_model
from numerlab.scoring import per_era_scores

if TYPE_CHECKING:  # torch and Lightning: imported where used, not when pytest collects
    from numerlab.models.nn.model import NeuralModel

MODELS = ("mlp", "resnet", "tabnet")
# Small networks and batches: a few dozen optimizer steps in well under a second.
SMALL_NET = {
    "mlp": ["model.d_hidden=32", "model.lr=3e-3"],
    "resnet": ["model.d_main=32", "model.lr=3e-3"],
    "tabnet": ["model.n_steps=2", "model.virtual_batch_size=64", "model.lr=2e-2"],
}
QUIET_TRAINER = [
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.logger=false",
    "trainer.num_sanity_val_steps=0",
]


# -- data ---------------------------------------------------------------------------------


def make_dataset(
    n_eras: int = 20, rows: int = 100, k: int = 12, seed: int = 0, n_aux: int = 0
) -> Dataset:
    """int8 features with a strong, partly nonlinear signal in the first five columns."""
    rng = np.random.default_rng(seed)
    n = n_eras * rows
    features = rng.integers(0, 5, size=(n, k), dtype=np.int8)
    z = (features.astype(np.float32) - 2) / 2
    latent = z[:, 0] + z[:, 1] - z[:, 2] + z[:, 3] * z[:, 4] + 0.4 * rng.standard_normal(n)
    target = (np.digitize(latent, np.quantile(latent, [0.05, 0.25, 0.75, 0.95])) / 4).astype(
        np.float32
    )
    aux = np.empty((n, 0), dtype=np.float32)
    if n_aux:
        aux = (target[:, None] + 0.1 * rng.standard_normal((n, n_aux))).astype(np.float32)
        aux[rng.random((n, n_aux)) < 0.2] = np.nan  # aux targets may be unknown
    return Dataset(
        ids=np.array([f"id{seed}_{i}" for i in range(n)], dtype=object),
        eras=np.repeat([f"{e:04d}" for e in range(n_eras)], rows).astype(object),
        features=features,
        feature_names=[f"feature_{i}" for i in range(k)],
        target=target,
        target_name="target",
        aux=aux,
        aux_names=[f"target_aux_{j}" for j in range(n_aux)],
    )


@pytest.fixture(scope="module")
def train_set() -> Dataset:
    return make_dataset(seed=0)


@pytest.fixture(scope="module")
def valid_set() -> Dataset:
    return make_dataset(n_eras=6, seed=1)


def mean_corr(prediction: np.ndarray, data: Dataset) -> float:
    frame = pl.DataFrame(
        {"era": data.eras.astype(str), "prediction": prediction, "target": data.target}
    )
    return float(per_era_scores(frame)["corr"].mean())


# -- fitting through the composed config, as the pipeline does -----------------------------


def configs(model: str, *overrides: str):
    cfg = compose(
        [f"model={model}", *QUIET_TRAINER, "model.batch_size=128", *SMALL_NET[model], *overrides]
    )
    return cfg.model, OmegaConf.to_container(cfg.trainer, resolve=True), cfg


def fit(
    model: str,
    train: Dataset,
    valid: Dataset | None,
    run_dir: Path,
    *overrides: str,
    seed: int = 0,
    ckpt_path: str | None = None,
) -> NeuralModel:
    model_cfg, trainer_cfg, _ = configs(model, "trainer.max_epochs=4", *overrides)
    nn_model = instantiate(model_cfg, _recursive_=False)
    nn_model.fit(
        train,
        valid,
        FitContext(seed=seed, run_dir=run_dir, trainer=trainer_cfg, ckpt_path=ckpt_path,
                   holdout=valid is not None),
    )
    return nn_model


@pytest.fixture(scope="module", params=MODELS)
def fitted(request, tmp_path_factory, train_set, valid_set):
    run_dir = tmp_path_factory.mktemp(request.param)
    return request.param, fit(request.param, train_set, valid_set, run_dir), run_dir


def test_each_model_beats_a_constant_predictor(fitted, valid_set):
    name, model, run_dir = fitted
    prediction = model.predict(valid_set.features)
    assert prediction.dtype == np.float32 and prediction.shape == (len(valid_set),)
    # a constant predictor has no per-era correlation at all
    assert mean_corr(prediction, valid_set) > 0.3, (name, model.history)
    assert model.history and all("holdout_corr" in h and "train_loss" in h for h in model.history)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_save_load_round_trip_predicts_the_same(fitted, valid_set, tmp_path):
    from numerlab.models.nn.model import NeuralModel

    _, model, _ = fitted
    save_model(model, tmp_path / "model", valid_set.feature_names)
    loaded, feature_names = load_model(tmp_path / "model")
    assert isinstance(loaded, NeuralModel) and feature_names == valid_set.feature_names
    np.testing.assert_array_equal(
        loaded.predict(valid_set.features), model.predict(valid_set.features)
    )


def test_same_seed_same_predictions_seed_zero_included(train_set, valid_set, tmp_path):
    runs = {
        (seed, i): fit(
            "mlp", train_set, valid_set, tmp_path / f"{seed}-{i}", "trainer.max_epochs=2", seed=seed
        ).predict(valid_set.features)
        for seed, i in [(0, 0), (0, 1), (1, 0)]
    }
    np.testing.assert_array_equal(runs[0, 0], runs[0, 1])
    assert not np.array_equal(runs[0, 0], runs[1, 0])


def test_resume_continues_from_the_checkpoint_epoch(train_set, valid_set, tmp_path):
    # lr=0: holdout_corr never improves after epoch 0, and last.ckpt must still be the last epoch
    import torch

    first = fit(
        "mlp",
        train_set,
        valid_set,
        tmp_path / "first",
        "trainer.max_epochs=2",
        "model.patience=null",
        "model.lr=0",
    )
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert [h["epoch"] for h in first.history] == [0, 1]
    assert torch.load(last, weights_only=True)["epoch"] == 1
    best = tmp_path / "first" / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=True)["epoch"] == 0

    resumed = fit(
        "mlp",
        train_set,
        valid_set,
        tmp_path / "resumed",
        "trainer.max_epochs=3",
        "model.patience=null",
        ckpt_path=str(last),
    )
    assert [h["epoch"] for h in resumed.history] == [2]  # only the missing epoch ran
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = torch.load(last, weights_only=True)["global_step"] // 2
    assert state["epoch"] == 2 and state["global_step"] == 3 * steps_per_epoch


def test_checkpoint_from_another_architecture_is_one_line(train_set, valid_set, tmp_path):
    fit("mlp", train_set, None, tmp_path / "mlp", "trainer.max_epochs=1")
    ckpt = str(tmp_path / "mlp" / "checkpoints" / "last.ckpt")
    cases = [
        ("mlp", ["model.d_hidden=48"], train_set, "d_hidden=32 in the checkpoint, 48 configured"),
        ("tabnet", [], train_set, "MLP in the checkpoint, numerlab.models.nn.modules.TabNet"),
        ("mlp", [], make_dataset(k=7), "in_features=12 in the checkpoint, 7 configured"),
    ]
    for name, overrides, data, needle in cases:
        with pytest.raises(NumerlabError, match="different architecture") as err:
            fit(name, data, None, tmp_path / "other", *overrides, ckpt_path=ckpt)
        assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(NumerlabError, match="no such checkpoint file"):
        fit("mlp", train_set, None, tmp_path / "other", ckpt_path=str(tmp_path / "nope.ckpt"))


def test_auxiliary_heads_train_with_missing_aux_targets(tmp_path):
    data = make_dataset(n_eras=8, seed=2, n_aux=2)
    model = fit("mlp", data, None, tmp_path, "trainer.max_epochs=1", "model.aux_weight=0.5")
    assert model.module.hparams.out_features == 3
    assert np.isfinite(model.history[0]["train_loss"])
    assert model.predict(data.features).shape == (len(data),)


@pytest.mark.slow  # a longer fit
def test_corr_loss_and_era_batching_train(train_set, valid_set, tmp_path):
    model = fit("mlp", train_set, valid_set, tmp_path, "model.loss=corr", "model.batching=era")
    assert mean_corr(model.predict(valid_set.features), valid_set) > 0.3


def test_scheduler_steps_per_epoch_and_gradients_are_clipped(train_set, tmp_path):
    import torch

    step_lr = "{_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"
    model = fit(
        "mlp",
        train_set,
        None,
        tmp_path,
        "trainer.max_epochs=2",
        f"model.scheduler={step_lr}",
        "trainer.gradient_clip_val=0.1",
    )
    assert model.module.gradient_clip_val == 0.1
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(3e-3 * 0.25)


# -- bad input: one clear line each -------------------------------------------------------


def test_batch_size_larger_than_the_data(train_set, tmp_path):
    with pytest.raises(
        NumerlabError,
        match=r"model.batch_size=5000 is larger than the "
        r"training data \(2000 rows\)",
    ):
        fit("mlp", train_set, None, tmp_path, "model.batch_size=5000")


def test_nan_in_the_training_target_is_named(tmp_path):
    data = make_dataset(n_eras=4)
    data.target[[3, 10, 11]] = np.nan
    with pytest.raises(NumerlabError, match=r"training target column 'target' has 3 NaN values"):
        fit("mlp", data, None, tmp_path)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_device_that_is_absent_is_a_clear_error(device, train_set, tmp_path, monkeypatch):
    # the device is made absent so the error path runs on any machine, GPU boxes included
    monkeypatch.setattr(f"numerlab.models.nn.device.{device}_available", lambda: False)
    _, trainer_cfg, _ = configs("mlp", f"trainer={device}")
    assert trainer_cfg["accelerator"] == device
    probe = {"cuda": "torch.cuda.is_available()", "mps": "torch.backends.mps.is_available()"}
    message = (
        f"trainer.accelerator={device} but no {device.upper()} device is available "
        f"({probe[device]} is False)"
    )
    with pytest.raises(NumerlabError) as err:
        fit("mlp", train_set, None, tmp_path, f"trainer={device}")
    assert str(err.value) == message


def test_bad_trainer_and_model_options_are_named(train_set, tmp_path):
    from numerlab.models.nn.device import resolve_accelerator

    with pytest.raises(NumerlabError, match="trainer.accelerator=tpu is not one of"):
        resolve_accelerator("tpu")
    with pytest.raises(NumerlabError, match="trainer config: .*precision"):
        fit("mlp", train_set, None, tmp_path, "trainer.precision=12-bogus")
    with pytest.raises(NumerlabError, match="model.batching=weekly is not one of rows, era"):
        fit("mlp", train_set, None, tmp_path, "model.batching=weekly")
    with pytest.raises(NumerlabError, match="model.loss=mae is not one of mse, corr"):
        fit("mlp", train_set, None, tmp_path, "model.loss=mae")


# -- configs -------------------------------------------------------------------------------


@pytest.mark.parametrize("trainer", ["auto", "cpu", "cuda", "mps"])
def test_trainer_configs_compose(trainer):
    cfg = compose(["model=mlp", f"trainer={trainer}"])
    assert cfg.trainer.accelerator == trainer
    assert cfg.trainer.devices == 1 and cfg.trainer.precision == "32-true"
    assert cfg.trainer.max_epochs >= 1
    assert isinstance(cfg.trainer.deterministic, bool)


def test_auto_accelerator_resolves_to_a_present_device():
    import torch

    from numerlab.models.nn.device import resolve_accelerator

    expected = (
        "mps"
        if torch.backends.mps.is_available()
        else "cuda"
        if torch.cuda.is_available()
        else "cpu"
    )
    assert resolve_accelerator("auto") == expected


def test_top_level_hyperparameters_reach_the_network():
    model_cfg, _, _ = configs("tabnet", "model.n_steps=5", "model.mask_type=entmax")
    model = instantiate(model_cfg, _recursive_=False)
    assert model.config["network"]["n_steps"] == 5
    assert model.config["network"]["mask_type"] == "entmax"
    assert model.config["optimizer"]["lr"] == 2e-2
    for name in MODELS:
        cfg = compose([f"model={name}", "trainer.precision=bf16-mixed"])
        assert OmegaConf.to_container(cfg.model, resolve=True)["network"]["_target_"]
        assert cfg.trainer.precision == "bf16-mixed"


def test_bf16_mixed_precision_trains_on_cpu(train_set, tmp_path):
    model = fit(
        "mlp", train_set, None, tmp_path, "trainer.max_epochs=1", "trainer.precision=bf16-mixed"
    )
    assert np.isfinite(model.predict(train_set.features)).all()


# -- modules --------------------------------------------------------------------------------


def network_settings(name: str) -> dict:
    """conf/model/<name>.yaml's network settings, resolved, without its `_target_`."""
    from omegaconf import OmegaConf

    network = OmegaConf.to_container(compose([f"model={name}"]).model.network, resolve=True)
    network.pop("_target_")
    return network


@pytest.mark.parametrize("name, network", [("mlp", "MLP"), ("resnet", "ResNet"),
                                           ("tabnet", "TabNet")])
def test_networks_map_features_to_outputs(name, network):
    import torch

    from numerlab.models.nn import modules

    net = getattr(modules, network)(in_features=10, out_features=3, **network_settings(name))
    out = net(torch.randn(40, 10))
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (40, 3)
    # everything a device needs is a parameter or a buffer: .to() moves all of it
    storage = {t.data_ptr() for t in [*net.parameters(), *net.buffers()]}
    assert all(t.data_ptr() in storage for t in net.state_dict().values())


@pytest.mark.parametrize("mask_type", ["sparsemax", "entmax"])
def test_tabnet_masks_sum_to_one_per_row(mask_type):
    import torch

    from numerlab.models.nn import modules

    torch.manual_seed(0)
    settings = {**network_settings("tabnet"), "n_steps": 4, "mask_type": mask_type,
                "virtual_batch_size": 32}
    net = modules.TabNet(in_features=15, out_features=1, **settings).eval()
    _, masks = net.forward_masks(torch.randn(100, 15))
    assert masks.shape == (4, 100, 15)
    assert (masks >= 0).all()
    torch.testing.assert_close(masks.sum(-1), torch.ones(4, 100))
    if mask_type == "sparsemax":
        assert (masks == 0).any()  # sparse: some features are not looked at
    _, sparsity = net(torch.randn(100, 15))
    assert sparsity.ndim == 0 and sparsity >= 0


@pytest.mark.parametrize("normalize", ["sparsemax", "entmax15"])
def test_sparse_normalizers(normalize, monkeypatch):
    import torch

    from numerlab.models.nn import modules

    normalize = getattr(modules, normalize)
    z = torch.randn(16, 9, dtype=torch.float64) * 3
    p = normalize(z)
    torch.testing.assert_close(p.sum(-1), torch.ones(16, dtype=torch.float64))
    assert torch.autograd.gradcheck(normalize, (z[:4].clone().requires_grad_(),))
    # the deterministic (bisection) path used on CUDA gives the same result
    monkeypatch.setattr(modules, "_use_bisection", lambda x: True)
    torch.testing.assert_close(normalize(z), p, atol=1e-6, rtol=0)
    if normalize is modules.sparsemax:  # known projection: [0.5, 0.5, 0]
        torch.testing.assert_close(
            normalize(torch.tensor([[1.0, 1.0, -1.0]])), torch.tensor([[0.5, 0.5, 0.0]])
        )


def test_ghost_batch_norm_normalizes_each_virtual_batch():
    import torch

    from numerlab.models.nn import modules

    gbn = modules.GhostBatchNorm(3, virtual_batch_size=10, momentum=0.1).train()
    x = torch.cat([torch.randn(10, 3), 5 + 3 * torch.randn(10, 3)])
    y = gbn(x)
    for chunk in (y[:10], y[10:]):
        torch.testing.assert_close(chunk.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    gbn.eval()
    assert not torch.allclose(gbn(x)[10:].mean(0), torch.zeros(3), atol=1e-2)


# -- data module ------------------------------------------------------------------------------


def test_batches_stay_int8_and_cover_every_row(train_set):
    import torch

    from numerlab.models.nn.datamodule import TabularDataModule

    dm = TabularDataModule(train_set, train_set, batch_size=300, batches_per_iteration=3)
    seen = []
    for x, y, _aux, _era, sizes in dm.train_dataloader():
        assert x.dtype == torch.int8 and y.dtype == torch.float32
        assert sum(sizes) == len(x) and all(s <= 300 for s in sizes)
        seen.append(x)
    assert sum(map(len, seen)) == len(train_set)
    x, *_ = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.int8 and x.data_ptr() == dm.valid_batches.tensors[0].data_ptr()


def test_era_batches_come_from_one_era_each_and_reshuffle_per_epoch():
    import torch

    from numerlab.models.nn.datamodule import ShuffledBatchSampler

    era = torch.repeat_interleave(torch.arange(5), torch.tensor([30, 70, 50, 10, 40]))
    sampler = ShuffledBatchSampler(era, batch_size=25, batching="era", seed=0)
    batches = sampler.batches()
    assert all(len(torch.unique(era[b])) == 1 for b in batches)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(era)))
    assert max(map(len, batches)) <= 25
    again = sampler.batches()
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    sampler.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(batches, sampler.batches(), strict=False))


# -- end to end: python run.py ------------------------------------------------------------------


def small_run(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        *SMALL_DATA,
        f"data.dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, small_data_dir):
    run_dir = tmp_path_factory.mktemp("cli") / "mlp"
    proc = run_in_process(
        small_run(
            small_data_dir, run_dir, "model=mlp", "trainer.max_epochs=2", "model.patience=null",
            "fit.holdout_eras=6",
        )
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_run_py_mlp_writes_the_artifacts(mlp_run):
    for artifact in (
        "metrics.json",
        "per_era.parquet",
        "predictions/validation.parquet",
        "predictions/live.parquet",
        "submission.csv",
        "model/network.json",
        "model/state_dict.pt",
        "checkpoints/last.ckpt",
        "lightning_logs/metrics.csv",
    ):
        assert (mlp_run / artifact).is_file(), artifact
    metrics = json.loads((mlp_run / "metrics.json").read_text())
    assert metrics["model"] == "mlp" and metrics["n_eras"] > 0
    validation = pl.read_parquet(mlp_run / "predictions/validation.parquet")
    assert {"id", "era", "prediction", "target"} <= set(validation.columns)
    log = pl.read_csv(mlp_run / "lightning_logs/metrics.csv")
    assert {"train_loss", "holdout_corr"} <= set(log.columns)


@pytest.mark.slow
def test_run_py_resumes_from_last_ckpt(mlp_run, small_data_dir, tmp_path):
    ckpt = mlp_run / "checkpoints" / "last.ckpt"
    proc = run_in_process(
        small_run(
            small_data_dir,
            tmp_path / "resumed",
            "model=mlp",
            "trainer.max_epochs=3",
            "model.patience=null",
            f"ckpt_path={ckpt}",
        )
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((tmp_path / "resumed" / "model" / "network.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [2]


@pytest.mark.slow
def test_run_py_tabnet_with_user_overrides(small_data_dir, tmp_path):
    proc = run_in_process(
        small_run(
            small_data_dir,
            tmp_path / "tabnet",
            "model=tabnet",
            "model.n_steps=2",
            "trainer.max_epochs=1",
        )
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "tabnet" / "model" / "network.json").read_text())
    assert saved["init"]["network"]["n_steps"] == 2
    assert (tmp_path / "tabnet" / "metrics.json").is_file()


@pytest.mark.slow  # the environment of a fresh process: CUDA hidden
def test_run_py_missing_device_prints_one_line(small_data_dir, tmp_path):
    # CUDA hidden, so the test means the same on a GPU machine
    proc = run_cli(small_run(small_data_dir, tmp_path / "cuda", "model=mlp", "trainer=cuda"),
                   env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode != 0
    assert (
        "error: trainer.accelerator=cuda but no CUDA device is available "
        "(torch.cuda.is_available() is False)"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # two fits
def test_resume_keeps_the_best_holdout_epoch_from_before(train_set, valid_set, tmp_path):
    # lr=0: every epoch scores the same on the holdout, so the first epoch stays the best
    # (a later epoch must be strictly better); a resume into a new dir must not forget it
    import torch

    fit("mlp", train_set, valid_set, tmp_path / "first", "trainer.max_epochs=2",
        "model.patience=null", "model.lr=0")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = fit("mlp", train_set, valid_set, tmp_path / "resumed", "trainer.max_epochs=3",
                  "model.patience=null", "model.lr=0", ckpt_path=str(last))
    best = tmp_path / "resumed" / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=True)["epoch"] == 0
    assert Path(resumed.best_checkpoint) == best


@pytest.mark.slow  # what a fresh process prints
def test_lightning_lines_print_once_without_flops_clutter(small_data_dir, tmp_path):
    proc = run_cli(small_run(small_data_dir, tmp_path / "run", "model=mlp",
                             "trainer.max_epochs=1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert out.count("Seed set to 42") == 1, out[-3000:]
    assert "Total FLOPs" not in out and "network MLP:" in out
