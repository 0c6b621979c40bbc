"""Config groups name their code: each option of `data`, `postprocess`, `logger`,
`staking` and `task` has a `_target_`, and this module builds it with one-line errors.

A new option is a yaml file in conf/<group>/ naming a class (or, for tasks, a function);
nothing here or in the pipeline changes.

Where the configs are, for listing options and composing one at run time: the running Hydra
app's own config repository (the config dir it ran with, `hydra.searchpath`); else the
primary config source a Hydra job records (`hydra.runtime.config_sources`, provider `main`);
else numerlab's conf/ beside the source tree (absent in a non-editable install).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from numerlab.errors import NumerlabError, message_line

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _running_hydra() -> Any | None:
    """The GlobalHydra of a running Hydra app (or compose context), None outside one."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    return hydra if hydra.is_initialized() else None


def primary_config_source() -> tuple[str, str]:
    """(schema, path) of the configs: the running Hydra job's primary config source
    (`hydra.runtime.config_sources`, provider `main`: `file` and a dir, or `pkg` and a
    module), else ("file", numerlab's conf/)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        for source in HydraConfig.get().runtime.config_sources:
            if source.provider == "main" and source.path:
                return str(source.schema), str(source.path)
    return "file", str(CONF_DIR)


def options(group: str) -> list[str]:
    """The option names of a config group, for messages: from the running Hydra app's config
    repository, else the yaml files in the primary config dir; [] when there is none."""
    hydra = _running_hydra()
    if hydra is not None:
        return sorted(hydra.config_loader().get_group_options(group))
    schema, path = primary_config_source()
    folder = Path(path) / group
    if schema != "file" or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def compose(config_name: str, overrides: Sequence[str] = (), hydra_config: bool = False
            ) -> DictConfig:
    """`config_name` (e.g. `model/lgbm`) composed with Hydra `overrides`: through the running
    Hydra app when there is one, else from `primary_config_source()` in a compose context
    left again at once (no GlobalHydra stays behind); `hydra_config`: with the `hydra` node
    (its run dir, ...)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module

    if _running_hydra() is not None:
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=hydra_config)
    schema, path = primary_config_source()
    context = (initialize_config_module(config_module=path.replace("/", "."),
                                        version_base="1.3") if schema == "pkg"
               else initialize_config_dir(config_dir=path, version_base="1.3"))
    with context:
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=hydra_config)


def _allowed(group: str) -> str:
    names = options(group)
    return f" (options: {', '.join(names)})" if names else ""


def target_of(group_cfg: Any, group: str) -> str:
    if not isinstance(group_cfg, Mapping | DictConfig) or "_target_" not in group_cfg:
        raise NumerlabError(f"{group} config has no _target_ naming its code; choose one of "
                            f"the options with `{group}=<option>`{_allowed(group)}")
    return str(group_cfg["_target_"])


def resolve(group_cfg: Any, group: str) -> Any:
    """The class or function a group option's `_target_` names."""
    from hydra.utils import get_object

    target = target_of(group_cfg, group)
    try:
        return get_object(target)
    except Exception as exc:  # noqa: BLE001 - import errors of any kind mean the same here
        raise NumerlabError(f"{group}._target_={target} cannot be imported "
                            f"({message_line(exc, last=True)}){_allowed(group)}") from None


def build(group_cfg: Any, group: str, base: type | None = None, **kwargs: Any) -> Any:
    """Instantiate a group option: `_target_(**its other keys, **kwargs)`.

    An unknown key is an error naming the key and the keys the option takes."""
    import inspect

    cls = resolve(group_cfg, group)
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise NumerlabError(f"{group}._target_={target_of(group_cfg, group)} is not a "
                            f"{base.__name__}{_allowed(group)}")
    values = OmegaConf.to_container(group_cfg, resolve=True) if OmegaConf.is_config(
        group_cfg) else dict(group_cfg)
    values.pop("_target_", None)
    values.update(kwargs)
    signature = inspect.signature(cls)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    accepted = [n for n, p in signature.parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in values if k not in accepted]
    if unknown and not takes_any:
        raise NumerlabError(f"{group}.{unknown[0]} is not a setting of "
                            f"{target_of(group_cfg, group)} (settings: "
                            f"{', '.join(accepted) or 'none'})")
    missing = [n for n, p in signature.parameters.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and n not in values]
    if missing:
        raise NumerlabError(f"{group}.{missing[0]} is missing (required by "
                            f"{target_of(group_cfg, group)})")
    try:
        return cls(**values)
    except NumerlabError:
        raise
    except (TypeError, ValueError) as exc:
        raise NumerlabError(f"{group}: {message_line(exc)}") from None
