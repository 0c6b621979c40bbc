"""Which accelerator a neural model runs on: `auto` prefers mps, then cuda, then cpu; asking
for a device that is not there is a one-line NumerlabError, not a Lightning traceback."""

from __future__ import annotations

import torch

from numerlab.errors import NumerlabError

ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    return torch.backends.mps.is_available()


def resolve_accelerator(name: str | None) -> str:
    """`trainer.accelerator` -> "mps", "cuda" or "cpu" (the value given to Lightning)."""
    name = "auto" if name is None else str(name).lower()
    if name not in ACCELERATORS:
        raise NumerlabError(f"trainer.accelerator={name} is not one of {', '.join(ACCELERATORS)}")
    if name == "auto":
        if mps_available():
            return "mps"
        return "cuda" if cuda_available() else "cpu"
    if name in ("cuda", "gpu"):
        if not cuda_available():
            raise NumerlabError(
                f"trainer.accelerator={name} but no CUDA device is available "
                "(torch.cuda.is_available() is False)"
            )
        return "cuda"
    if name == "mps" and not mps_available():
        raise NumerlabError(
            "trainer.accelerator=mps but no MPS device is available "
            "(torch.backends.mps.is_available() is False)"
        )
    return name


def torch_device(accelerator: str) -> torch.device:
    """The torch device a resolved accelerator computes on (the first one)."""
    return torch.device("cuda", 0) if accelerator == "cuda" else torch.device(accelerator)
