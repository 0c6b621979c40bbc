"""Neural models: torch networks (MLP, ResNet, TabNet), one LightningModule, a fast tabular
DataModule, and `NeuralModel`, which implements the numerlab model protocol.

Importing this package imports torch and Lightning; `numerlab.models` and
`numerlab.pipeline` never import it at import time (Hydra imports
`numerlab.models.nn.model` only when a config names `NeuralModel`).
"""

from numerlab.models.nn.model import NeuralModel

__all__ = ["NeuralModel"]
