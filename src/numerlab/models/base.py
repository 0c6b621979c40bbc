"""The model protocol: every estimator (GBDT or neural) is fit, predicted, saved and loaded
the same way, so the pipeline and the DVC stages never special-case a model family."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError, message_line

if TYPE_CHECKING:
    from omegaconf import DictConfig

MODEL_META = "numerlab_model.json"


@dataclass
class FitContext:
    """What a fit may need beyond the data: seed, where to write, (for neural models) the
    Lightning trainer config and a checkpoint to resume from, whether a holdout is
    configured (`fit.holdout_eras`: the `valid` rows `fit` gets, the only rows early
    stopping may look at) and the job's tracker for training curves."""

    seed: int
    run_dir: Path
    trainer: dict[str, Any] = field(default_factory=dict)
    ckpt_path: str | None = None
    holdout: bool = False
    tracker: Any = None


@runtime_checkable
class Model(Protocol):
    def fit(self, train: Dataset, valid: Dataset | None, ctx: FitContext) -> None:
        """Fit on `train`; `valid` is the holdout carved from the training eras (or None),
        the only rows early stopping or checkpoint choice may look at."""
        ...

    def predict(self, features: np.ndarray) -> np.ndarray:
        """int8 (n, k) -> float32 (n,) predictions."""
        ...

    def save(self, path: Path) -> None:
        """Write everything needed to predict into directory `path`."""
        ...

    @classmethod
    def load(cls, path: Path) -> Model: ...


def check_ready(model: Model, ctx: FitContext) -> None:
    """Call the model's optional `check(ctx)`: it raises NumerlabError for a context it
    cannot fit in (a device that is not there), before any data is loaded."""
    check = getattr(model, "check", None)
    if check is not None:
        check(ctx)


def class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def save_model(model: Model, path: Path, feature_names: list[str]) -> None:
    """Save `model` into `path` with a small manifest naming its class, its features and
    the SHA-256 of each file it wrote there (`load_model` refuses a file that changed)."""
    path.mkdir(parents=True, exist_ok=True)
    model.save(path)
    meta = {"class": class_path(model), "feature_names": feature_names,
            "files": file_digests(path)}
    (path / MODEL_META).write_text(json.dumps(meta, indent=1))


def file_digests(path: Path) -> dict[str, str]:
    """name -> SHA-256 of each file directly in `path` but the manifest (a member model's
    dir has a manifest of its own)."""
    from numerlab.artifacts import sha256

    return {entry.name: sha256(entry) for entry in sorted(Path(path).iterdir())
            if entry.is_file() and entry.name != MODEL_META}


def load_model(path: Path) -> tuple[Model, list[str]]:
    """Load a model saved by `save_model`; returns it with the feature names it expects.
    A missing, damaged or changed file is one NumerlabError line naming it, never a
    library's traceback or crash: the recorded checksums are checked first, then the
    model's own loader runs (LightGBM's text is checked before LightGBM reads it)."""
    path = Path(path)
    meta = read_manifest(path)
    check_files(path, meta.get("files"))
    module_name, _, cls_name = meta["class"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise NumerlabError(f"{path / MODEL_META}: class {meta['class']!r} cannot be "
                            f"imported ({message_line(exc)})") from None
    if not callable(getattr(cls, "load", None)):
        raise NumerlabError(f"{path / MODEL_META}: class {meta['class']!r} is not a model")
    try:
        model = cls.load(path)
    except NumerlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - any library's complaint about its file
        raise NumerlabError(f"{path}: cannot load the saved {cls_name} "
                            f"({type(exc).__name__}: {message_line(exc, last=True)})") from None
    return model, list(meta["feature_names"])


def read_manifest(path: Path) -> dict[str, Any]:
    """`<path>/numerlab_model.json`, checked to name a class and its feature names."""
    manifest = Path(path) / MODEL_META
    if not manifest.is_file():
        raise NumerlabError(f"{manifest}: not a numerlab model directory (manifest missing)")
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise NumerlabError(f"{manifest}: cannot read ({message_line(exc)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("class"), str) or not (
            isinstance(meta.get("feature_names"), list)
            and all(isinstance(name, str) for name in meta["feature_names"])):
        raise NumerlabError(f"{manifest}: damaged (needs 'class' and a list of "
                            f"'feature_names')")
    return meta


def check_files(path: Path, digests: Any) -> None:
    """NumerlabError naming the first file of `digests` (name -> SHA-256, as `save_model`
    recorded them) that is missing or changed; nothing to check for a model saved before
    numerlab recorded them (None)."""
    if digests is None:
        return
    if not isinstance(digests, dict):
        raise NumerlabError(f"{Path(path) / MODEL_META}: damaged ('files' is not a mapping)")
    from numerlab.artifacts import sha256

    for name, digest in digests.items():
        file = Path(path) / str(name)
        if Path(str(name)).name != str(name) or not file.is_file():
            raise NumerlabError(f"{file}: missing (the saved model is incomplete)")
        if sha256(file) != digest:
            raise NumerlabError(f"{file}: damaged (its SHA-256 differs from the one recorded "
                                f"when the model was saved)")


MODEL_NAME_KEY = "name"  # model configs name themselves: metrics.json `model`, run names


def build_model(model_cfg: DictConfig) -> Model:
    """Instantiate the configured estimator; nested configs (networks, optimizers) are left
    for the model to build once it knows the data's shape."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    settings = OmegaConf.masked_copy(model_cfg, [k for k in model_cfg if k != MODEL_NAME_KEY])
    _refuse_unknown_keys(settings)
    try:
        return instantiate(settings, _recursive_=False)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, NumerlabError):  # the model's own one-line complaint
            raise exc.__cause__ from None
        raise NumerlabError(f"model config: {message_line(exc, last=True)}") from None


def _refuse_unknown_keys(model_cfg: DictConfig) -> None:
    """A key the model class does not take (`+model.num_boost_rounds=5`) is one line naming
    it and the close setting, not Python's TypeError; a class that takes any keyword
    (a network's hyperparameters, interpolated into its parts) accepts every key."""
    import inspect

    from hydra.utils import get_object

    from numerlab.settings import keys

    target = model_cfg.get("_target_")
    try:
        cls = get_object(str(target))
    except Exception:  # noqa: BLE001 - instantiate names an unimportable target itself
        return
    signature = inspect.signature(cls)
    known = [MODEL_NAME_KEY, *(n for n, p in signature.parameters.items()
                               if p.kind is not p.VAR_KEYWORD)]
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        # A class taking any keyword (a network's hyperparameters) is given top-level keys
        # that the config interpolates into its parts (`lr: ...`, `optimizer.lr: ${..lr}`):
        # a key no interpolation reads and no part (`network`, `optimizer`: their
        # `_target_`s) takes goes nowhere. A resolved config (an ensemble's member,
        # params.yaml) has no interpolations left; a part set directly
        # (`model.network.n_layers=3`) leaves the top-level key unread but still one of its
        # parts' parameters, so the config's own keys are never refused.
        referenced = (_interpolated_names(model_cfg) or set()) | _part_parameters(model_cfg)
        known += [k for k in model_cfg if k in referenced and k not in known]
    keys("model", {k: None for k in model_cfg if k != "_target_"}, known)


def _part_parameters(cfg: Any) -> set[str]:
    """The parameter names of the `_target_`s nested in `cfg` (a network, an optimizer)."""
    import inspect

    from hydra.utils import get_object

    names: set[str] = set()
    for key in cfg:
        part = cfg[key]
        if key == "_target_" or not hasattr(part, "get") or not part.get("_target_"):
            continue
        try:
            names |= set(inspect.signature(get_object(str(part["_target_"]))).parameters)
        except Exception:  # noqa: BLE001 - an unimportable part: its build names it
            continue
    return names


def _interpolated_names(cfg: DictConfig) -> set[str] | None:
    """The key names that `${...}` interpolations anywhere in `cfg` refer to (`${..lr}` ->
    lr), or None when `cfg` holds no interpolation."""
    import re

    from omegaconf import DictConfig, ListConfig, OmegaConf

    found: list[str] = []

    def walk(node: DictConfig | ListConfig) -> None:
        for key in list(node.keys()) if isinstance(node, DictConfig) else range(len(node)):
            child = node._get_node(key)
            if OmegaConf.is_interpolation(node, key):
                found.append(str(child._value()))
            elif isinstance(child, DictConfig | ListConfig) and not child._is_none():
                walk(child)

    if not isinstance(cfg, DictConfig):
        return None
    walk(cfg)
    if not found:
        return None
    return {name for text in found for ref in re.findall(r"\$\{([^}]*)\}", text)
            for name in re.findall(r"[A-Za-z_]\w*", ref)}


def model_name(model_cfg: DictConfig) -> str:
    """The configured model's name (`model.name`: lgbm, xgboost, mlp, resnet, tabnet...)."""
    name = model_cfg.get(MODEL_NAME_KEY)
    if not name:
        raise NumerlabError("model.name is missing: every conf/model/*.yaml names its model")
    return str(name)
