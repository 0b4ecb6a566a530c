"""A multi-layer perceptron whose shape is set by hyperparameters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paramaudit.models import read_hyperparameters, register_model
from paramaudit.models.common import ACTIVATIONS
from paramaudit.models.declarations import ACTIVATION, DROPOUT, HIDDEN_SIZE, NUM_LAYERS
from paramaudit.models.declarations import MLP_HYPERPARAMETERS as HYPERPARAMETERS


@dataclass(frozen=True)
class MLPConfig:
    """Architecture hyperparameters of the MLP."""

    input_dim: int
    n_classes: int
    num_layers: int = NUM_LAYERS.default
    hidden_size: int = HIDDEN_SIZE.default
    dropout: float = DROPOUT.default
    activation: str = ACTIVATION.default

    def __post_init__(self) -> None:
        assert self.input_dim >= 1 and self.n_classes >= 1, "need inputs and outputs (1: regression)"
        assert self.num_layers >= 0 and self.hidden_size >= 1
        assert 0.0 <= self.dropout < 1.0
        assert self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}"

    def num_params(self) -> int:
        """Learned parameters (weights + biases) implied by the shape, without building it."""
        widths = [self.input_dim] + [self.hidden_size] * self.num_layers + [self.n_classes]
        return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


class MLP(nn.Module):
    """Linear -> activation -> dropout, ``num_layers`` times, then a linear classifier head."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = cfg.input_dim
        for _ in range(cfg.num_layers):
            layers += [nn.Linear(width, cfg.hidden_size), ACTIVATIONS[cfg.activation]()]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = cfg.hidden_size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


@register_model("mlp", HYPERPARAMETERS)
def build_mlp(input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> MLP:
    """An MLP over the flattened input."""
    return MLP(MLPConfig(math.prod(input_shape), n_classes, **read_hyperparameters(HYPERPARAMETERS, hp)))
